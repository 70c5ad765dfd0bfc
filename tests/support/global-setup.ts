import { provisionTestDatabase } from './provision.ts';

export default async function globalSetup(): Promise<void> {
  const started = Date.now();
  const provisioned = await provisionTestDatabase();
  Object.assign(process.env, provisioned.env);
  (globalThis as { __atriumTeardown?: () => Promise<void> }).__atriumTeardown = provisioned.teardown;
  process.stdout.write(
    `\nTest database: PostgreSQL ${provisioned.env.ATRIUM_TEST_SERVER_VERSION} (${process.env.TEST_DATABASE_URL ? 'TEST_DATABASE_URL' : 'embedded'}), ready in ${Date.now() - started} ms\n`
      + `Logs of the apps and workers the tests start: ${provisioned.env.TEST_LOG_FILE}\n`,
  );
}
