// The last line of defence of every Atrium process: an error nothing handled (a rejected promise
// nobody awaited, an exception thrown from a callback) means the process is in a state its code
// did not plan for. It is logged at fatal level (name, message, code and stack: never the error's
// other fields, which may hold a connection and its statements) and the process exits with code
// 70, so that its supervisor (`npm start`'s, src/supervisor.ts, or systemd, Kubernetes, …)
// starts a fresh one. Known failures are handled where they happen (e.g. graphile-worker's
// shutdowns, src/worker/shutdown-errors.ts), never here.
import type { Logger } from './log.ts';

/** The exit code of a process ended by an error nothing handled (EX_SOFTWARE of sysexits.h). */
export const UNHANDLED_ERROR_EXIT_CODE = 70;

const facts = (error: unknown) =>
  error instanceof Error
    ? { name: error.name, message: error.message, code: (error as { code?: unknown }).code, stack: error.stack }
    : { message: String(error) };

let installed = false;

export function installProcessGuard(log: Logger): void {
  if (installed) return;
  installed = true;
  const die = (kind: string) => (error: unknown) => {
    try {
      log.fatal({ error: facts(error), kind }, `${kind}: exiting so that a fresh process takes over`);
    } finally {
      process.exit(UNHANDLED_ERROR_EXIT_CODE);
    }
  };
  process.on('unhandledRejection', die('unhandled promise rejection'));
  process.on('uncaughtException', die('uncaught exception'));
}
