// graphile-worker 0.18 shuts a worker pool down by itself when it loses the database (it cannot
// record a job's outcome, or return its local queue's jobs), and two of its promises are then
// left without a handler, which would end the process (src/process-guard.ts):
//
// * the promise of that shutdown, which rejects when the shutdown fails too. The plugin below
//   settles it: the failure is logged at warn level, and still reaches the pool's own promise
//   (runner.promise), whose end src/worker/index.ts supervises (a new pool once the database is
//   back; the old pool's jobs freed with force_unlock_workers);
// * the local queue's return of the jobs it holds when released (localQueue.js, returnJobs):
//   released while waiting, it fails to track that return ("Cannot background something when the
//   queue is already released"), and when the return fails as well ("Error occurred whilst
//   returning jobs from local queue to database queue: Connection terminated unexpectedly"), that
//   rejection has no handler anywhere. guardLocalQueueReturns below gives it one where it is
//   made: each local queue, as it starts returning jobs (the event localQueue:returnJobs comes
//   just before the return is tracked), gets a tracker that, when the queue refuses to track,
//   attaches a handler logging the failure at warn level. Its jobs stay locked by the old pool,
//   and are freed as above (or, should this process die, by another worker's heartbeat sweep).
//   Should a later graphile-worker make the rejection elsewhere, the process guard still knows
//   it (a known rejection, logged the same way) rather than ending the process.
import type { WorkerEvents } from 'graphile-worker';
import type { Logger } from '../log.ts';
import { knownRejection } from '../process-guard.ts';

const LOCAL_QUEUE_RETURN_FAILED = /^Error occurred whilst returning jobs from local queue to database queue: /;

const returnFailed = (log: Logger) => (reason: unknown) =>
  log.warn({ error: reason instanceof Error ? reason.message : String(reason) }, "graphile-worker could not return its local queue's jobs (database lost); they are freed when the worker restarts");

let registered = false;

const GUARDED = Symbol('atrium.localQueueGuarded');

/**
 * Handles, where it is made, the rejection of a local queue's job return that the queue refuses
 * to track once released (see above). Wraps each queue's `background` (its tracker of pending
 * work) the first time that queue returns jobs.
 */
export function guardLocalQueueReturns(events: WorkerEvents, log: Logger): void {
  const failed = returnFailed(log);
  events.on('localQueue:returnJobs', ({ localQueue }) => {
    const queue = localQueue as unknown as { background(promise: Promise<unknown>): void; [GUARDED]?: true };
    if (queue[GUARDED] || typeof queue.background !== 'function') return;
    queue[GUARDED] = true;
    const track = queue.background.bind(queue);
    queue.background = (promise) => {
      try {
        track(promise);
      } catch (error) {
        promise.then(undefined, failed); // refused: nothing else will ever handle it
        throw error;
      }
    };
  });
}

export function shutdownErrorsPlugin(log: Logger): GraphileConfig.Plugin {
  if (!registered) {
    registered = true;
    knownRejection((reason) => reason instanceof Error && LOCAL_QUEUE_RETURN_FAILED.test(reason.message), returnFailed(log));
  }
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
