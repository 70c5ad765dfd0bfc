// The job worker: it picks up the outbox jobs that changes enqueue, and its tasks see only the
// organization of their job (row-level security applies on the worker's connection too).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { setTimeout as sleep } from 'node:timers/promises';
import { startWorker, type WorkerHandle } from '../src/worker/index.ts';
import { asVisitor, asWorker, closePools, createOrganization, pool, sessionOf, signUp, urlFor, type User } from './support/db.ts';
import { testLogger } from './support/log.ts';

let worker: WorkerHandle;
let alice: User;
let bob: User;
let orgA: string;
let orgB: string;

beforeAll(async () => {
  [alice, bob] = await Promise.all([signUp('worker-a'), signUp('worker-b')]);
  [orgA, orgB] = await Promise.all([createOrganization(alice, 'worker-a'), createOrganization(bob, 'worker-b')]);
  worker = await startWorker({ connectionString: urlFor('worker'), concurrency: 2, log: testLogger('test-worker') });
});
afterAll(async () => {
  await worker?.stop();
  await closePools();
});

async function dispatchOf(orgId: string, txid: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool('owner').query<{ event_count: number }>('select event_count from app_private.activity_dispatches where organization_id = $1 and transaction_id = $2', [orgId, txid]);
    if (rows.length > 0 || Date.now() > deadline) return rows[0];
    await sleep(50);
  }
}

describe('outbox → worker', () => {
  test("a committed change is dispatched by the worker, with its transaction's events counted", async () => {
    const txid = await asVisitor(
      sessionOf(alice, orgA),
      async (c) => {
        await c.query(`insert into app_public.client_companies (name) values ('Dispatched 1'), ('Dispatched 2')`);
        await c.query(`update app_public.client_companies set notes = 'n' where name = 'Dispatched 1'`);
        return (await c.query('select pg_current_xact_id()::text as txid')).rows[0].txid as string;
      },
      { commit: true },
    );
    expect(await dispatchOf(orgA, txid)).toEqual({ event_count: 3 });
    // Done once: the job is gone from the queue (the worker records successes in batches, a few
    // ms after the task's own transaction).
    const queued = async () => (await pool('owner').query(`select 1 from graphile_worker._private_jobs where key = $1`, [`dispatch_activity:${orgA}:${txid}`])).rows;
    const deadline = Date.now() + 5000;
    while ((await queued()).length > 0 && Date.now() < deadline) await sleep(20);
    expect(await queued()).toEqual([]);
  });

  test('a rolled-back change is never dispatched', async () => {
    const txid = await asVisitor(sessionOf(alice, orgA), async (c) => {
      await c.query(`insert into app_public.client_companies (name) values ('Rolled back')`);
      return (await c.query('select pg_current_xact_id()::text as txid')).rows[0].txid as string;
    });
    expect(await dispatchOf(orgA, txid, 1500)).toBeUndefined();
  });
});

describe("the worker's connection is subject to row-level security", () => {
  test('scoped to one organization it sees only that organization', async () => {
    const seen = await asWorker(orgA, async (c) => (await c.query<{ organization_id: string }>('select distinct organization_id from app_public.activity_events')).rows);
    expect(seen).toEqual([{ organization_id: orgA }]);
    const bobs = await asWorker(orgA, async (c) => (await c.query('select count(*)::int as n from app_public.client_companies where organization_id = $1', [orgB])).rows[0].n);
    expect(bobs).toBe(0);
  });

  test('without an organization it sees nothing, and cannot write into another organization', async () => {
    expect(await asWorker(null, async (c) => (await c.query('select count(*)::int as n from app_public.activity_events')).rows[0].n)).toBe(0);
    const error = await asWorker(orgA, (c) =>
      c.query(`insert into app_private.activity_dispatches (organization_id, transaction_id, event_count) values ($1, 1, 0)`, [orgB]),
    ).catch((e: { code: string }) => e);
    expect(error).toMatchObject({ code: '42501' });
  });

  test('the worker role does not bypass row-level security and is not the owner', async () => {
    const { rows } = await pool('owner').query<{ rolbypassrls: boolean; rolsuper: boolean }>('select rolbypassrls, rolsuper from pg_roles where rolname = $1', [process.env.DATABASE_WORKER]);
    expect(rows).toEqual([{ rolbypassrls: false, rolsuper: false }]);
  });
});
