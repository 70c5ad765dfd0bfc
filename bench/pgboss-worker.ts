// The baseline worker of the jobs benchmark (bench/jobs.ts): pg-boss, in a process of its own
// like Atrium's worker, with the same trivial handler. It reports on stdout, one JSON line each,
// when it is ready and when every job starts and ends (wall-clock ms, like the worker's log lines),
// and stops gracefully on SIGTERM. Started by the benchmark only, never by Atrium.
//
// Environment: DATABASE_URL, PGBOSS_SCHEMA, PGBOSS_QUEUE, PGBOSS_CONCURRENCY (workers),
// PGBOSS_BATCH_SIZE (jobs per fetch).
import { PgBoss, type Job } from 'pg-boss';

const env = process.env;
const concurrency = Number(env.PGBOSS_CONCURRENCY ?? 5);
const batchSize = Number(env.PGBOSS_BATCH_SIZE ?? 1);
const queue = env.PGBOSS_QUEUE ?? 'bench_echo';
const out = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

const boss = new PgBoss({
  connectionString: env.DATABASE_URL,
  schema: env.PGBOSS_SCHEMA ?? 'pgboss',
  // Wake workers by NOTIFY the moment a job is committed (as graphile-worker does), polling as a backstop.
  useListenNotify: true,
  max: concurrency + 3,
});
boss.on('error', (error: Error) => process.stderr.write(`pg-boss error: ${error.message}\n`));
await boss.start();
await boss.work<{ seq: number }>(
  queue,
  {
    localConcurrency: concurrency,
    batchSize,
    // The fastest poll pg-boss allows, in case a NOTIFY is missed; with batches, fetch again at
    // once while they come back full.
    pollingIntervalSeconds: 0.5,
    notifyPollingIntervalSeconds: 0.5,
    burstWhenBatchFull: batchSize > 1,
  },
  async (jobs: Job<{ seq: number }>[]) => {
    const t = Date.now();
    for (const job of jobs) out({ e: 'start', key: String(job.data.seq), t });
    const done = Date.now();
    for (const job of jobs) out({ e: 'done', key: String(job.data.seq), t: done });
  },
);
out({ e: 'ready' });

let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  boss.stop({ graceful: true, timeout: 10_000 }).then(
    () => process.exit(0),
    (error: Error) => {
      process.stderr.write(`pg-boss stop failed: ${error.message}\n`);
      process.exit(1);
    },
  );
});
