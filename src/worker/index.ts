// The job worker (graphile-worker): runs inside `npm start` or alone (`npm run worker`).
// It connects as the worker role (see sql/setup/roles.sql); tasks are in ./tasks/.
import { Logger as WorkerLogger, run, type Runner } from 'graphile-worker';
import pg from 'pg';
import { graphileLogFactory, type Logger } from '../log.ts';
import { crontab } from './crontab.ts';
import { taskList } from './tasks/index.ts';

export interface WorkerHandle {
  runner: Runner;
  /** Finish running jobs (bounded by graphile-worker's graceful shutdown), take no new ones. */
  stop(): Promise<void>;
}

export async function startWorker(options: { connectionString: string; concurrency: number; log: Logger }): Promise<WorkerHandle> {
  const log = options.log.child({ component: 'worker' });
  // Our own pool, closed by us once the runner has stopped (so no connection outlives it).
  const pgPool = new pg.Pool({ connectionString: options.connectionString, max: options.concurrency + 2 });
  const onError = (error: Error) => log.warn({ err: error }, 'worker database connection lost');
  pgPool.on('error', onError);
  pgPool.on('connect', (client) => client.on('error', onError));
  const runner = await run({
    pgPool,
    concurrency: options.concurrency,
    crontab,
    noHandleSignals: true, // index.ts owns shutdown
    pollInterval: 1000,
    taskList,
    logger: new WorkerLogger(graphileLogFactory(log) as never),
  });
  runner.events.on('job:error', ({ job, error }) => log.warn({ jobId: job.id, task: job.task_identifier, attempts: job.attempts, err: error }, 'job failed'));
  runner.events.on('job:success', ({ job }) => log.debug({ jobId: job.id, task: job.task_identifier }, 'job succeeded'));
  let stopping: Promise<void> | undefined;
  return {
    runner,
    stop: () =>
      (stopping ??= (async () => {
        await runner.stop();
        await runner.promise.catch(() => undefined);
        await pgPool.end();
      })()),
  };
}
