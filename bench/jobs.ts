// 4. Jobs: Atrium's worker (graphile-worker, run as `npm run worker` would: src/cli.ts worker in a
// process of its own, production settings) beside pg-boss on the same database, in this run, with
// the same trivial task, the same concurrency and the same producers:
//   * commit→task-start latency, idle (one job at a time, spaced) and under load (a quiet
//     tenant's job while the throughput run saturates the queue);
//   * sustained throughput of trivial jobs while producers enqueue continuously (never letting the
//     backlog run dry, so the worker sets the pace), every job
//     counted: lost (enqueued, never run) and duplicated (run more than once);
//   * the worker process's peak RSS (VmHWM) over all of it.
// The workers report each job's start and end on stdout: Atrium's worker in its production log
// lines ("job started"/"job succeeded", with the job id), pg-boss's in lines of its own
// (bench/pgboss-worker.ts, with the job's sequence number). Times are wall-clock ms on both
// sides (the log's resolution), so latencies are good to about 1 ms.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { PgBoss, type Db } from 'pg-boss';
import { ROOT } from '../src/paths.ts';
import { LOCAL_QUEUE_PER_WORKER } from '../src/worker/index.ts';
import { scriptNodeFlags } from '../src/supervisor.ts';
import { databaseEnv } from './api.ts';
import type { BenchContext } from './context.ts';
import { stats, type Row, type Section, type Stats } from './stats.ts';

const PGBOSS_SCHEMA = 'bench_pgboss';
const PGBOSS_QUEUE = 'bench_echo';
const PGBOSS_VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'pg-boss', 'package.json'), 'utf8')) as { version: string }).version;
/** Jobs per producer transaction in the smoke run, and in the full run; producers (connections) enqueueing at once. */
const BATCH = 20;
const BULK_BATCH = 500;
const PRODUCERS = 2;
/** The most jobs the producers keep queued, however fast the worker. */
const MAX_BACKLOG = 40_000;
/** The quiet tenant's pace during the load: one job every so many ms. */
const PROBE_EVERY_MS = 200;

const PINO_TIME = /"time":(\d+)/;
const PINO_JOB_ID = /"jobId":"(\d+)"/;
const PGBOSS_LINE = /^\{"e":"(start|done|ready)"(?:,"key":"([^"]*)","t":(\d+))?/;

/** What one worker process reported: every start and end of every job, by key. */
class Tracker {
  readonly starts = new Map<string, number[]>();
  readonly doneTimes: number[] = [];
  private readonly waiters = new Map<string, () => void>();
  start(key: string, t: number): void {
    const list = this.starts.get(key);
    if (list) list.push(t);
    else this.starts.set(key, [t]);
    this.waiters.get(key)?.();
  }
  done(t: number): void {
    this.doneTimes.push(t);
  }
  /** Resolves once `key` has started (or after `timeoutMs`: false). */
  waitStarted(key: string, timeoutMs: number): Promise<boolean> {
    if (this.starts.has(key)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(key);
        resolve(false);
      }, timeoutMs);
      this.waiters.set(key, () => {
        clearTimeout(timer);
        this.waiters.delete(key);
        resolve(true);
      });
    });
  }
}

/** A worker process under test. */
interface WorkerProcess {
  child: ChildProcess;
  tracker: Tracker;
  /** Peak resident set size so far, MB (VmHWM). */
  peakRssMb(): number;
  /** Resident set size once the worker was ready, before any measured job, MB (VmRSS). */
  readyRssMb: number;
  stop(): Promise<void>;
}

/** One side of the comparison: how to start its worker and how producers queue its jobs. */
interface System {
  label: string;
  start(): Promise<WorkerProcess>;
  /** Queues jobs with these sequence numbers in one transaction on `client`; returns their keys (in order). */
  enqueue(client: pg.Client, seqs: number[], org: string, probe: boolean): Promise<string[]>;
  /** The benchmark's jobs in the database not finished yet (waiting or running). */
  queued(client: pg.Client): Promise<number>;
}

interface Measured {
  idle: number[];
  loaded: number[];
  /** The same latencies counted from the moment COMMIT was sent (so including the commit's own time). */
  idleFromSent: number[];
  loadedFromSent: number[];
  /** How long the probes' COMMITs took (WAL flush). */
  probeCommitMs: number[];
  throughput: number;
  enqueued: number;
  lost: number;
  duplicated: number;
  peakRssMb: number;
  readyRssMb: number;
  minBacklog: number;
  /** The largest backlog the producers were asked to keep (two seconds of the worker's pace). */
  maxBacklogKept: number;
  commitMs: number[];
}

/**
 * The fewest jobs the producers keep queued: few in the smoke run, where pg-boss with one job per
 * fetch drains slowly (one job per worker per poll once the NOTIFYs stop). During the run the
 * backlog kept grows to two seconds of what the worker finishes (up to MAX_BACKLOG), so a fast
 * worker does not run dry and a slow one is not buried under jobs it then takes minutes to drain.
 */
const backlogCap = (ctx: BenchContext) => (ctx.options.smoke ? 50 : Math.max(500, 200 * ctx.config.worker.concurrency));

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssMb(pid: number | undefined, field: 'VmHWM' | 'VmRSS' = 'VmHWM'): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(new RegExp(`${field}:\\s+(\\d+)\\s+kB`).exec(status)?.[1]);
    return kb / 1024;
  } catch {
    return NaN;
  }
}

/**
 * Starts `args` with Node (the same binary as this process) and feeds each stdout line to `onLine`
 * (which returns true on the line saying the worker is ready); resolves once that line came. The
 * lines are read as text, not parsed as JSON: this process reads two lines per job from a worker
 * doing thousands of jobs a second, on the same cores as the worker and PostgreSQL.
 */
async function spawnWorker(args: string[], env: NodeJS.ProcessEnv, onLine: (text: string, tracker: Tracker) => boolean): Promise<WorkerProcess> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const tracker = new Tracker();
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr.push(chunk);
    if (stderr.length > 50) stderr.shift();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let readyResolve: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (readyResolve = resolve));
  createInterface({ input: child.stdout! }).on('line', (text) => {
    if (text.startsWith('{') && onLine(text, tracker)) readyResolve();
  });
  const failed = exited.then((code) => {
    throw new Error(`worker process ${args.join(' ')} exited (${code}) before it was ready:\n${stderr.join('').slice(-2000)}`);
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`worker process ${args.join(' ')} not ready after 120 s:\n${stderr.join('').slice(-2000)}`)), 120_000);
  });
  try {
    await Promise.race([ready, failed, timeout]);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  } finally {
    clearTimeout(timer);
  }
  failed.catch(() => undefined);
  return {
    child,
    tracker,
    peakRssMb: () => rssMb(child.pid),
    readyRssMb: rssMb(child.pid, 'VmRSS'),
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([exited, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), 30_000)))]);
      clearTimeout(timer);
      if (code === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/** Atrium: the production worker (src/cli.ts worker), producers through app_private.enqueue_jobs. */
function atriumSystem(ctx: BenchContext, concurrency: number): System {
  const { db } = ctx;
  return {
    label: 'Atrium (graphile-worker)',
    start: () =>
      spawnWorker(
        [...scriptNodeFlags('worker'), path.join(ROOT, 'src', 'cli.ts'), 'worker'],
        {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          NODE_ENV: 'production',
          // Required in production; the benchmark's jobs send no email.
          SMTP_URL: 'smtp://127.0.0.1:2525',
          APP_URL: 'http://127.0.0.1:3000',
          LOG_LEVEL: 'info',
          LOG_FORMAT: 'json',
          ...databaseEnv(db),
          SEED_DEMO_DATA: 'false',
          WORKER_CONCURRENCY: String(concurrency),
        },
        (text, tracker) => {
          // pino's lines: {"level":30,"time":…,…,"jobId":"…","task":"echo",…,"msg":"job started"}
          if (text.includes('"task":"echo"')) {
            if (text.endsWith('"msg":"job started"}')) tracker.start(PINO_JOB_ID.exec(text)![1]!, Number(PINO_TIME.exec(text)![1]));
            else if (text.endsWith('"msg":"job succeeded"}')) tracker.done(Number(PINO_TIME.exec(text)![1]));
            return false;
          }
          return text.endsWith('"msg":"job worker running"}');
        },
      ),
    async enqueue(client, seqs, org) {
      const { rows } = await client.query<{ id: string }>({
        name: 'bench_enqueue_echo',
        text: `select id::text from app_private.enqueue_jobs('echo', $1, array(select jsonb_build_object('seq', s) from unnest($2::int[]) with ordinality u(s, n) order by n)) id`,
        values: [org, seqs],
      });
      return rows.map((r) => r.id);
    },
    async queued(client) {
      const { rows } = await client.query<{ n: number }>({
        name: 'bench_queued_echo',
        text: `select count(*)::int as n from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where t.identifier = 'echo'`,
      });
      return rows[0]!.n;
    },
  };
}

/** pg-boss on its own schema: its worker in a process of its own, producers through boss.insert in a transaction. */
function pgbossSystem(ctx: BenchContext, boss: PgBoss, concurrency: number, batchSize: number): System {
  const on = (client: pg.Client): Db => ({ executeSql: (text: string, values?: unknown[]) => client.query(text, values) });
  return {
    label: `pg-boss ${concurrency} workers × batch ${batchSize}`,
    start: () =>
      spawnWorker(
        [path.join(ROOT, 'bench', 'pgboss-worker.ts')],
        {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          NODE_ENV: 'production',
          DATABASE_URL: ctx.db.ownerUrl,
          PGBOSS_SCHEMA: PGBOSS_SCHEMA,
          PGBOSS_QUEUE: PGBOSS_QUEUE,
          PGBOSS_CONCURRENCY: String(concurrency),
          PGBOSS_BATCH_SIZE: String(batchSize),
        },
        (text, tracker) => {
          // bench/pgboss-worker.ts's lines: {"e":"start","key":"…","t":…}, {"e":"done",…}, {"e":"ready"}
          const line = PGBOSS_LINE.exec(text);
          if (line?.[1] === 'start') tracker.start(line[2]!, Number(line[3]));
          else if (line?.[1] === 'done') tracker.done(Number(line[3]));
          return line?.[1] === 'ready';
        },
      ),
    async enqueue(client, seqs, _org, probe) {
      // A quiet tenant's job gets a higher priority, as Atrium's fair priorities give it.
      await boss.insert(PGBOSS_QUEUE, seqs.map((seq) => ({ data: { seq }, priority: probe ? 1 : 0 })), { db: on(client) });
      return seqs.map(String);
    },
    async queued(client) {
      const { rows } = await client.query<{ n: number }>({
        name: 'bench_queued_pgboss',
        text: `select count(*)::int as n from ${PGBOSS_SCHEMA}.job where name = $1 and state < 'completed'`,
        values: [PGBOSS_QUEUE],
      });
      return rows[0]!.n;
    },
  };
}

/** Runs one system's worker through the idle, load and drain phases. */
async function measure(ctx: BenchContext, system: System, clients: pg.Client[], sampler: pg.Client, firstSeq: number): Promise<Measured> {
  const { options } = ctx;
  const orgs = ctx.dataset.orgs;
  // The idle probes' organization: the smallest. The quiet tenant of the load: the next smallest,
  // which queues nothing else (the idle probes' jobs would count towards its fair priority for two
  // minutes). The load comes from the others.
  const probeOrg = orgs[orgs.length - 1]!.id;
  const quietOrg = orgs.length > 2 ? orgs[orgs.length - 2]!.id : probeOrg;
  const others = orgs.map((o) => o.id).filter((id) => id !== probeOrg && id !== quietOrg);
  const loadOrgs = others.length > 0 ? others : [probeOrg];
  let seq = firstSeq;
  const enqueued: string[] = [];
  const commitAt = new Map<string, number>();
  const commitMs: number[] = [];
  const probeCommitMs: number[] = [];
  const sentAt = new Map<string, number>();
  /**
   * One transaction: begin, enqueue, commit. Each key is stamped with the moment the commit was
   * acknowledged (the job is committed then: the worker's NOTIFY goes out with that answer), and
   * for latency probes also with the moment COMMIT was sent.
   */
  const produce = async (client: pg.Client, count: number, org: string, probe: boolean): Promise<string[]> => {
    const seqs = Array.from({ length: count }, () => seq++);
    await client.query('begin');
    const keys = await system.enqueue(client, seqs, org, probe);
    const sent = now();
    await client.query('commit');
    const acknowledged = now();
    (probe ? probeCommitMs : commitMs).push(acknowledged - sent);
    for (const key of keys) {
      commitAt.set(key, acknowledged);
      if (probe) sentAt.set(key, sent);
      enqueued.push(key);
    }
    return keys;
  };

  const worker = await system.start();
  const { tracker } = worker;
  try {
    // Warm-up: a few jobs through the whole path, not measured.
    for (let i = 0; i < 3; i++) {
      const [key] = await produce(clients[0]!, 1, probeOrg, true);
      await tracker.waitStarted(key!, 10_000);
    }
    const latencyOf = (keys: string[], from = commitAt) => keys.filter((k) => tracker.starts.has(k)).map((k) => tracker.starts.get(k)![0]! - from.get(k)!);

    // Idle: one job at a time, the next once the last has finished and a pause has passed.
    const idleKeys: string[] = [];
    const idleCount = options.smoke ? 5 : 200;
    for (let i = 0; i < idleCount; i++) {
      const [key] = await produce(clients[0]!, 1, probeOrg, true);
      idleKeys.push(key!);
      if (!(await tracker.waitStarted(key!, 10_000))) throw new Error(`${system.label}: an idle job did not start within 10 s`);
      await sleep(20);
    }

    // Load: producers keep a backlog of jobs queued (topping it up in transactions of BATCH
    // jobs), while a probe queues a quiet tenant's job every PROBE_EVERY_MS.
    const floor = backlogCap(ctx);
    let cap = floor;
    const batch = options.smoke ? BATCH : BULK_BATCH;
    const durationMs = options.durationSeconds * 1000;
    const started = now();
    const until = started + durationMs;
    let minBacklog = Infinity;
    let maxCap = cap;
    // The backlog is read from the database (by the sampler below, every 100 ms) plus what the
    // producers queued since: the worker's log lines reach this process late (written in
    // batches, and read by this process on the same cores), and counting from them would make a
    // fast worker look behind and hold the producers back.
    let queuedAtSample = 0;
    let enqueuedAtSample = enqueued.length;
    const backlog = () => queuedAtSample + (enqueued.length - enqueuedAtSample);
    const producers = clients.slice(1, 1 + PRODUCERS).map(async (client, p) => {
      for (let i = 0; now() < until; i++) {
        if (backlog() > cap) {
          await sleep(2);
          continue;
        }
        await produce(client, batch, loadOrgs[(i * PRODUCERS + p) % loadOrgs.length]!, false);
      }
    });
    const loadedKeys: string[] = [];
    const probe = (async () => {
      await sleep(Math.min(1000, durationMs / 4)); // once the queue is full
      while (now() < until - 100) {
        loadedKeys.push(...(await produce(clients[0]!, 1, quietOrg, true)));
        await sleep(PROBE_EVERY_MS);
      }
    })();
    const sampling = (async () => {
      const warmUpUntil = started + Math.min(1000, durationMs / 4);
      const recent: Array<[number, number]> = []; // [time, jobs done] over the last second
      while (now() < until) {
        const before = enqueued.length;
        const queued = await system.queued(sampler);
        const t = now();
        [queuedAtSample, enqueuedAtSample] = [queued, before];
        const done = before - queued;
        recent.push([t, done]);
        while (recent.length > 2 && recent[0]![0] < t - 1000) recent.shift();
        const [t0, done0] = recent[0]!;
        const rate = t > t0 ? ((done - done0) / (t - t0)) * 1000 : 0;
        cap = Math.min(MAX_BACKLOG, Math.max(floor, Math.round(2 * rate)));
        maxCap = Math.max(maxCap, cap);
        if (t >= warmUpUntil) minBacklog = Math.min(minBacklog, backlog());
        await sleep(100);
      }
    })();
    await Promise.all([...producers, probe, sampling]);
    const ended = now();
    const completed = tracker.doneTimes.filter((t) => t >= started && t <= ended).length;
    const throughput = completed / ((ended - started) / 1000);

    // Drain: wait until every job queued has run (or a minute passes without progress).
    let last = -1;
    let lastChange = now();
    while (enqueued.some((k) => !tracker.starts.has(k)) || tracker.doneTimes.length < enqueued.length) {
      const done = tracker.doneTimes.length;
      if (done !== last) {
        last = done;
        lastChange = now();
      } else if (now() - lastChange > 60_000) break;
      await sleep(50);
    }
    await sleep(options.smoke ? 200 : 1000); // a late duplicate would show here
    const lost = enqueued.filter((k) => !tracker.starts.has(k)).length;
    let duplicated = 0;
    for (const times of tracker.starts.values()) duplicated += times.length - 1;
    return {
      idle: latencyOf(idleKeys),
      loaded: latencyOf(loadedKeys),
      idleFromSent: latencyOf(idleKeys, sentAt),
      loadedFromSent: latencyOf(loadedKeys, sentAt),
      probeCommitMs,
      throughput,
      enqueued: enqueued.length,
      lost,
      duplicated,
      peakRssMb: worker.peakRssMb(),
      readyRssMb: worker.readyRssMb,
      minBacklog: Number.isFinite(minBacklog) ? minBacklog : 0,
      maxBacklogKept: maxCap,
      commitMs,
    };
  } finally {
    await worker.stop();
  }
}

export async function jobsSection(ctx: BenchContext): Promise<Section> {
  const { db, options } = ctx;
  const concurrency = ctx.config.worker.concurrency;
  const rows: Row[] = [];
  const notes: string[] = [];
  const clients = Array.from({ length: 1 + PRODUCERS }, () => new pg.Client({ connectionString: db.ownerUrl }));
  const sampler = new pg.Client({ connectionString: db.ownerUrl });
  await Promise.all([...clients, sampler].map((c) => c.connect()));
  const boss = new PgBoss({ connectionString: db.ownerUrl, schema: PGBOSS_SCHEMA, supervise: false, schedule: false, max: 2 });
  boss.on('error', (error: Error) => ctx.log.warn({ err: error }, 'pg-boss (producer side) error'));
  try {
    await boss.start();
    await boss.createQueue(PGBOSS_QUEUE, { notify: true });
    const systems = [atriumSystem(ctx, concurrency), pgbossSystem(ctx, boss, concurrency, 1), pgbossSystem(ctx, boss, concurrency, 10)];
    const results: Measured[] = [];
    for (const [i, system] of systems.entries()) {
      ctx.log.info({ system: system.label }, 'jobs benchmark: measuring');
      results.push(await measure(ctx, system, clients, sampler, i * 10_000_000));
    }
    const [ours, ...baselines] = results as [Measured, ...Measured[]];
    const ratio = (a: Stats, b: Stats) => ({ p50: a.p50 / b.p50, p95: a.p95 / b.p95 });
    const latencyRow = (name: string, pick: (m: Measured) => number[]) => {
      const o = stats(pick(ours));
      for (const [i, base] of baselines.entries()) {
        const b = stats(pick(base));
        rows.push({
          name: `${name} vs ${systems[i + 1]!.label}`,
          unit: 'ms',
          ours: o,
          baseline: b,
          baselineLabel: 'pg-boss',
          ratio: ratio(o, b),
          target: 'ours p50 ≤ 5 ms',
          pass: o.n > 0 && o.p50 <= 5,
        });
      }
    };
    latencyRow('commit→start latency, idle', (m) => m.idle);
    latencyRow('commit→start latency, under load', (m) => m.loaded);
    for (const [i, base] of baselines.entries()) {
      rows.push({
        name: `throughput vs ${systems[i + 1]!.label}`,
        unit: 'ops/s',
        ours: ours.throughput,
        baseline: base.throughput,
        baselineLabel: 'pg-boss',
        ratio: { value: ours.throughput / base.throughput },
        target: '≥ 2.00×',
        pass: ours.throughput / base.throughput >= 2,
        note: `lowest backlog during the run: ours ${ours.minBacklog}, pg-boss ${base.minBacklog} jobs (0: the producers, not the worker, set the pace)`,
      });
    }
    for (const [what, pick] of [
      ['lost jobs', (m: Measured) => m.lost],
      ['duplicated jobs', (m: Measured) => m.duplicated],
    ] as const) {
      for (const [i, base] of baselines.entries()) {
        rows.push({
          name: `${what} vs ${systems[i + 1]!.label}`,
          unit: 'count',
          ours: pick(ours),
          baseline: pick(base),
          baselineLabel: 'pg-boss',
          target: '0 on both sides',
          pass: pick(ours) === 0 && pick(base) === 0,
          note: `of ${ours.enqueued} jobs queued (ours), ${base.enqueued} (pg-boss)`,
        });
      }
    }
    for (const [i, base] of baselines.entries()) {
      rows.push({
        name: `worker peak RSS vs ${systems[i + 1]!.label}`,
        unit: 'MB',
        ours: ours.peakRssMb,
        baseline: base.peakRssMb,
        baselineLabel: 'pg-boss process',
        ratio: { value: ours.peakRssMb / base.peakRssMb },
        target: 'ours ≤ 200 MB',
        pass: ours.peakRssMb <= 200,
      });
    }
    const probeCommit = stats(ours.probeCommitMs);
    const loadCommit = stats(ours.commitMs);
    const fromSent = (m: Measured) => `idle ${stats(m.idleFromSent).p50.toFixed(2)}, under load ${stats(m.loadedFromSent).p50.toFixed(2)}`;
    notes.push(
      `Each worker runs in a process of its own with concurrency ${concurrency} (WORKER_CONCURRENCY). Atrium's is \`src/cli.ts worker\` with NODE_ENV=production and LOG_LEVEL=info, as in production: pollInterval 1 s, new jobs announced by LISTEN/NOTIFY, a local queue of ${LOCAL_QUEUE_PER_WORKER * concurrency} jobs taken in one query, successes recorded in batches (completeJobBatchDelay 2 ms), one log line at each job's start and end.`,
      `pg-boss (npm pg-boss ${PGBOSS_VERSION}, schema ${PGBOSS_SCHEMA}): useListenNotify with a notify queue, ${concurrency} workers (localConcurrency), pollingInterval 0.5 s (its minimum). Batch 1: one job per fetch, as graphile-worker; between jobs a worker waits for a NOTIFY or the next poll. Batch 10 with burstWhenBatchFull: pg-boss's throughput setting (up to ${concurrency * 10} jobs in flight, fetched and completed 10 at a time).`,
      `Latency: from the moment the producer's COMMIT is acknowledged (the job is committed; the NOTIFY leaves with it) to the worker starting the task, wall-clock ms on both sides (1 ms resolution of the log lines). Counted from the moment COMMIT was sent instead, p50s are: ours ${fromSent(ours)}; ${baselines.map((m, i) => `${systems[i + 1]!.label} ${fromSent(m)}`).join('; ')} — the commit itself (a WAL flush: durable settings) took p50 ${probeCommit.p50.toFixed(2)} ms for the probes and ${loadCommit.p50.toFixed(2)} ms for the load's producers.`,
      `Idle: ${ours.idle.length} jobs one at a time, 20 ms apart. Under load: a quiet tenant (the second smallest organization, queuing nothing else; the idle jobs are the smallest one's) queues one job every ${PROBE_EVERY_MS} ms during the throughput run, while the producers queue for the ${Math.max(1, ctx.dataset.orgs.length - 2)} others. Atrium's fair priorities (app_private.fair_job_priority) put it ahead of the busy tenants' backlog; pg-boss has no such thing, so its probe jobs get priority 1 (the busy ones 0) for the same effect. Limits of Atrium's: the quiet tenant's own jobs count too (${Math.round(60000 / PROBE_EVERY_MS)} a minute here; its n-th job goes at priority n, after at most one job per busy tenant at each better level, and a busy tenant the producers turn to for the first time starts at level 0); and a job queued at a better priority waits for the jobs the worker has already taken into its local queue.`,
      `Throughput: ${PRODUCERS} producers queue jobs in transactions of ${options.smoke ? BATCH : BULK_BATCH}, one call each (Atrium: app_private.enqueue_jobs, as a service queuing in bulk does; pg-boss: insert() in the producer's transaction), for ${options.durationSeconds} s, keeping a backlog of at least ${backlogCap(ctx)} jobs and of two seconds of what the worker finishes (at most ${MAX_BACKLOG}; the most asked: ours ${ours.maxBacklogKept}, ${baselines.map((m, i) => `${systems[i + 1]!.label} ${m.maxBacklogKept}`).join(', ')}); jobs finished in that window ÷ its length. A lowest backlog of 0 means the worker ran out of work at times: the producers, sharing the machine, set the pace, and the figure is a lower bound. Then the queue drains and every job is counted by key (lost: queued, never started; duplicated: started more than once).`,
      `Peak RSS: VmHWM of the worker process from /proc over its whole life (start, idle, load, drain). RSS once ready, before the measured jobs: ours ${ours.readyRssMb.toFixed(1)} MB, ${baselines.map((m, i) => `${systems[i + 1]!.label} ${m.readyRssMb.toFixed(1)} MB`).join(', ')}. Growth under load is V8's heap sizing within the bounds \`npm run worker\` sets (package.json).`,
    );
  } finally {
    await boss.stop({ graceful: false, close: true }).catch(() => undefined);
    const owner = clients[0]!;
    await owner.query(`delete from graphile_worker._private_jobs j using graphile_worker._private_tasks t where t.id = j.task_id and t.identifier = 'echo'`).catch(() => undefined);
    await owner.query(`drop schema if exists ${PGBOSS_SCHEMA} cascade`).catch(() => undefined);
    await Promise.all([...clients, sampler].map((c) => c.end().catch(() => undefined)));
  }
  return { id: 'jobs', title: '4. Jobs: Atrium\'s worker (graphile-worker) vs pg-boss on the same database', rows, notes };
}
