export default async function globalTeardown(): Promise<void> {
  await (globalThis as { __atriumTeardown?: () => Promise<void> }).__atriumTeardown?.();
}
