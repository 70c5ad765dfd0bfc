// Structured logging (pino): JSON lines, one per event, for machines and log shippers; on a
// terminal outside production, the same events as readable lines (pino-pretty).
import pino from 'pino';
import pretty from 'pino-pretty';

export type Logger = pino.Logger;

export function createLogger(level: string, name = 'atrium'): Logger {
  const readable = process.stdout.isTTY && process.env.NODE_ENV !== 'production' && process.env.LOG_FORMAT !== 'json';
  return readable
    ? pino({ name, level }, pretty({ colorize: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l', sync: true }))
    : pino({ name, level, base: { pid: process.pid } });
}

/** A log factory for the @graphile/logger based libraries (graphile-worker, graphile-migrate). */
export function graphileLogFactory(logger: Logger) {
  return (scope: Record<string, unknown>) => {
    const child = logger.child(scope);
    return (level: string, message: string, meta?: Record<string, unknown>) => {
      const method = level === 'error' ? 'error' : level === 'warning' ? 'warn' : level === 'info' ? 'info' : 'debug';
      child[method](meta ?? {}, message);
    };
  };
}
