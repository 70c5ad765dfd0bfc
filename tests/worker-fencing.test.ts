// Fencing for jobs (src/worker/fencing.ts): a worker paused longer than the stale time is
// declared dead by another, which runs its jobs; when it resumes it sends nothing for the jobs it
// held — neither the one it was running (stopped before its POST) nor those waiting in its local
// queue — completes none of them, and starts afresh under a new pool id. On a PostgreSQL of its
// own (the run's other workers must not take these jobs), with short heartbeat settings.
// Then the fence's rules one by one: no query while the lease is valid; a job another pool holds
// is fenced before it starts, before its side effect and when it finishes; a database that cannot
// answer fences; a heartbeat says when its worker was declared dead.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import pino from 'pino';
import { ROOT } from '../src/paths.ts';
import { Fence, JobFencedError, assertOwnership, now } from '../src/worker/fencing.ts';
import { startWorker } from '../src/worker/index.ts';
import { asVisitor, closePools, createOrganization, pool, sessionOf, signUp, urlFor, type User } from './support/db.ts';
import { provisionTestDatabase, type Provisioned } from './support/provision.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';

const HEARTBEAT_MS = 300;
const STALE_MS = 1500;
/** How long the receiver takes to answer: the new owner's deliveries are still in flight when the paused worker resumes. */
const ANSWER_MS = 1500;
const DELIVERIES = 6;

type Line = Record<string, any>;

let provisioned: Provisioned;
let savedEnv: NodeJS.ProcessEnv;
let receiver: Receiver;
let owner: User;
let orgId: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  provisioned = await provisionTestDatabase();
  savedEnv = { ...process.env };
  Object.assign(process.env, provisioned.env);
  receiver = await startReceiver();
  owner = await signUp('fencing');
  orgId = await createOrganization(owner, 'fencing');
}, 120_000);

afterAll(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
  }
  await receiver?.close();
  await closePools();
  await provisioned?.teardown();
  if (savedEnv) process.env = savedEnv;
}, 60_000);

/** `npm run worker` as its own process (concurrency 2: a local queue of 20 jobs), logging JSON lines we keep. */
async function spawnWorker(): Promise<{ process: ChildProcess; lines: Line[]; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'src/cli.ts'), 'worker'], {
    cwd: ROOT,
    env: {
      ...process.env,
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'info',
      WORKER_CONCURRENCY: '2',
      WORKER_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
      WORKER_STALE_AFTER_MS: String(STALE_MS),
      WEBHOOK_TIMEOUT_MS: '60000',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines: Line[] = [];
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop()!;
    for (const part of parts) {
      try {
        lines.push(JSON.parse(part));
      } catch {
        lines.push({ msg: part });
      }
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => lines.push({ stderr: chunk.toString() }));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await waitFor('the worker to start', async () => {
    if (child.exitCode !== null) throw new Error(`worker exited:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`);
    return lines.some((l) => l.msg === 'job worker running');
  }, 60_000);
  return { process: child, lines, exited };
}

/** A logger that keeps its JSON lines in memory (nothing reaches jest's output). */
function memoryLogger(): { log: pino.Logger; lines: Line[] } {
  const lines: Line[] = [];
  return { log: pino({ level: 'info' }, { write: (text: string) => void lines.push(JSON.parse(text)) }), lines };
}

/** `state` says, when it times out, what was seen instead. */
async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, state?: () => Promise<unknown>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let value: T | undefined | false;
    try {
      value = await fn();
    } catch (error) {
      if (String(error).includes('worker exited')) throw error;
    }
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${state ? `; seen instead: ${JSON.stringify(await state().catch(String), null, 1)}` : ''}`);
    await sleep(50);
  }
}

/** A worker's log lines without their timing fields, for a failure message. */
const outline = (lines: Line[]) => lines.map(({ msg, jobId, task, moment, err, error, stderr }) => ({ msg, jobId, task, moment, err: err?.message ?? error, stderr }));

describe('a worker paused past the stale time', () => {
  test('SIGSTOP then SIGCONT: the jobs it held run once, on the worker that took them over; it sends and completes none of them', async () => {
    receiver.answer('/paused', { status: 200, delayMs: ANSWER_MS });
    const session = sessionOf(owner, orgId);
    const endpoint: string = await asVisitor(session, async (c) => (await c.query('select endpoint_id from app_public.create_webhook_endpoint($1, $2)', [receiver.url('/paused'), ['*']])).rows[0].endpoint_id, { commit: true });
    const deliveries: string[] = [];
    for (let i = 0; i < DELIVERIES; i++) {
      deliveries.push(await asVisitor(session, async (c) => (await c.query('select id from app_public.send_test_webhook($1)', [endpoint])).rows[0].id, { commit: true }));
    }
    const jobs = await pool('worker').query<{ id: string; key: string }>('select id::text, key from graphile_worker._private_jobs where key = any ($1)', [deliveries.map((d) => `deliver_webhook:${d}`)]);
    const jobIds = new Set(jobs.rows.map((j) => j.id));
    expect(jobIds.size).toBe(DELIVERIES);
    // Only these wait in the queue (not the activity dispatches of the changes above).
    await pool('worker').query('delete from graphile_worker._private_jobs where id <> all ($1::bigint[])', [[...jobIds]]);

    // Hold the deliveries the worker starts before their POST: reading a delivery's target
    // (app_private.webhook_delivery_target) waits for the signing secrets, locked here.
    const locker = new pg.Client({ connectionString: urlFor('superuser') });
    locker.on('error', () => undefined); // (ended below; a failed test may leave it to the teardown)
    await locker.connect();
    await locker.query('begin');
    await locker.query('lock table app_private.webhook_secrets in access exclusive mode');
    // Who waits for it is read on another connection: inside the locker's transaction,
    // pg_stat_activity would keep the backends of its first read (the statistics snapshot lasts
    // the transaction), and a job slot whose connection opened later would never be counted.
    const lockerPid: number = (await locker.query('select pg_backend_pid() as pid')).rows[0].pid;
    const waiting = "from pg_stat_activity where $1::int = any (pg_blocking_pids(pid))";

    // The paused worker: its first fetch takes every job into its local queue; two start (its
    // concurrency) and wait for the secrets, the others wait in its memory.
    const paused = await spawnWorker();
    await waitFor('both its job slots to wait for the secrets', async () => {
      const { rows } = await pool('superuser').query(`select count(*)::int as n ${waiting}`, [lockerPid]);
      return rows[0].n === 2 && paused.lines.filter((l) => l.msg === 'job started').length === 2;
    }, 30_000, async () => ({
      blocked: (await pool('superuser').query(`select usename, wait_event_type, wait_event, state, left(query, 120) as query ${waiting}`, [lockerPid])).rows,
      others: (await pool('superuser').query("select usename, wait_event_type, wait_event, state, left(query, 120) as query from pg_stat_activity where datname = current_database() and pid <> all (array[pg_backend_pid(), $1::int]) and state <> 'idle'", [lockerPid])).rows,
      jobs: (await locker.query('select id::text, task_identifier, locked_by is not null as locked, attempts, left(last_error, 160) as last_error from graphile_worker.jobs order by id')).rows,
      worker: outline(paused.lines),
    }));
    const running = paused.lines.filter((l) => l.msg === 'job started').map((l) => String(l.jobId));
    expect(running.every((id) => jobIds.has(id))).toBe(true);
    const held = await pool('worker').query<{ locked_by: string | null }>('select distinct locked_by from graphile_worker._private_jobs where id = any ($1::bigint[])', [[...jobIds]]);
    expect(held.rows).toEqual([{ locked_by: expect.stringMatching(/^pool-/) }]); // all of them, by its pool
    const pausedPool = held.rows[0].locked_by;
    paused.process.kill('SIGSTOP');
    await locker.query('rollback'); // its read completes, unseen until it resumes
    await locker.end();

    // Another worker declares it dead (no heartbeat for STALE_MS), frees its jobs and runs them.
    const rescuerLog = memoryLogger();
    const rescuer = await startWorker({
      connectionString: urlFor('worker'),
      concurrency: 2,
      log: rescuerLog.log,
      webhooks: { timeoutMs: 60_000, allowPrivateNetworks: true },
      heartbeatIntervalMs: HEARTBEAT_MS,
      staleAfterMs: STALE_MS,
      crontab: false,
    });
    try {
      await receiver.waitFor('/paused', 2, 60_000);
      expect(rescuerLog.lines.some((l) => l.msg === 'worker presumed dead: its jobs will run again')).toBe(true);

      // It resumes while the new owner's first deliveries are still in flight.
      paused.process.kill('SIGCONT');
      const ofPaused = (jobId: string, msgs: string[]) => paused.lines.find((l) => String(l.jobId) === jobId && msgs.includes(l.msg));
      const outcomes = await Promise.all(running.map((jobId) => waitFor('the paused worker to finish the jobs it was running', async () =>
        ofPaused(jobId, ['job fenced: this worker no longer holds it, so it does nothing more for it', 'job succeeded', 'job failed; will retry', 'job failed permanently']),
      )));
      await waitFor('every delivery recorded', async () => {
        const { rows } = await pool('owner').query<{ n: number }>("select count(*)::int as n from app_public.webhook_deliveries where id = any ($1) and status = 'succeeded'", [deliveries]);
        return rows[0].n === DELIVERIES;
      }, 60_000);

      // Each delivery was POSTed once: the receiver saw each id once, with it in the header.
      const seen = () => {
        const counts: Record<string, number> = {};
        for (const r of receiver.requests('/paused')) counts[r.headers['atrium-webhook-id'] as string] = (counts[r.headers['atrium-webhook-id'] as string] ?? 0) + 1;
        return counts;
      };
      expect(seen()).toEqual(Object.fromEntries(deliveries.map((d) => [d, 1])));
      for (const outcome of outcomes) {
        expect(outcome).toMatchObject({ msg: 'job fenced: this worker no longer holds it, so it does nothing more for it', moment: 'before a side effect', level: 40 });
      }

      // It learnt from its heartbeat that it was declared dead, and started afresh: a new pool,
      // its old local queue dropped unrun.
      const restarted = await waitFor('the paused worker to restart its pool', async () => paused.lines.find((l) => l.msg === 'job worker restarted'));
      expect(paused.lines.some((l) => l.msg?.startsWith('this worker was declared dead by another'))).toBe(true);
      expect(restarted.previous).toBe(pausedPool);
      expect(restarted.workerId).not.toBe(pausedPool);
      expect(paused.process.exitCode).toBeNull();

      // Still once each after it is done with its old batch; the delivery log counts one attempt each.
      expect(seen()).toEqual(Object.fromEntries(deliveries.map((d) => [d, 1])));
      const log = await pool('owner').query('select id, status, attempts from app_public.webhook_deliveries where id = any ($1) order by id', [deliveries]);
      expect(log.rows).toEqual([...deliveries].sort().map((id) => ({ id, status: 'succeeded', attempts: 1 })));

      // Every job done exactly once, by the worker that took it over; the paused one completed none.
      const rescued = rescuerLog.lines.filter((l) => l.msg === 'job succeeded' && jobIds.has(String(l.jobId))).map((l) => String(l.jobId));
      expect(rescued.sort()).toEqual([...jobIds].sort());
      expect(paused.lines.filter((l) => l.msg === 'job succeeded' && jobIds.has(String(l.jobId)))).toEqual([]);
      // (Successes are recorded in batches, a moment after "job succeeded" is logged: wait for the
      // queue to let go of them, then check again that nothing ran twice meanwhile.)
      await waitFor('the finished jobs to leave the queue', async () => {
        const left = await pool('worker').query('select id from graphile_worker._private_jobs where id = any ($1::bigint[])', [[...jobIds]]);
        return left.rowCount === 0;
      }, 20_000);
      expect(rescuerLog.lines.filter((l) => l.msg === 'job succeeded' && jobIds.has(String(l.jobId))).map((l) => String(l.jobId)).sort()).toEqual([...jobIds].sort());
      expect(seen()).toEqual(Object.fromEntries(deliveries.map((d) => [d, 1])));
      // The fenced jobs were logged at warn, by id, never with their payload; nothing at error level.
      const fenced = paused.lines.filter((l) => l.msg === 'job fenced: this worker no longer holds it, so it does nothing more for it');
      expect(fenced.length).toBeGreaterThanOrEqual(2);
      for (const line of fenced) {
        expect(jobIds.has(String(line.jobId))).toBe(true);
        expect(JSON.stringify(line)).not.toContain('delivery_id');
      }
      expect(paused.lines.filter((l) => (l.level ?? 0) >= 50 || l.stderr)).toEqual([]);
    } finally {
      paused.process.kill('SIGCONT');
      paused.process.kill('SIGTERM');
      await rescuer.stop();
    }
    expect(await paused.exited).toBe(0);
  }, 180_000);
});

describe('the fence', () => {
  const STALE = 600; // lease: 400 ms
  /** The worker role's pool, counting the fence's queries. */
  function countingPool(fail = false) {
    const counter = { queries: 0 };
    const real = pool('worker');
    const stub = {
      query: (...args: unknown[]) => {
        counter.queries++;
        return fail ? Promise.reject(new Error('connect ECONNREFUSED')) : (real.query as (...a: unknown[]) => unknown)(...args);
      },
    } as unknown as pg.Pool;
    return { stub, counter };
  }
  /** A real job, locked by `lockedBy` at `attempts` (as graphile-worker's fetch leaves it). */
  async function lockedJob(lockedBy: string, attempts: number) {
    const { rows } = await pool('worker').query<{ id: string }>("select (graphile_worker.add_job('echo', '{}'::json, run_at => now() + interval '1 hour')).id::text as id");
    await pool('worker').query('update graphile_worker._private_jobs set locked_by = $2, locked_at = now(), attempts = $3 where id = $1', [rows[0].id, lockedBy, attempts]);
    return { id: rows[0].id, locked_by: lockedBy, attempts, task_identifier: 'echo', max_attempts: 25 } as any;
  }
  const takeOver = (jobId: string) => pool('worker').query("update graphile_worker._private_jobs set locked_by = 'pool-other', attempts = attempts + 1 where id = $1", [jobId]);
  /** Runs `task` fenced, as graphile-worker would: (payload, helpers). */
  const runFenced = (fence: Fence, job: any, task: (helpers: any) => Promise<void>) => {
    const helpers = { job } as any;
    return fence.wrap(async (_payload, h) => task(h))({}, helpers);
  };
  const leaseFor = (fence: Fence, poolId: string) => {
    fence.poolStarted(poolId, now());
    expect(fence.confirmed(poolId, now())).toBe(true);
  };

  test('while the lease is valid, a task and its side effect run without a query', async () => {
    const { stub, counter } = countingPool();
    const fence = new Fence({ pool: stub, staleAfterMs: 45_000, log: pino({ level: 'silent' }) });
    leaseFor(fence, 'pool-a');
    const job = await lockedJob('pool-a', 1);
    let sent = 0;
    await runFenced(fence, job, async (helpers) => {
      await assertOwnership(helpers);
      sent++;
    });
    expect({ sent, queries: counter.queries }).toEqual({ sent: 1, queries: 0 });
  });

  test('lease expired: a job another pool now holds is fenced before it starts (logged once, by id)', async () => {
    const { stub, counter } = countingPool();
    const log = memoryLogger();
    const fence = new Fence({ pool: stub, staleAfterMs: STALE, log: log.log });
    leaseFor(fence, 'pool-a');
    const job = await lockedJob('pool-a', 1);
    await takeOver(job.id);
    await sleep(STALE);
    let ran = false;
    await expect(runFenced(fence, job, async () => void (ran = true))).rejects.toBeInstanceOf(JobFencedError);
    expect({ ran, queries: counter.queries }).toEqual({ ran: false, queries: 1 });
    expect(log.lines).toEqual([expect.objectContaining({ level: 40, jobId: job.id, task: 'echo', attempt: 1, lockedBy: 'pool-a', moment: 'before it started' })]);
  });

  test('lease expired: a job still ours at the attempt it was taken with runs (one query per check)', async () => {
    const { stub, counter } = countingPool();
    const fence = new Fence({ pool: stub, staleAfterMs: STALE, log: pino({ level: 'silent' }) });
    leaseFor(fence, 'pool-a');
    const job = await lockedJob('pool-a', 1);
    await sleep(STALE);
    let sent = 0;
    await runFenced(fence, job, async (helpers) => {
      await assertOwnership(helpers);
      sent++;
    });
    expect({ sent, queries: counter.queries }).toEqual({ sent: 1, queries: 3 });
  });

  test('the same pool at a later attempt is not the same holder: fenced before the side effect', async () => {
    const fence = new Fence({ pool: pool('worker'), staleAfterMs: STALE, log: pino({ level: 'silent' }) });
    leaseFor(fence, 'pool-a');
    const job = await lockedJob('pool-a', 1);
    await sleep(STALE);
    let sent = 0;
    await expect(runFenced(fence, job, async (helpers) => {
      await pool('worker').query('update graphile_worker._private_jobs set attempts = attempts + 1 where id = $1', [job.id]); // swept, then fetched again by the same pool
      await assertOwnership(helpers);
      sent++;
    })).rejects.toThrow(/fenced before a side effect/);
    expect(sent).toBe(0);
  });

  test('a task that ends after its job was taken over fails instead of returning (no completion of another worker\'s job)', async () => {
    const fence = new Fence({ pool: pool('worker'), staleAfterMs: STALE, log: pino({ level: 'silent' }) });
    leaseFor(fence, 'pool-a');
    const job = await lockedJob('pool-a', 1);
    await expect(runFenced(fence, job, async () => {
      await sleep(STALE); // a pause past the lease...
      await takeOver(job.id); // ...during which the job was freed and taken by another worker
    })).rejects.toThrow(/fenced when it finished/);
  });

  test('a database that cannot answer fences (nothing is sent on a guess)', async () => {
    const { stub } = countingPool(true);
    const fence = new Fence({ pool: stub, staleAfterMs: STALE, log: pino({ level: 'silent' }) });
    const job = { id: '1', locked_by: 'pool-a', attempts: 1, task_identifier: 'echo' } as any; // no heartbeat yet: no lease
    await expect(runFenced(fence, job, async () => undefined)).rejects.toThrow(/could not be checked \(connect ECONNREFUSED\)/);
  });

  test('a pool declared dead is fenced without a query; one whose first heartbeat came after the lease counts as declared dead', async () => {
    const { stub, counter } = countingPool();
    const fence = new Fence({ pool: stub, staleAfterMs: STALE, log: pino({ level: 'silent' }) });
    leaseFor(fence, 'pool-a');
    fence.declaredDead('pool-a');
    expect(fence.confirmed('pool-a', now())).toBe(false);
    await expect(runFenced(fence, { id: '1', locked_by: 'pool-a', attempts: 1 }, async () => undefined)).rejects.toThrow(/declared dead/);
    expect(counter.queries).toBe(0);
    fence.poolStarted('pool-late', now());
    await sleep(STALE);
    expect(fence.confirmed('pool-late', now())).toBe(false);
    expect(fence.leaseValid('pool-late')).toBe(false);
  });

  test('worker_heartbeat: the first beat registers; later ones say whether the row is still there (false once swept)', async () => {
    const beat = async (register: boolean) => (await pool('worker').query('select app_private.worker_heartbeat($1, $2, $3, $4) as alive', ['pool-beat', 'host', 1, register])).rows[0].alive;
    expect(await beat(false)).toBe(false); // never registered
    expect(await beat(true)).toBe(true);
    expect(await beat(false)).toBe(true);
    await pool('worker').query("delete from app_private.worker_heartbeats where worker_id = 'pool-beat'"); // what a sweep does
    expect(await beat(false)).toBe(false);
    expect((await pool('worker').query("select 1 from app_private.worker_heartbeats where worker_id = 'pool-beat'")).rows).toEqual([]); // not brought back
    // The earlier form still works (workers of earlier versions).
    await pool('worker').query("select app_private.worker_heartbeat('pool-old', 'host', 1)");
    await pool('worker').query("delete from app_private.worker_heartbeats where worker_id = 'pool-old'");
  });
});
