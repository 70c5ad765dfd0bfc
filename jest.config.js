// Jest runs the TypeScript tests as native ES modules (graphile-worker is ESM-only):
// `npm test` starts it with --experimental-vm-modules, and tests/support/strip-types.cjs
// removes the type annotations with Node's own stripper (no compiler, no Babel).
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleFileExtensions: ['ts', 'js', 'cjs', 'mjs', 'json'],
  transform: { '^.+\\.ts$': '<rootDir>/tests/support/strip-types.cjs' },
  testMatch: ['<rootDir>/tests/**/*.test.ts'],
  globalSetup: '<rootDir>/tests/support/global-setup.ts',
  globalTeardown: '<rootDir>/tests/support/global-teardown.ts',
  testTimeout: 60_000,
  maxWorkers: 2,
  watchman: false,
  haste: { enableSymlinks: false },
};
