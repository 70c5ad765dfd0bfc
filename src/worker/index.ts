// The job worker (graphile-worker): runs inside `npm start` or alone (`npm run worker`).
// It connects as the worker role (see sql/setup/roles.sql); tasks are in ./tasks/.
// Every job start, success, failure and permanent failure is logged as one structured line with
// job id, task, organization, attempt and duration. A heartbeat (./heartbeat.ts) lets other
// workers free this one's jobs if it dies. While busy it vacuums graphile-worker's job table
// (./queue-vacuum.ts). The jobs of each batch it takes start in priority order (./job-order.ts).
// Every task is fenced (./fencing.ts): a worker declared dead while paused does nothing more for
// the jobs it held, and starts afresh under a new pool id.
import { EventEmitter } from 'node:events';
import { Logger as WorkerLogger, run, type Job, type Runner, type TaskList, type WorkerEvents } from 'graphile-worker';
import pg from 'pg';
import pino from 'pino';
import { graphileLogFactory, type Logger } from '../log.ts';
import type { DeliveryOptions } from '../webhooks/deliver.ts';
import { crontab } from './crontab.ts';
import { Fence, fenceTasks, JobFencedError } from './fencing.ts';
import { startHeartbeat, type Heartbeat } from './heartbeat.ts';
import { orderFetchedJobs } from './job-order.ts';
import { DEFAULT_QUEUE_VACUUM, startQueueVacuum, type QueueVacuumOptions } from './queue-vacuum.ts';
import { guardLocalQueueReturns, shutdownErrorsPlugin } from './shutdown-errors.ts';
import { createTaskList } from './tasks/index.ts';
import type { FileTaskOptions } from './tasks/files.ts';

export interface WorkerOptions {
  connectionString: string;
  concurrency: number;
  log: Logger;
  webhooks?: DeliveryOptions;
  heartbeatIntervalMs?: number;
  staleAfterMs?: number;
  /** Run the crontab (default true). */
  crontab?: boolean;
  /** Vacuum graphile-worker's job table while busy (./queue-vacuum.ts); default DEFAULT_QUEUE_VACUUM. */
  queueVacuum?: QueueVacuumOptions;
  /**
   * The file store and scanner of the file jobs (./tasks/files.ts), also the store of data exports
   * (./tasks/data_export.ts). A worker without one (tests, benchmarks) takes no file or export
   * jobs: graphile-worker fetches only the tasks it has.
   */
  files?: FileTaskOptions;
  /**
   * REFRESH_TOKEN_TTL_SECONDS of the API: the daily retention keeps used refresh tokens that long
   * (./tasks/daily_maintenance.ts). Unset: the database's default, 30 days.
   */
  refreshTokenTtlSeconds?: number;
  /** Tasks to run besides Atrium's own (./tasks/): tests and benchmarks whose jobs no other worker may take. */
  extraTasks?: TaskList;
  /**
   * Only these of Atrium's own tasks (unset: all). For tests whose worker must not take the jobs
   * of other test files: graphile-worker fetches only the tasks it has.
   */
  onlyTasks?: string[];
}

export interface WorkerHandle {
  /** The graphile-worker pool id now running: `locked_by` of the jobs this worker holds. */
  workerId(): string;
  /** running: taking jobs; restarting: lost its database, coming back; stopped: after stop(). */
  health(): { state: 'running' | 'restarting' | 'stopped'; lastHeartbeatAt: Date | null; restarts: number };
  /** Finish running jobs (bounded by graphile-worker's graceful shutdown), take no new ones. */
  stop(): Promise<void>;
  /** How many times this worker vacuumed the job table. */
  queueVacuums(): number;
}

/** Jobs the pool takes from the database per worker slot in one query (graphile-worker's localQueue). */
export const LOCAL_QUEUE_PER_WORKER = 10;

export const DEFAULT_WEBHOOK_OPTIONS: DeliveryOptions = { timeoutMs: 10_000, allowPrivateNetworks: false };


const JOB_STARTED = 'job started';

/**
 * A logger (level info) for startWorker that keeps, in order, the jobs the worker started (its
 * "job started" lines) and logs nothing else: for tests and benchmarks that check the order.
 */
export function jobStartRecorder(): { log: Logger; started: Array<{ jobId: string; time: number }> } {
  const started: Array<{ jobId: string; time: number }> = [];
  const log = pino({ level: 'info' }, {
    write(text: string) {
      const line = JSON.parse(text) as { msg?: string; jobId?: string; time: number };
      if (line.msg === JOB_STARTED && line.jobId !== undefined) started.push({ jobId: String(line.jobId), time: line.time });
    },
  });
  return { log, started };
}

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

const onlyTasks = (tasks: TaskList, names: string[] | undefined): TaskList =>
  names ? Object.fromEntries(Object.entries(tasks).filter(([name]) => names.includes(name))) : tasks;

export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  const log = options.log.child({ component: 'worker' });
  // Our own pool, closed by us once the runner has stopped (so no connection outlives it).
  const pgPool = new pg.Pool({ connectionString: options.connectionString, max: options.concurrency + 3 });
  // (Only the message and code: pg-pool attaches the whole client to the error.)
  const onError = (error: Error) => log.warn({ error: error.message, code: (error as { code?: string }).code }, 'worker database connection lost');
  pgPool.on('error', onError);
  pgPool.on('connect', (client) => {
    client.on('error', onError);
    // Each batch the local queue takes starts in priority order (./job-order.ts).
    orderFetchedJobs(client);
  });

  const staleAfterMs = options.staleAfterMs ?? 45_000;
  const fence = new Fence({ pool: pgPool, staleAfterMs, log: log.child({ component: 'job' }) });

  const events = new EventEmitter() as WorkerEvents;
  let workerId: string | undefined;
  events.on('pool:create', ({ workerPool }) => (workerId = workerPool.id));
  guardLocalQueueReturns(events, log);
  const started = new Map<string, number>();
  const jobLog = log.child({ component: 'job' });
  events.on('job:start', ({ job }) => {
    started.set(job.id, Date.now());
    jobLog.info(jobFacts(job), JOB_STARTED);
  });
  const took = (job: Job) => {
    const t = started.get(job.id);
    started.delete(job.id);
    return t === undefined ? undefined : Date.now() - t;
  };
  const queueVacuum = startQueueVacuum(pgPool, options.queueVacuum ?? DEFAULT_QUEUE_VACUUM, log);
  events.on('job:complete', () => queueVacuum.jobFinished());
  events.on('job:success', ({ job }) => jobLog.info({ ...jobFacts(job), durationMs: took(job) }, 'job succeeded'));
  events.on('job:error', ({ job, error }) => {
    if (error instanceof JobFencedError) return void took(job); // logged by the fence; the job is another worker's
    const final = job.attempts >= job.max_attempts;
    jobLog[final ? 'error' : 'warn']({ ...jobFacts(job), durationMs: took(job), err: error, willRetry: !final }, final ? 'job failed permanently' : 'job failed; will retry');
  });

  // graphile-worker 0.18's local queue, released while it holds jobs it has not started, sends them
  // back to the database but then fails to track that query ("Cannot background something when
  // the queue is already released"), and the shutdown reports "Errors occurred whilst deactivating
  // queue" at error level. stop() below makes sure those jobs are back; during our own stop, and
  // while a pool declared dead is dropped (its jobs are no longer its own), those lines are logged
  // at debug level.
  let stopRequested = false;
  let droppingDeclaredDead = false;
  const knownReleaseIssue = /Cannot background something when the queue is already released|whilst deactivating queue/;
  const graphileLog = graphileLogFactory(log);
  const workerLogFactory = (scope: Record<string, unknown>) => {
    const inner = graphileLog(scope);
    return (level: string, message: string, meta?: Record<string, unknown>) =>
      (stopRequested || droppingDeclaredDead) && level === 'error' && knownReleaseIssue.test(message)
        ? inner('debug', `${message} (the local queue's jobs are returned by the worker's stop)`, meta)
        : meta?.error instanceof JobFencedError
          ? inner('debug', message, meta) // a fenced job: the fence logged it at warn
          : inner(level, message, meta);
  };

  const runnerOptions = {
    pgPool,
    concurrency: options.concurrency,
    crontab: options.crontab === false ? '' : crontab,
    noHandleSignals: true, // index.ts owns shutdown
    pollInterval: 1000,
    taskList: fenceTasks({ ...options.extraTasks, ...onlyTasks(createTaskList({ webhooks: options.webhooks ?? DEFAULT_WEBHOOK_OPTIONS, files: options.files, maintenance: { refreshTokenTtlSeconds: options.refreshTokenTtlSeconds } }), options.onlyTasks) }, fence),
    logger: new WorkerLogger(workerLogFactory as never),
    events,
    // Record job outcomes through graphile-worker's batcher: when the database is gone it reports
    // a pool:fatalError (handled below: a fresh pool) where the direct path would leave an
    // unhandled promise rejection, which ends the process. Successes are batched over 2 ms, and
    // the pool takes LOCAL_QUEUE_PER_WORKER jobs per worker slot at a time (localQueue): 2.3× the
    // throughput of one job per fetch (docs/PERFORMANCE.md). The price: a job queued meanwhile at a
    // better priority waits for the local batch, and a killed worker holds that batch until the
    // heartbeat sweep frees it.
    // The shutdowns graphile-worker starts by itself must not end the process (./shutdown-errors.ts).
    preset: { plugins: [shutdownErrorsPlugin(log)], worker: { completeJobBatchDelay: 2, failJobBatchDelay: 0, localQueue: { size: LOCAL_QUEUE_PER_WORKER * options.concurrency } } },
  };
  const startRunner = async (): Promise<{ runner: Runner; id: string }> => {
    workerId = undefined;
    const startedAt = fence.poolStarting();
    const runner = await run(runnerOptions);
    if (!workerId) throw new Error('graphile-worker did not report its pool id');
    fence.poolStarted(workerId, startedAt);
    return { runner, id: workerId };
  };

  // Supervision: graphile-worker gives up (stops its pool) when it cannot record a job's outcome,
  // e.g. while PostgreSQL restarts. We then start a new pool as soon as the database answers,
  // and free the jobs the old pool held at once (they run again; tasks are idempotent).
  let current = await startRunner();
  let state: 'running' | 'restarting' | 'stopped' = 'running';
  let restarts = 0;
  const heartbeat: Heartbeat = startHeartbeat({
    pool: pgPool,
    workerId: () => current.id,
    intervalMs: options.heartbeatIntervalMs ?? 10_000,
    staleAfterMs,
    log,
    onAlive: (id, sentAt) => fence.confirmed(id, sentAt),
    // Swept while paused: its jobs run elsewhere. Fence them all, drop the local queue unrun and
    // start a new pool (the restart below).
    onDeclaredDead: (id) => {
      fence.declaredDead(id);
      if (id === current.id && state === 'running') restart(current, undefined, true);
    },
  });
  const supervise = (instance: { runner: Runner; id: string }): void => {
    instance.runner.promise.then(
      () => restart(instance, undefined),
      (error: unknown) => restart(instance, error),
    );
  };
  let restarting: Promise<void> | undefined;
  const restart = (dead: { runner: Runner; id: string }, error: unknown, declaredDead = false): void => {
    if (stopRequested || dead !== current || state === 'restarting') return;
    state = 'restarting';
    if (declaredDead) {
      log.warn({ workerId: dead.id, staleAfterMs }, 'this worker was declared dead by another (silent too long: paused?); its jobs run elsewhere: dropping them and restarting');
      droppingDeclaredDead = true;
      void dead.runner.stop('declared dead').catch(() => undefined);
    } else {
      log.error({ err: error, workerId: dead.id }, 'the job worker stopped unexpectedly (database lost?); restarting it');
    }
    restarting = (async () => {
      // Let the old pool wind down (bounded), then stop it for good: it may be stuck retrying.
      const settled = (ms: number) => Promise.race([dead.runner.promise.then(() => true, () => true), new Promise<false>((r) => setTimeout(() => r(false), ms))]);
      if (!(await settled(5000))) {
        await Promise.race([dead.runner.kill('restarting after losing the database').catch(() => undefined), new Promise((r) => setTimeout(r, 5000))]);
      }
      for (let attempt = 1; !stopRequested; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** (attempt - 1), 15_000)));
        if (stopRequested) return;
        try {
          await pgPool.query('select graphile_worker.force_unlock_workers(array[$1]::text[])', [dead.id]);
          await pgPool.query('delete from app_private.worker_heartbeats where worker_id = $1', [dead.id]);
          current = await startRunner();
          droppingDeclaredDead = false;
          restarts++;
          state = 'running';
          heartbeat.beatNow(); // register the new pool (and start its lease) now
          log.warn({ workerId: current.id, previous: dead.id, attempt }, 'job worker restarted');
          supervise(current);
          return;
        } catch (retryError) {
          log.warn({ err: retryError, attempt }, 'job worker restart failed; will try again');
        }
      }
    })();
  };
  supervise(current);
  // graphile-worker could not record a job's outcome (the database went away): start afresh.
  events.on('pool:fatalError', ({ workerPool, error }) => {
    if (workerPool.id === current.id) restart(current, error);
  });

  let stopping: Promise<void> | undefined;
  return {
    workerId: () => current.id,
    health: () => ({ state, lastHeartbeatAt: heartbeat.lastBeatAt(), restarts }),
    queueVacuums: () => queueVacuum.runs(),
    stop: () =>
      (stopping ??= (async () => {
        stopRequested = true;
        await restarting;
        await current.runner.stop().catch(() => undefined);
        await current.runner.promise.catch(() => undefined);
        // Jobs still locked by this pool now were taken into its local queue and never started, and
        // graphile-worker's own return of them (see above) was not waited for: hand them back with
        // their attempt, as that return does (a no-op when it already has).
        await pgPool
          .query('update graphile_worker._private_jobs set attempts = greatest(0, attempts - 1), locked_by = null, locked_at = null where locked_by = $1', [current.id])
          .catch((error: Error) => log.warn({ err: error, workerId: current.id }, 'could not return the jobs this worker held; the heartbeat sweep of another worker frees them'));
        state = 'stopped';
        await queueVacuum.stop();
        await heartbeat.stop();
        await pgPool.end();
      })()),
  };
}
