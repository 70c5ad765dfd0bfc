// The job queue from the outside: other services queue jobs with one SQL call under their own
// role; one organization's flood does not starve another's job; operators see failed jobs and
// retry them (SQL and `npm run jobs`).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { runJobsCommand } from '../src/worker/admin.ts';
import { jobStartRecorder, startWorker, type WorkerHandle } from '../src/worker/index.ts';
import { asVisitor, closePools, createOrganization, inTransaction, pgError, pool, roleName, sessionOf, signUp, urlFor, type User } from './support/db.ts';
import { testLogger } from './support/log.ts';

let alice: User;
let orgA: string;
let orgB: string;

beforeAll(async () => {
  alice = await signUp('jobs-a');
  [orgA, orgB] = await Promise.all([createOrganization(alice, 'jobs-a'), createOrganization(await signUp('jobs-b'), 'jobs-b')]);
});
afterAll(closePools);

/** Runs `fn` as a service holding the producer role (a login role granted DATABASE_PRODUCER). */
const asProducer = <T>(fn: (c: pg.PoolClient) => Promise<T>, commit = true): Promise<T> => inTransaction('superuser', { role: roleName('producer') }, fn, commit);

const job = async (id: string | number) =>
  (await pool('worker').query(`select j.*, t.identifier as task from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where j.id = $1`, [id])).rows[0];

describe('producers: one SQL call, their own role', () => {
  test('enqueue_job queues a known task for an organization, with the organization in the payload', async () => {
    // Due in an hour, so the workers of other test files (same queue) leave it there to be read.
    const id = await asProducer(async (c) => (await c.query(`select app_private.enqueue_job('echo', $1, '{"hello": "world"}', run_at => now() + interval '1 hour') as id`, [orgA])).rows[0].id);
    const queued = await job(id);
    expect(queued).toMatchObject({ task: 'echo', payload: { hello: 'world', organization_id: orgA }, max_attempts: 10 });
    await pool('worker').query('delete from graphile_worker._private_jobs where id = $1', [id]);
  });

  test('a rolled-back enqueue leaves no job (it is part of the producer\'s transaction)', async () => {
    const id = await asProducer(async (c) => (await c.query(`select app_private.enqueue_job('echo', $1) as id`, [orgA])).rows[0].id, false);
    expect(await job(id)).toBeUndefined();
  });

  test('a job_key collapses duplicates within the organization, not across organizations', async () => {
    const enqueue = (org: string) => asProducer(async (c) => (await c.query(`select app_private.enqueue_job('echo', $1, job_key => 'nightly', run_at => now() + interval '1 hour') as id`, [org])).rows[0].id);
    const first = await enqueue(orgA);
    expect(await enqueue(orgA)).toBe(first);
    expect(await enqueue(orgB)).not.toBe(first);
    await pool('worker').query(`delete from graphile_worker._private_jobs where key like 'echo:%:nightly'`);
  });

  test('unknown tasks, bad payloads and unknown organizations are refused with clear errors', async () => {
    expect((await pgError(asProducer((c) => c.query(`select app_private.enqueue_job('deliver_webhook', $1)`, [orgA])))).code).toBe('AT472');
    expect((await pgError(asProducer((c) => c.query(`select app_private.enqueue_job('echo', $1, '[1]')`, [orgA])))).code).toBe('22023');
    expect((await pgError(asProducer((c) => c.query(`select app_private.enqueue_job('echo', gen_random_uuid())`)))).code).toBe('22023');
  });

  test('enqueue_jobs queues many jobs in one call, priorities rising as if queued one by one', async () => {
    const org = await createOrganization(await signUp('jobs-bulk'), 'jobs-bulk');
    const payloads = Array.from({ length: 250 }, (_, i) => JSON.stringify({ n: i }));
    const ids: string[] = await asProducer(async (c) => (await c.query(`select id from app_private.enqueue_jobs('echo', $1, $2::jsonb[], run_at => now() + interval '1 hour') id`, [org, payloads])).rows.map((r) => r.id));
    expect(ids).toHaveLength(250);
    const { rows } = await pool('worker').query(`select (payload->>'n')::int as n, payload->>'organization_id' as org, priority, max_attempts from graphile_worker._private_jobs where id = any($1::bigint[]) order by 1`, [ids]);
    expect(rows.map((r) => r.n)).toEqual(payloads.map((_, i) => i));
    expect(new Set(rows.map((r) => r.org))).toEqual(new Set([org]));
    // One priority level per job: the n-th job of this (new) organization gets priority n.
    expect(rows.map((r) => r.priority)).toEqual(rows.map((r) => r.n));
    expect(rows.every((r) => r.max_attempts === 10)).toBe(true);
    // The next single job of the same organization continues the count.
    const next = await asProducer(async (c) => (await c.query(`select app_private.enqueue_job('echo', $1, run_at => now() + interval '1 hour') as id`, [org])).rows[0].id);
    expect((await job(next)).priority).toBe(250);
    await pool('worker').query(`delete from graphile_worker._private_jobs where id = any($1::bigint[])`, [[...ids, next]]);
  });

  test('enqueue_jobs: keys collapse duplicates, the batch is part of the transaction, bad input is refused', async () => {
    const keyed = (keys: Array<string | null>) =>
      asProducer(async (c) => (await c.query(`select id from app_private.enqueue_jobs('echo', $1, $2::jsonb[], run_at => now() + interval '1 hour', job_keys => $3::text[]) id`, [orgA, keys.map(() => '{}'), keys])).rows.map((r) => r.id));
    const first = await keyed(['bulk-1', null, 'bulk-2']);
    expect(first).toHaveLength(3);
    const again = await keyed(['bulk-1', 'bulk-2']);
    expect([...again].sort()).toEqual([first[0], first[2]].sort()); // the jobs already queued under those keys
    expect((await pool('worker').query(`select count(*)::int as n from graphile_worker._private_jobs where key like 'echo:%:bulk-%'`)).rows[0].n).toBe(2);
    const rolledBack = await asProducer(async (c) => (await c.query(`select id from app_private.enqueue_jobs('echo', $1, array['{}', '{}']::jsonb[]) id`, [orgA])).rows.map((r) => r.id), false);
    expect((await pool('worker').query(`select count(*)::int as n from graphile_worker._private_jobs where id = any($1::bigint[])`, [rolledBack])).rows[0].n).toBe(0);
    expect(await asProducer(async (c) => (await c.query(`select count(*)::int as n from app_private.enqueue_jobs('echo', $1, '{}'::jsonb[])`, [orgA])).rows[0].n)).toBe(0);
    for (const [sql, params] of [
      [`select app_private.enqueue_jobs('echo', $1, array['{}', '[1]']::jsonb[])`, [orgA]],
      [`select app_private.enqueue_jobs('echo', $1, array['{}', null]::jsonb[])`, [orgA]],
      [`select app_private.enqueue_jobs('echo', $1, array['{}', '{}']::jsonb[], job_keys => array['a'])`, [orgA]],
      [`select app_private.enqueue_jobs('echo', $1, array['{}', '{}']::jsonb[], job_keys => array['a', 'a'])`, [orgA]],
      [`select app_private.enqueue_jobs('echo', $1, array_fill('{}'::jsonb, array[10001]))`, [orgA]],
      [`select app_private.enqueue_jobs('echo', gen_random_uuid(), array['{}']::jsonb[])`, []],
    ] as const) {
      expect({ sql, code: (await pgError(asProducer((c) => c.query(sql, [...params])))).code }).toEqual({ sql, code: '22023' });
    }
    expect((await pgError(asProducer((c) => c.query(`select app_private.enqueue_jobs('deliver_webhook', $1, array['{}']::jsonb[])`, [orgA])))).code).toBe('AT472');
    await pool('worker').query(`delete from graphile_worker._private_jobs where key like 'echo:%:bulk-%'`);
  });

  test('the producer role reads no tenant data and cannot use the queue directly', async () => {
    for (const sql of ['select 1 from app_public.invoices limit 1', 'select 1 from app_public.organizations limit 1', `select graphile_worker.add_job('echo')`, 'select 1 from graphile_worker._private_jobs limit 1']) {
      expect({ sql, code: (await pgError(asProducer((c) => c.query(sql)))).code }).toEqual({ sql, code: '42501' });
    }
  });

  test('API visitors cannot queue jobs', async () => {
    const err = await pgError(asVisitor(sessionOf(alice, orgA), (c) => c.query(`select app_private.enqueue_job('echo', $1)`, [orgA])));
    expect(err.code).toBe('42501');
  });
});

describe('fairness: one organization\'s 10,000 jobs do not starve another\'s one job', () => {
  // A task only this file's worker runs: the workers of other test files share the queue, and
  // would otherwise take some of these jobs and hide the order in which they start.
  const TASK = 'atrium_test_fairness';
  let worker: WorkerHandle | undefined;
  beforeAll(async () => {
    await pool('owner').query(`insert into app_private.producer_tasks (task, description) values ($1, 'tests/jobs.test.ts: fairness') on conflict do nothing`, [TASK]);
  });
  afterAll(async () => {
    await worker?.stop();
    await pool('worker').query(`delete from graphile_worker._private_jobs j using graphile_worker._private_tasks t where t.id = j.task_id and t.identifier = $1`, [TASK]);
    await pool('owner').query('delete from app_private.producer_tasks where task = $1', [TASK]);
  });

  test('the flood gets one priority level per job; the other organization\'s job starts after one of them', async () => {
    // Queued one by one (enqueue_job) in one transaction, and the priorities read before it commits.
    const { flood, single, levels, min, max, singlePriority } = await asProducer(async (c) => {
      const f = (await c.query(`select array_agg(app_private.enqueue_job($2, $1, jsonb_build_object('n', n)) order by n) as ids from generate_series(1, 10000) n`, [orgA, TASK])).rows[0].ids as string[];
      const s1 = (await c.query(`select app_private.enqueue_job($2, $1, '{"single": true}') as id`, [orgB, TASK])).rows[0].id as string;
      await c.query('reset role');
      const p = (await c.query(
        `select count(distinct priority)::int as levels, min(priority) as min, max(priority) as max from graphile_worker._private_jobs where id = any ($1::bigint[])`,
        [f],
      )).rows[0];
      const sp = (await c.query('select priority from graphile_worker._private_jobs where id = $1', [s1])).rows[0].priority as number;
      return { flood: f.map(String), single: String(s1), levels: p.levels as number, min: p.min as number, max: p.max as number, singlePriority: sp };
    });
    // One level per job (one transaction: one minute), after the few jobs organization A queued
    // earlier in this file; organization B's single job comes after its own few earlier ones.
    expect(levels).toBe(10_000);
    expect(max - min).toBe(9_999);
    expect(min).toBeLessThan(20);
    expect(singlePriority).toBeLessThan(20);

    // The worker's "job started" lines, in order.
    const { log, started: starts } = jobStartRecorder();
    const startedIds = () => starts.map((s) => s.jobId);
    worker = await startWorker({ connectionString: urlFor('worker'), concurrency: 4, log, crontab: false, extraTasks: { [TASK]: async () => undefined } });
    const started = Date.now();
    while (!startedIds().includes(single)) {
      if (Date.now() - started > 60_000) throw new Error('the single job did not start within 60 s');
      await sleep(5);
    }
    // Without fair priorities it would start after all 10,000 (they were queued first). With them,
    // only the flood's jobs at a better priority than the single job's, or at the same one (queued
    // first), start before it — even though the worker's first fetch takes 40 jobs at once, in
    // whatever order the database returns them (src/worker/job-order.ts).
    const floodIds = new Set(flood);
    const order = startedIds();
    const floodBefore = order.slice(0, order.indexOf(single)).filter((id) => floodIds.has(id)).length;
    expect(floodBefore).toBeLessThanOrEqual(Math.max(0, singlePriority - min + 1));
  }, 120_000);
});

describe('failed jobs: visible, and retried by SQL or the CLI', () => {
  const capture = () => {
    let text = '';
    const out = new Writable({ write: (chunk, _enc, done) => ((text += String(chunk)), done()) });
    return { out, text: () => text };
  };

  test('a job that used up its attempts is listed with its error; retry gives it fresh attempts', async () => {
    // A job of a task no worker runs, marked as graphile-worker marks a job after its last attempt.
    const { rows } = await pool('worker').query(`select id from graphile_worker.add_job('atrium_test_unrunnable', json_build_object('organization_id', $1::uuid), max_attempts => 3)`, [orgA]);
    const id = String(rows[0].id);
    await pool('worker').query(`update graphile_worker._private_jobs set attempts = 3, last_error = 'boom: the receiver is down' where id = $1`, [id]);

    const failed = await pool('worker').query('select * from app_private.failed_jobs() where id = $1', [id]);
    expect(failed.rows[0]).toMatchObject({ task: 'atrium_test_unrunnable', organization_id: orgA, attempts: 3, max_attempts: 3, last_error: 'boom: the receiver is down' });
    const depth = await pool('worker').query(`select * from app_private.job_queue_depth() where task = 'atrium_test_unrunnable'`);
    expect(depth.rows[0]).toMatchObject({ failed: '1' });

    const status = capture();
    expect(await runJobsCommand(urlFor('worker'), ['status'], status.out)).toBe(0);
    expect(status.text()).toContain('Queue depth per task');
    expect(status.text()).toMatch(new RegExp(`${id}\\s+atrium_test_unrunnable\\s+${orgA}\\s+3`));
    expect(status.text()).toContain('boom: the receiver is down');

    const retry = capture();
    expect(await runJobsCommand(urlFor('worker'), ['retry', id], retry.out)).toBe(0);
    expect(retry.text()).toContain(`Retrying 1 job(s): ${id}`);
    expect(await job(id)).toMatchObject({ attempts: 0 });
    expect((await pool('worker').query('select 1 from app_private.failed_jobs() where id = $1', [id])).rows).toEqual([]);
    const again = capture();
    expect(await runJobsCommand(urlFor('worker'), ['retry', id], again.out)).toBe(1);
    expect(again.text()).toContain('No failed job matched');
    const usage = capture();
    expect(await runJobsCommand(urlFor('worker'), ['retry', 'x'], usage.out)).toBe(2);
    await pool('worker').query('delete from graphile_worker._private_jobs where id = $1', [id]);
  });

  test('operators only: API visitors cannot list or retry jobs', async () => {
    for (const sql of ['select * from app_private.failed_jobs()', 'select * from app_private.retry_failed_jobs()', 'select * from app_private.job_queue_depth()']) {
      expect({ sql, code: (await pgError(asVisitor(sessionOf(alice, orgA), (c) => c.query(sql)))).code }).toEqual({ sql, code: '42501' });
    }
  });
});

describe('a busy worker keeps the job table vacuumed', () => {
  test('after its threshold of finished jobs it vacuums and analyzes graphile-worker\'s job table; below it, never', async () => {
    const counts = async () => (await pool('worker').query(`select vacuum_count::int, analyze_count::int from pg_stat_user_tables where schemaname = 'graphile_worker' and relname = '_private_jobs'`)).rows[0] as { vacuum_count: number; analyze_count: number };
    const vacuums = async () => (await counts()).vacuum_count;
    const before = await counts();
    const log = testLogger('test-worker');
    const options = { connectionString: urlFor('worker'), concurrency: 2, log, crontab: false } as const;
    const busy = await startWorker({ ...options, queueVacuum: { intervalMs: 50, afterJobs: 30 } });
    const idle = await startWorker({ ...options, queueVacuum: { intervalMs: 50, afterJobs: 1_000_000 } });
    try {
      await asProducer((c) => c.query(`select app_private.enqueue_jobs('echo', $1, array_fill('{}'::jsonb, array[600]))`, [orgB]));
      const deadline = Date.now() + 30_000;
      while (busy.queueVacuums() === 0 && Date.now() < deadline) await sleep(50);
      expect(busy.queueVacuums()).toBeGreaterThanOrEqual(1);
      expect(idle.queueVacuums()).toBe(0);
      // PostgreSQL counted it too, and the statistics were refreshed with it (the planner's view of
      // how many jobs wait decides whether a fetch uses the index: src/worker/queue-vacuum.ts).
      while ((await vacuums()) === before.vacuum_count && Date.now() < deadline) await sleep(50);
      const after = await counts();
      expect(after.vacuum_count).toBeGreaterThan(before.vacuum_count);
      expect(after.analyze_count).toBeGreaterThan(before.analyze_count);
    } finally {
      await Promise.all([busy.stop(), idle.stop()]);
    }
  }, 60_000);
});

describe('makeWorkerUtils', () => {
  test('Node code with the worker role queues jobs with graphile-worker\'s own API', async () => {
    const { makeWorkerUtils } = await import('graphile-worker');
    const utils = await makeWorkerUtils({ connectionString: urlFor('worker') });
    try {
      const added = await utils.addJob('echo', { organization_id: orgA, from: 'node' }, { jobKey: `echo:${orgA}:node-example`, runAt: new Date(Date.now() + 3_600_000) });
      expect(await job(added.id)).toMatchObject({ task: 'echo', payload: { organization_id: orgA, from: 'node' } });
      await pool('worker').query('delete from graphile_worker._private_jobs where id = $1', [added.id]);
    } finally {
      await utils.release();
    }
  });
});
