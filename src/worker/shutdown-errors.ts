// graphile-worker 0.18 shuts a worker pool down by itself when it loses the database (it cannot
// record a job's outcome, or return its local queue's jobs), and drops the promise of that
// shutdown: when the shutdown fails too ("Error occurred whilst returning jobs from local queue to
// database queue: the database system is shutting down"), the rejection is unhandled and would
// end the process. This plugin settles that promise: the failure is logged at warn level, and
// still reaches the pool's own promise (runner.promise), whose end src/worker/index.ts supervises
// (a new pool once the database is back; the old pool's jobs freed with force_unlock_workers).
import type { Logger } from '../log.ts';

export function shutdownErrorsPlugin(log: Logger): GraphileConfig.Plugin {
  return {
    name: 'AtriumWorkerShutdownErrorsPlugin',
    version: '1.0.0',
    worker: {
      middleware: {
        async poolGracefulShutdown(next, event) {
          try {
            return await next();
          } catch (error) {
            const errors = error instanceof AggregateError ? error.errors : [error];
            log.warn(
              { workerId: event.workerPool.id, errors: errors.map((e: unknown) => (e instanceof Error ? e.message : String(e))) },
              'the job worker pool did not shut down cleanly (database lost?); its jobs are freed when it restarts',
            );
          }
        },
      },
    },
  };
}
