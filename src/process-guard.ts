// The last line of defence of every Atrium process: an error nothing handled (a rejected promise
// nobody awaited, an exception thrown from a callback) means the process is in a state its code
// did not plan for. It is logged at fatal level (name, message, code and stack: never the error's
// other fields, which may hold a connection and its statements) and the process exits with code
// 70, so that its supervisor (`npm start`'s, src/supervisor.ts, or systemd, Kubernetes, …)
// starts a fresh one. Known failures are handled where they happen; the few a library leaves
// unhandled, and that its user cannot catch, are registered by the module that knows them
// (knownRejection: e.g. graphile-worker's, src/worker/shutdown-errors.ts), each recognised
// exactly and logged at warn level.
import type { Logger } from './log.ts';

/** The exit code of a process ended by an error nothing handled (EX_SOFTWARE of sysexits.h). */
export const UNHANDLED_ERROR_EXIT_CODE = 70;

const facts = (error: unknown) =>
  error instanceof Error
    ? { name: error.name, message: error.message, code: (error as { code?: unknown }).code, stack: error.stack }
    : { message: String(error) };

let installed = false;

/** Rejections a library leaves unhandled that are understood and handled (by their registrar). */
const known: Array<{ matches: (reason: unknown) => boolean; handle: (reason: unknown) => void }> = [];

/**
 * Registers a rejection that is known and handled elsewhere: `matches` must recognise exactly
 * that one (its message), `handle` logs it (warn) and says what takes care of its consequences.
 */
export function knownRejection(matches: (reason: unknown) => boolean, handle: (reason: unknown) => void): void {
  known.push({ matches, handle });
}

export function installProcessGuard(log: Logger): void {
  if (installed) return;
  installed = true;
  const die = (kind: string) => (error: unknown) => {
    const entry = kind === 'unhandled promise rejection' ? known.find((k) => k.matches(error)) : undefined;
    if (entry) return entry.handle(error);
    try {
      log.fatal({ error: facts(error), kind }, `${kind}: exiting so that a fresh process takes over`);
    } finally {
      process.exit(UNHANDLED_ERROR_EXIT_CODE);
    }
  };
  process.on('unhandledRejection', die('unhandled promise rejection'));
  process.on('uncaughtException', die('uncaught exception'));
}
