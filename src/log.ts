// Structured logging (pino): JSON lines in production, readable lines on a terminal.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string, name = 'atrium'): Logger {
  return pino({ name, level, base: { pid: process.pid } });
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
