// Daily maintenance (sql/functions/maintenance.sql, src/worker/tasks/daily_maintenance.ts and
// tenant_daily.ts): invoices past due become overdue, proposals past their validity expire —
// per organization, under row-level security, idempotently, and only by the job worker.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { setTimeout as sleep } from 'node:timers/promises';
import { startWorker, type WorkerHandle } from '../src/worker/index.ts';
import { asVisitor, asWorker, closePools, pgError, pool, sessionOf, urlFor } from './support/db.ts';
import { commitAs, one, twoTenants, type Tenant } from './support/fixtures.ts';
import { testLogger } from './support/log.ts';

let a: Tenant;
let b: Tenant;
const later = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
const statusOf = async (table: string, id: string) => (await pool('owner').query(`select status from app_public.${table} where id = $1`, [id])).rows[0].status as string;

beforeAll(async () => {
  ({ a, b } = await twoTenants());
}, 120_000);
afterAll(closePools);

test('past its due date a sent invoice becomes overdue, once, in its own organization only', async () => {
  await asWorker(a.orgId, async (c) => {
    expect((await one<{ n: number }>(c, 'select app_private.mark_overdue_invoices($1) as n', [later(10)])).n).toBe(0); // not due yet
    expect((await one<{ n: number }>(c, 'select app_private.mark_overdue_invoices($1) as n', [later(60)])).n).toBe(1);
    const invoice = await one<{ status: string; overdue_at: Date }>(c, 'select status, overdue_at from app_public.invoices where id = $1', [a.invoiceId]);
    expect(invoice.status).toBe('overdue');
    expect(invoice.overdue_at).toBeInstanceOf(Date);
    expect((await one<{ n: number }>(c, 'select app_private.mark_overdue_invoices($1) as n', [later(60)])).n).toBe(0);
    expect((await one<{ status: string }>(c, 'select status from app_public.invoices where id = $1', [b.invoiceId])) ?? null).toBeNull(); // b's rows are invisible here
  });
  expect(await statusOf('invoices', b.invoiceId)).toBe('sent');
});

test('past its validity a sent proposal expires', async () => {
  const proposal = await commitAs(sessionOf(a.owner, a.orgId), async (c) => {
    const p = await one<{ id: string }>(c, `insert into app_public.proposals (client_company_id, title, valid_until) values ($1, 'Short offer', $2) returning id`, [a.clientId, later(5)]);
    await c.query(`insert into app_public.proposal_line_items (proposal_id, description, unit_price) values ($1, 'Work', 10)`, [p.id]);
    await c.query('select app_public.send_proposal($1)', [p.id]);
    return p.id;
  });
  await asWorker(a.orgId, async (c) => {
    expect((await one<{ n: number }>(c, 'select app_private.expire_proposals($1) as n', [later(6)])).n).toBe(1);
    expect((await one<{ status: string }>(c, 'select status from app_public.proposals where id = $1', [proposal])).status).toBe('expired');
  });
});

test('only the worker, inside an organization, runs maintenance', async () => {
  expect((await pgError(asVisitor(sessionOf(a.owner, a.orgId), (c) => c.query('select app_private.mark_overdue_invoices($1)', [later(60)])))).code).toBe('42501');
  expect((await pgError(asWorker(null, (c) => c.query('select app_private.mark_overdue_invoices($1)', [later(60)])))).code).toBe('AT402');
});

test('the daily fan-out enqueues one job per organization and day, however often it runs', async () => {
  await asWorker(null, async (c) => {
    const orgs = (await one<{ n: number }>(c, 'select count(*)::int as n from app_public.organizations')).n; // the worker sees none without an organization
    expect(orgs).toBe(0);
    // Other test files create organizations meanwhile, so compare with the second run's count.
    await c.query(`select app_private.enqueue_daily_maintenance('2031-01-01')`);
    const second = (await one<{ n: number }>(c, `select app_private.enqueue_daily_maintenance('2031-01-01') as n`)).n;
    const jobs = await one<{ n: number; keys: number }>(c, `select count(*)::int as n, count(distinct key)::int as keys from graphile_worker.jobs where key like 'tenant_daily:%:2031-01-01'`);
    expect(second).toBeGreaterThanOrEqual(2);
    expect(jobs).toEqual({ n: second, keys: second });
  });
});

test('the worker runs a tenant_daily job: the organization\'s overdue invoices change, no other\'s', async () => {
  const worker: WorkerHandle = await startWorker({ connectionString: urlFor('worker'), concurrency: 2, log: testLogger('test-worker') });
  try {
    await pool('worker').query(`select graphile_worker.add_job('tenant_daily', json_build_object('organization_id', $1::uuid, 'day', $2::text))`, [b.orgId, later(60)]);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && (await statusOf('invoices', b.invoiceId)) !== 'overdue') await sleep(200);
    expect(await statusOf('invoices', b.invoiceId)).toBe('overdue');
    expect(await statusOf('invoices', a.invoiceId)).toBe('sent');
  } finally {
    await worker.stop();
  }
}, 60_000);
