// Retention (sql/functions/retention.sql, src/worker/tasks/retention_purge.ts and
// tenant_retention_purge.ts): soft-deleted rows past their organization's retention window are
// deleted for good — children first, parts with their record, nothing a live row references —
// and one summary event says what went; rows inside the window stay restorable; one organization's
// job touches no other organization; only the job worker purges.
import { afterAll, describe, expect, test } from '@jest/globals';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { startWorker } from '../src/worker/index.ts';
import { addMember, asVisitor, asWorker, closePools, pgError, pool, sessionOf, unique, urlFor } from './support/db.ts';
import { commitAs, one } from './support/fixtures.ts';
import { asWorkerCommitted, smallOrg, type SmallOrg } from './support/jobs.ts';
import { testLogger } from './support/log.ts';

afterAll(closePools);

interface Summary {
  retention_days: number;
  deleted_before: string;
  purged: Record<string, number>;
  kept: Record<string, number>;
}

const purge = async (c: pg.PoolClient) => (await one<{ s: Summary }>(c, 'select app_private.purge_deleted_records() as s')).s;

/** Pretends the row was soft-deleted `days` ago (as the owner role, which bypasses RLS). */
async function deletedDaysAgo(table: string, id: string, days: number): Promise<void> {
  const { rowCount } = await pool('owner').query(`update app_public.${table} set deleted_at = now() - make_interval(days => $2) where id = $1 and deleted_at is not null`, [id, days]);
  expect(rowCount).toBe(1);
}

const exists = async (table: string, id: string) => (await pool('owner').query(`select 1 from app_public.${table} where id = $1`, [id])).rowCount === 1;

/** A client company of `org`, soft-deleted through the API `days` ago. */
async function deletedClient(org: SmallOrg, days: number): Promise<string> {
  const id = await commitAs(org.own, async (c) => {
    const client = await one<{ id: string }>(c, 'insert into app_public.client_companies (name) values ($1) returning id', [unique('Gone')]);
    await c.query('select app_public.soft_delete_client_company($1)', [client.id]);
    return client.id;
  });
  await deletedDaysAgo('client_companies', id, days);
  return id;
}

describe('the window', () => {
  test('rows deleted longer ago than the window are purged, rows inside it stay restorable, and one summary event records it', async () => {
    const org = await smallOrg('purge');
    const member = await addMember(org.orgId, org.owner, 'member', 'purge-member');
    const longAgo = await deletedClient(org, 40);
    const justPast = await deletedClient(org, 31);
    const recent = await deletedClient(org, 29);

    const summary = await asWorkerCommitted(org.orgId, purge);
    expect(summary).toMatchObject({ retention_days: 30, purged: { client_companies: 2 }, kept: {} });
    expect([await exists('client_companies', longAgo), await exists('client_companies', justPast), await exists('client_companies', recent)]).toEqual([false, false, true]);
    await commitAs(org.own, (c) => c.query('select app_public.restore_client_company($1)', [recent]));

    // One summary event, in the purge's transaction, next to each purged row's delete event.
    const { rows: summaries } = await pool('owner').query(
      `select table_name, record_id, actor_id, transaction_id, new_values from app_public.activity_events where organization_id = $1 and action = 'purge'`,
      [org.orgId],
    );
    expect(summaries).toMatchObject([{ table_name: 'deleted_records', record_id: org.orgId, actor_id: null, new_values: { retention_days: 30, purged: { client_companies: 2 }, kept: {} } }]);
    const { rows: deletes } = await pool('owner').query(
      `select record_id from app_public.activity_events where organization_id = $1 and transaction_id = $2 and action = 'delete' and table_name = 'client_companies' order by record_id`,
      [org.orgId, summaries[0].transaction_id],
    );
    expect(deletes.map((r) => r.record_id)).toEqual([longAgo, justPast].sort());

    // Admins and owners read the summary; members do not.
    const purgeEventsSeenBy = (session: ReturnType<typeof sessionOf>) =>
      asVisitor(session, async (c) => (await one<{ n: number }>(c, `select count(*)::int as n from app_public.activity_events where action = 'purge'`)).n);
    expect(await purgeEventsSeenBy(org.own)).toBe(1);
    expect(await purgeEventsSeenBy(sessionOf(member, org.orgId))).toBe(0);

    // Nothing more to purge: no second summary.
    expect(await asWorkerCommitted(org.orgId, purge)).toMatchObject({ purged: {}, kept: {} });
    expect((await pool('owner').query(`select 1 from app_public.activity_events where organization_id = $1 and action = 'purge'`, [org.orgId])).rowCount).toBe(1);
  });

  test("each organization's own retention_days is honoured, and a purge touches no other organization", async () => {
    const [short, normal] = await Promise.all([smallOrg('window-7'), smallOrg('window-30')]);
    await commitAs(short.own, (c) => c.query('update app_public.organizations set retention_days = 7 where id = $1', [short.orgId]));
    const shortTen = await deletedClient(short, 10);
    const normalTen = await deletedClient(normal, 10);
    const normalForty = await deletedClient(normal, 40);

    expect(await asWorkerCommitted(short.orgId, purge)).toMatchObject({ retention_days: 7, purged: { client_companies: 1 } });
    expect(await exists('client_companies', shortTen)).toBe(false);
    expect([await exists('client_companies', normalTen), await exists('client_companies', normalForty)]).toEqual([true, true]);

    expect(await asWorkerCommitted(normal.orgId, purge)).toMatchObject({ retention_days: 30, purged: { client_companies: 1 } });
    expect([await exists('client_companies', normalTen), await exists('client_companies', normalForty)]).toEqual([true, false]);
  });
});

describe('foreign keys', () => {
  test('children go first, parts go with their record, and a deleted record that live rows still reference is kept', async () => {
    const org = await smallOrg('fk');
    const ids = await commitAs(org.own, async (c) => {
      const id = async (sql: string, params: unknown[] = []) => (await one<{ id: string }>(c, sql, params)).id;
      // A client and its contact, both deleted: the contact first, then the client.
      const client = await id('insert into app_public.client_companies (name) values ($1) returning id', [unique('Former')]);
      const contact = await id(`insert into app_public.contacts (client_company_id, first_name, last_name) values ($1, 'Former', 'Contact') returning id`, [client]);
      // A deleted client whose contact is live: kept.
      const keptClient = await id('insert into app_public.client_companies (name) values ($1) returning id', [unique('Half gone')]);
      const liveContact = await id(`insert into app_public.contacts (client_company_id, first_name, last_name) values ($1, 'Still', 'Here') returning id`, [keptClient]);
      // The sold client's contact with portal access: the access goes with the contact.
      await c.query('select app_public.grant_portal_access($1, $2)', [org.contactId, org.engagementId]);
      // A draft invoice: its line goes with it.
      const invoice = await id('insert into app_public.invoices (client_company_id, engagement_id) values ($1, $2) returning id', [org.clientId, org.engagementId]);
      await c.query(`insert into app_public.invoice_line_items (invoice_id, description, unit_price) values ($1, 'Hosting', 49)`, [invoice]);
      // A thread and its message, both deleted.
      const thread = await id(`insert into app_public.threads (engagement_id, subject) values ($1, 'Old news') returning id`, [org.engagementId]);
      const message = await id(`insert into app_public.messages (thread_id, body) values ($1, 'Obsolete') returning id`, [thread]);
      // A deleted project whose milestone a live schedule bills: purging it would reach the milestone.
      const project = await id(`insert into app_public.projects (engagement_id, name) values ($1, 'Paused') returning id`, [org.engagementId]);
      const milestone = await id(`insert into app_public.milestones (project_id, name) values ($1, 'Launch') returning id`, [project]);
      const schedule = await id(
        `insert into app_public.invoice_schedules (engagement_id, kind, description, amount, milestone_id) values ($1, 'milestone', 'Launch fee', 900, $2) returning id`,
        [org.engagementId, milestone],
      );
      for (const [fn, target] of [
        ['soft_delete_contact', contact], ['soft_delete_client_company', client], ['soft_delete_client_company', keptClient],
        ['soft_delete_contact', org.contactId], ['soft_delete_invoice', invoice], ['soft_delete_message', message],
        ['soft_delete_thread', thread], ['soft_delete_project', project],
      ]) {
        await c.query(`select app_public.${fn}($1)`, [target]);
      }
      return { client, contact, keptClient, liveContact, invoice, thread, message, project, milestone, schedule };
    });
    for (const [table, id] of [
      ['client_companies', ids.client], ['contacts', ids.contact], ['client_companies', ids.keptClient], ['contacts', org.contactId],
      ['invoices', ids.invoice], ['threads', ids.thread], ['messages', ids.message], ['projects', ids.project],
    ] as const) {
      await deletedDaysAgo(table, id, 40);
    }

    const summary = await asWorkerCommitted(org.orgId, purge);
    expect(summary.purged).toEqual({ client_companies: 1, contacts: 2, invoices: 1, messages: 1, threads: 1 });
    expect(summary.kept).toEqual({ client_companies: 1, projects: 1 });

    expect([await exists('client_companies', ids.client), await exists('contacts', ids.contact), await exists('invoices', ids.invoice), await exists('threads', ids.thread), await exists('messages', ids.message)])
      .toEqual([false, false, false, false, false]);
    const parts = await pool('owner').query(
      `select (select count(*)::int from app_public.invoice_line_items where invoice_id = $1) as lines,
              (select count(*)::int from app_public.client_portal_access where contact_id = $2) as access`,
      [ids.invoice, org.contactId],
    );
    expect(parts.rows[0]).toEqual({ lines: 0, access: 0 });
    // Kept, and everything live untouched.
    for (const [table, id] of [
      ['client_companies', ids.keptClient], ['contacts', ids.liveContact], ['projects', ids.project], ['milestones', ids.milestone], ['invoice_schedules', ids.schedule],
    ] as const) {
      expect({ table, kept: await exists(table, id) }).toEqual({ table, kept: true });
    }
  });
});

describe('who and where', () => {
  test('only the worker, inside an organization, purges or fans out; nobody writes summary events directly', async () => {
    const org = await smallOrg('who');
    for (const sql of [
      'select app_private.purge_deleted_records()',
      `select app_private.enqueue_retention_purge('2031-01-01')`,
      `select app_private.record_activity('purge', 'deleted_records', gen_random_uuid(), '{}')`,
    ]) {
      expect({ sql, code: (await pgError(asVisitor(org.own, (c) => c.query(sql)))).code }).toEqual({ sql, code: '42501' });
    }
    expect((await pgError(asWorker(org.orgId, (c) => c.query(`select app_private.record_activity('purge', 'deleted_records', gen_random_uuid(), '{}')`))))).toMatchObject({ code: '42501' });
    expect((await pgError(asWorker(null, (c) => c.query('select app_private.purge_deleted_records()'))))).toMatchObject({ code: 'AT402' });
  });

  test('the fan-out enqueues one job per organization with rows past its window, once per day', async () => {
    const [expired, fresh] = await Promise.all([smallOrg('fan-expired'), smallOrg('fan-fresh')]);
    await deletedClient(expired, 31);
    await deletedClient(fresh, 29);
    await asWorker(null, async (c) => {
      await c.query(`select app_private.enqueue_retention_purge('2031-01-01')`);
      const second = (await one<{ n: number }>(c, `select app_private.enqueue_retention_purge('2031-01-01') as n`)).n;
      const jobs = await one<{ n: number; keys: number }>(c, `select count(*)::int as n, count(distinct key)::int as keys from graphile_worker.jobs where key like 'tenant_retention_purge:%:2031-01-01'`);
      expect(jobs).toEqual({ n: second, keys: second });
      const mine = await c.query(`select key, payload from graphile_worker._private_jobs where key = any ($1)`, [[`tenant_retention_purge:${expired.orgId}:2031-01-01`, `tenant_retention_purge:${fresh.orgId}:2031-01-01`]]);
      expect(mine.rows).toEqual([{ key: `tenant_retention_purge:${expired.orgId}:2031-01-01`, payload: { organization_id: expired.orgId, day: '2031-01-01' } }]);
    });
  });

  test('the worker runs a tenant_retention_purge job', async () => {
    const org = await smallOrg('purge-job');
    const gone = await deletedClient(org, 45);
    const worker = await startWorker({ connectionString: urlFor('worker'), concurrency: 2, log: testLogger('test-worker') });
    try {
      await pool('worker').query(`select graphile_worker.add_job('tenant_retention_purge', json_build_object('organization_id', $1::uuid, 'day', '2031-01-01'))`, [org.orgId]);
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && (await exists('client_companies', gone))) await sleep(200);
      expect(await exists('client_companies', gone)).toBe(false);
    } finally {
      await worker.stop();
    }
  }, 60_000);
});
