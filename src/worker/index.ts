// The job worker (graphile-worker): runs inside `npm start` or alone (`npm run worker`).
// It connects as the worker role (see sql/setup/roles.sql); tasks are in ./tasks/.
// Every job start, success, failure and permanent failure is logged as one structured line with
// job id, task, organization, attempt and duration. A heartbeat (./heartbeat.ts) lets other
// workers free this one's jobs if it dies.
import { EventEmitter } from 'node:events';
import { Logger as WorkerLogger, run, type Job, type Runner, type WorkerEvents } from 'graphile-worker';
import pg from 'pg';
import { graphileLogFactory, type Logger } from '../log.ts';
import type { DeliveryOptions } from '../webhooks/deliver.ts';
import { crontab } from './crontab.ts';
import { startHeartbeat, type Heartbeat } from './heartbeat.ts';
import { createTaskList } from './tasks/index.ts';

export interface WorkerOptions {
  connectionString: string;
  concurrency: number;
  log: Logger;
  webhooks?: DeliveryOptions;
  heartbeatIntervalMs?: number;
  staleAfterMs?: number;
  /** Run the crontab (default true). */
  crontab?: boolean;
}

export interface WorkerHandle {
  runner: Runner;
  /** The graphile-worker pool id: `locked_by` of the jobs this worker holds. */
  workerId: string;
  /** Healthy: running, and the last heartbeat is recent. */
  health(): { state: 'running' | 'stopped'; lastHeartbeatAt: Date | null };
  /** Finish running jobs (bounded by graphile-worker's graceful shutdown), take no new ones. */
  stop(): Promise<void>;
}

export const DEFAULT_WEBHOOK_OPTIONS: DeliveryOptions = { timeoutMs: 10_000, allowPrivateNetworks: false };

/** The job's facts for a log line. */
function jobFacts(job: Job) {
  const payload = job.payload as { organization_id?: unknown } | null;
  return {
    jobId: job.id,
    task: job.task_identifier,
    organizationId: typeof payload?.organization_id === 'string' ? payload.organization_id : undefined,
    attempt: job.attempts,
    maxAttempts: job.max_attempts,
  };
}

export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  const log = options.log.child({ component: 'worker' });
  // Our own pool, closed by us once the runner has stopped (so no connection outlives it).
  const pgPool = new pg.Pool({ connectionString: options.connectionString, max: options.concurrency + 3 });
  const onError = (error: Error) => log.warn({ err: error }, 'worker database connection lost');
  pgPool.on('error', onError);
  pgPool.on('connect', (client) => client.on('error', onError));

  const events = new EventEmitter() as WorkerEvents;
  let workerId: string | undefined;
  events.on('pool:create', ({ workerPool }) => (workerId = workerPool.id));
  const started = new Map<string, number>();
  const jobLog = log.child({ component: 'job' });
  events.on('job:start', ({ job }) => {
    started.set(job.id, Date.now());
    jobLog.info(jobFacts(job), 'job started');
  });
  const took = (job: Job) => {
    const t = started.get(job.id);
    started.delete(job.id);
    return t === undefined ? undefined : Date.now() - t;
  };
  events.on('job:success', ({ job }) => jobLog.info({ ...jobFacts(job), durationMs: took(job) }, 'job succeeded'));
  events.on('job:error', ({ job, error }) => {
    const final = job.attempts >= job.max_attempts;
    jobLog[final ? 'error' : 'warn']({ ...jobFacts(job), durationMs: took(job), err: error, willRetry: !final }, final ? 'job failed permanently' : 'job failed; will retry');
  });

  const runner = await run({
    pgPool,
    concurrency: options.concurrency,
    crontab: options.crontab === false ? '' : crontab,
    noHandleSignals: true, // index.ts owns shutdown
    pollInterval: 1000,
    taskList: createTaskList({ webhooks: options.webhooks ?? DEFAULT_WEBHOOK_OPTIONS }),
    logger: new WorkerLogger(graphileLogFactory(log) as never),
    events,
  });
  if (!workerId) throw new Error('graphile-worker did not report its pool id');
  const heartbeat: Heartbeat = startHeartbeat({
    pool: pgPool,
    workerId,
    intervalMs: options.heartbeatIntervalMs ?? 10_000,
    staleAfterMs: options.staleAfterMs ?? 45_000,
    log,
  });
  let state: 'running' | 'stopped' = 'running';
  runner.promise.then(
    () => (state = 'stopped'),
    () => (state = 'stopped'),
  );
  let stopping: Promise<void> | undefined;
  return {
    runner,
    workerId,
    health: () => ({ state, lastHeartbeatAt: heartbeat.lastBeatAt() }),
    stop: () =>
      (stopping ??= (async () => {
        await runner.stop();
        await runner.promise.catch(() => undefined);
        state = 'stopped';
        await heartbeat.stop();
        await pgPool.end();
      })()),
  };
}
