// Keeps graphile-worker's job table lean, and its statistics current, while jobs stream through it.
// Every job leaves dead row versions behind (taken: updated; done: deleted), and their index
// entries sit exactly where the worker fetches — at the head of (priority, run_at). Until VACUUM
// removes them each fetch walks past all of them: with a backlog of ~150,000 jobs a fetch of 50
// read ~3,000 pages (6 ms), and throughput fell to ~2,300 jobs/s; vacuuming every 2 s kept it at
// ~7,900 (docs/PERFORMANCE.md). And the planner must know how many jobs are waiting: with
// statistics from a quiet moment (few jobs, most of them taken) it expected ~50 available jobs
// among 17,000 and fetched each batch by reading and sorting the whole table (7–8 ms per fetch
// instead of ~0.5 ms through the index), so the vacuum analyzes the table too.
// Autovacuum wakes up once a minute at best, too late for a queue, so a busy worker does both
// itself: at most every `intervalMs`, once it has finished `afterJobs` jobs since the last
// time, one worker at a time (an advisory lock; the others skip their turn).
import type { Pool } from 'pg';
import type { Logger } from '../log.ts';

export interface QueueVacuumOptions {
  /** How often to look (ms). */
  intervalMs: number;
  /** Vacuum once this worker has finished this many jobs since the last vacuum (0: never). */
  afterJobs: number;
}

export interface QueueVacuum {
  /** Count a finished job (success or failure). */
  jobFinished(): void;
  /** How many times this worker vacuumed the table. */
  runs(): number;
  stop(): Promise<void>;
}

/** What `npm start` / `npm run worker` use (WORKER_QUEUE_VACUUM_AFTER_JOBS overrides afterJobs). */
export const DEFAULT_QUEUE_VACUUM: QueueVacuumOptions = { intervalMs: 1000, afterJobs: 1000 };

/** Advisory lock key: one vacuum of the job table at a time across workers ("atrium-qv"). */
const LOCK_KEY = 0x61747169;

export function startQueueVacuum(pool: Pool, options: QueueVacuumOptions, log: Logger): QueueVacuum {
  let finished = 0;
  let runs = 0;
  let running: Promise<void> | undefined;
  const vacuum = async () => {
    const client = await pool.connect();
    try {
      const { rows } = await client.query<{ locked: boolean }>('select pg_try_advisory_lock($1) as locked', [LOCK_KEY]);
      if (!rows[0]!.locked) return; // another worker is at it
      try {
        const jobs = finished;
        const started = Date.now();
        // Without truncating the table's empty end: that needs an exclusive lock, which would stop every
        // fetch, insert and completion while it is waited for and held.
        await client.query('vacuum (analyze, truncate false) graphile_worker._private_jobs');
        finished -= jobs;
        runs++;
        log.debug({ jobs, durationMs: Date.now() - started }, 'vacuumed the job table');
      } finally {
        await client.query('select pg_advisory_unlock($1)', [LOCK_KEY]);
      }
    } catch (error) {
      log.warn({ err: error }, 'could not vacuum the job table (will try again)');
    } finally {
      client.release();
    }
  };
  const tick = () => {
    if (options.afterJobs > 0 && finished >= options.afterJobs) running ??= vacuum().finally(() => (running = undefined));
  };
  const timer = setInterval(tick, options.intervalMs);
  timer.unref();
  return {
    jobFinished: () => void finished++,
    runs: () => runs,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
