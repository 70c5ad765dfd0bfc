// Structured logging (pino): JSON lines, one per event, for machines and log shippers; on a
// terminal outside production, the same events as readable lines (pino-pretty).
//
// JSON lines go to stdout in batches: written once 4 KB have gathered, or 25 ms after a line at
// the latest, and when the process exits. The worker logs two lines per job, and a write system
// call per line was about 13% of its CPU profile (docs/DATA_FLOWS.md, "Observability"). Writes block: when
// whatever reads stdout falls behind, the process waits for it (memory stays bounded). Node leaves
// a pipe or socket on stdout non-blocking, and pino's writer then sleeps 100 ms at every "try
// again", so stdout is made blocking first.
import pino from 'pino';
import pretty from 'pino-pretty';

export type Logger = pino.Logger;

/** One writer to stdout per process, shared by every logger (lines never interleave). */
let stdout: pino.DestinationStream & { flushSync(): void } | undefined;
function stdoutDestination() {
  if (!stdout) {
    (process.stdout as unknown as { _handle?: { setBlocking?: (blocking: boolean) => unknown } })._handle?.setBlocking?.(true);
    const destination = pino.destination({ dest: 1, sync: true, minLength: 4096, periodicFlush: 25 });
    process.on('exit', () => destination.flushSync());
    stdout = destination;
  }
  return stdout;
}

export function createLogger(level: string, name = 'atrium'): Logger {
  const readable = process.stdout.isTTY && process.env.NODE_ENV !== 'production' && process.env.LOG_FORMAT !== 'json';
  return readable
    ? pino({ name, level }, pretty({ colorize: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l', sync: true }))
    : pino({ name, level, base: { pid: process.pid } }, stdoutDestination());
}

/** A log factory for the @graphile/logger based libraries (graphile-worker, graphile-migrate). */
export function graphileLogFactory(logger: Logger) {
  return (scope: Record<string, unknown>) => {
    // Made on first use: graphile-worker makes a scope for every job, and most jobs log nothing.
    let child: Logger | undefined;
    return (level: string, message: string, meta?: Record<string, unknown>) => {
      const method = level === 'error' ? 'error' : level === 'warning' ? 'warn' : level === 'info' ? 'info' : 'debug';
      (child ??= logger.child(scope))[method](meta ?? {}, message);
    };
  };
}
