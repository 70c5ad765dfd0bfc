// Time travel over the activity log (sql/functions/time_travel.sql) and what the log keeps of
// personal data (sql/functions/personal_data.sql): every version of a record in commit order with
// who changed which columns, the record as it was at a moment, the organization's changes between
// two moments; the same read rules as the live tables; masked columns never reach the log.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { asVisitor, closePools, pgError, pool, sessionOf, type Session } from './support/db.ts';
import { commitAs, one, twoTenants, type Tenant } from './support/fixtures.ts';
import { gql, startTestApp, tokenFor } from './support/app.ts';
import type { Atrium } from '../src/index.ts';

let a: Tenant;
let b: Tenant;
let app: Atrium;

beforeAll(async () => {
  ({ a, b } = await twoTenants());
  app = await startTestApp();
});
afterAll(async () => {
  await app?.stop();
  await closePools();
});

interface Event {
  seq: string | null;
  action: string;
  table_name: string;
  record_id: string;
  actor_id: string | null;
  parent_table: string | null;
  parent_id: string | null;
  changed_columns: string[] | null;
  old_values: Record<string, unknown> | null;
  new_values: Record<string, unknown> | null;
  changes: Record<string, { old: unknown; new: unknown }>;
  actor_name: string | null;
}

const history = (session: Session, table: string, id: string, withParts = true) =>
  asVisitor(session, async (c) =>
    (await c.query<Event>(
      `select e.*, app_public.activity_events_changes(e) as changes, app_public.activity_events_actor_name(e) as actor_name
       from app_public.record_history($1, $2, $3) e`,
      [table, id, withParts],
    )).rows);
const asOf = (session: Session, table: string, id: string, at: string) =>
  asVisitor(session, async (c) => (await c.query<{ r: Record<string, unknown> | null }>('select app_public.record_as_of($1, $2, $3) as r', [table, id, at])).rows[0].r);
const now = async () => (await pool('owner').query<{ t: string }>('select clock_timestamp()::text as t')).rows[0].t;

describe('history', () => {
  test('every version of a record, oldest first, with the changed columns, old and new values and the member who changed it', async () => {
    const own = sessionOf(a.owner, a.orgId);
    const id = (await commitAs(own, (c) => one<{ id: string }>(c, `insert into app_public.client_companies (name) values ('Globex') returning id`))).id;
    await commitAs(sessionOf(a.admin, a.orgId), (c) => c.query(`update app_public.client_companies set website = 'https://globex.example' where id = $1`, [id]));
    await commitAs(own, (c) => c.query(`update app_public.client_companies set name = 'Globex Corp', website = null where id = $1`, [id]));

    const events = await history(own, 'client_companies', id);
    expect(events.map((e) => e.action)).toEqual(['insert', 'update', 'update']);
    expect(events.map((e) => Number(e.seq))).toEqual([...events.map((e) => Number(e.seq))].sort((x, y) => x - y));
    expect(events[0].changes.name).toEqual({ old: null, new: 'Globex' });
    expect(events[0].changed_columns).toBeNull();
    expect(events[1].changed_columns).toEqual(['website']);
    expect(events[1].changes).toEqual({ website: { old: null, new: 'https://globex.example' } });
    expect(events[2].changed_columns).toEqual(['name', 'website']);
    expect(events[2].changes).toEqual({ name: { old: 'Globex', new: 'Globex Corp' }, website: { old: 'https://globex.example', new: null } });
    const names = (await pool('owner').query<{ id: string; name: string }>('select id, name from app_public.users where id = any($1)', [[a.owner.userId, a.admin.userId]])).rows;
    const nameOf = (userId: string) => names.find((n) => n.id === userId)!.name;
    expect(events.map((e) => e.actor_name)).toEqual([nameOf(a.owner.userId), nameOf(a.admin.userId), nameOf(a.owner.userId)]);
  });

  test('the events of one transaction keep the order they were written in', async () => {
    const own = sessionOf(a.owner, a.orgId);
    const id = await commitAs(own, async (c) => {
      const row = await one<{ id: string }>(c, `insert into app_public.client_companies (name) values ('Step 0') returning id`);
      for (let step = 1; step <= 5; step++) await c.query('update app_public.client_companies set name = $2 where id = $1', [row.id, `Step ${step}`]);
      return row.id;
    });
    const events = await history(own, 'client_companies', id);
    expect(events.map((e) => (e.new_values as { name: string }).name)).toEqual(['Step 0', 'Step 1', 'Step 2', 'Step 3', 'Step 4', 'Step 5']);
  });

  test('an invoice\'s history includes its line items and payments (they name it as their parent), or not, as asked', async () => {
    const own = sessionOf(a.owner, a.orgId);
    const events = await history(own, 'invoices', a.invoiceId);
    const tables = new Set(events.map((e) => e.table_name));
    expect(tables).toEqual(new Set(['invoices', 'invoice_line_items', 'payments']));
    for (const e of events.filter((x) => x.table_name !== 'invoices')) expect(e).toMatchObject({ parent_table: 'invoices', parent_id: a.invoiceId });
    const own_only = await history(own, 'invoices', a.invoiceId, false);
    expect(new Set(own_only.map((e) => e.table_name))).toEqual(new Set(['invoices']));
    const statuses = own_only.filter((e) => e.changed_columns?.includes('status')).map((e) => e.changes.status);
    expect(statuses).toContainEqual({ old: 'draft', new: 'sent' });
  });

  test('a task names its project', async () => {
    const events = await history(sessionOf(a.owner, a.orgId), 'projects', a.projectId);
    expect(events.some((e) => e.table_name === 'tasks' && e.record_id === a.taskId && e.parent_id === a.projectId)).toBe(true);
  });

  test('a table without a history is refused (INVALID_VALUE), not answered with an empty list', async () => {
    const error = await pgError(history(sessionOf(a.owner, a.orgId), 'invoice', a.invoiceId));
    expect(error.message).toMatch(/not a table with a history/);
    const { rows } = await pool('owner').query('select code from app_private.error_codes where sqlstate = $1', [error.code]);
    expect(rows[0]?.code).toBe('INVALID_VALUE');
  });
});

describe('the same read rules as the live tables', () => {
  test('a billing clerk (invoices and clients only) reads an invoice\'s history but not a deal\'s or a project\'s', async () => {
    const clerk = sessionOf(a.clerk, a.orgId);
    expect((await history(clerk, 'invoices', a.invoiceId)).length).toBeGreaterThan(0);
    const dealId = (await pool('owner').query<{ id: string }>('select id from app_public.deals where organization_id = $1 limit 1', [a.orgId])).rows[0].id;
    expect(await history(sessionOf(a.owner, a.orgId), 'deals', dealId)).not.toEqual([]);
    expect(await history(clerk, 'deals', dealId)).toEqual([]);
    expect(await history(clerk, 'projects', a.projectId)).toEqual([]);
    expect(await asOf(clerk, 'deals', dealId, await now())).toBeNull();
  });

  test('another organization\'s record has no history and no past for you', async () => {
    const them = sessionOf(b.owner, b.orgId);
    expect(await history(them, 'invoices', a.invoiceId)).toEqual([]);
    expect(await asOf(them, 'invoices', a.invoiceId, await now())).toBeNull();
    const feed = await asVisitor(them, async (c) => (await c.query(`select distinct organization_id from app_public.activity_between(now() - interval '1 day', now() + interval '1 day')`)).rows);
    expect(feed).toEqual([{ organization_id: b.orgId }]);
  });
});

describe('as of a moment', () => {
  test('the record as it was before, between and after its changes; null before it existed and after it was deleted for good', async () => {
    const own = sessionOf(a.owner, a.orgId);
    const before = await now();
    const { id } = await commitAs(own, (c) => one<{ id: string }>(c, `insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Design', 1, 100) returning id`, [a.draftInvoiceId]));
    const created = await now();
    await commitAs(own, (c) => c.query('update app_public.invoice_line_items set quantity = 3 where id = $1', [id]));
    const changed = await now();
    await commitAs(own, (c) => c.query('delete from app_public.invoice_line_items where id = $1', [id]));
    const deleted = await now();

    expect(await asOf(own, 'invoice_line_items', id, before)).toBeNull();
    expect(await asOf(own, 'invoice_line_items', id, created)).toMatchObject({ id, description: 'Design', quantity: 1 });
    expect(await asOf(own, 'invoice_line_items', id, changed)).toMatchObject({ id, quantity: 3, amount: 300 });
    expect(await asOf(own, 'invoice_line_items', id, deleted)).toBeNull();
  });

  test('a soft-deleted record comes with its deletedAt', async () => {
    const own = sessionOf(a.owner, a.orgId);
    const id = (await commitAs(own, (c) => one<{ id: string }>(c, `insert into app_public.client_companies (name) values ('Soon deleted') returning id`))).id;
    await commitAs(own, (c) => c.query('select app_public.soft_delete_client_company($1)', [id]));
    expect((await asOf(own, 'client_companies', id, await now()))?.deleted_at).not.toBeNull();
  });
});

describe('between two moments', () => {
  test('the organization\'s changes in the window, oldest first, and none outside it', async () => {
    const own = sessionOf(a.owner, a.orgId);
    await commitAs(own, (c) => c.query(`insert into app_public.client_companies (name) values ('Before the window')`));
    const since = await now();
    const id = (await commitAs(own, (c) => one<{ id: string }>(c, `insert into app_public.client_companies (name) values ('In the window') returning id`))).id;
    await commitAs(own, (c) => c.query(`update app_public.client_companies set website = 'https://in.example' where id = $1`, [id]));
    const until = await now();
    await commitAs(own, (c) => c.query(`insert into app_public.client_companies (name) values ('After the window')`));
    const events = await asVisitor(own, async (c) => (await c.query<Event>('select * from app_public.activity_between($1, $2)', [since, until])).rows);
    expect(events.map((e) => [e.action, e.record_id])).toEqual([['insert', id], ['update', id]]);
  });
});

describe('a page of the timeline', () => {
  // A bulk transaction writes thousands of events at one instant (its occurred_at): a page of the
  // window or of the newest events must come from the time index in the timeline's order
  // (occurred_at, seq), not from sorting all the events of that instant. With sorts disabled the
  // planner sorts only when no index gives the order.
  test('is read in the timeline\'s order from the time index, both ways: the events of one instant are not sorted', async () => {
    const plans = await asVisitor(sessionOf(a.owner, a.orgId), async (c) => {
      await c.query(`insert into app_public.client_companies (name) select 'Bulk ' || g from generate_series(1, 50) g`);
      await c.query('set local enable_sort = off');
      await c.query('set local enable_incremental_sort = off');
      const plan = async (sql: string) => JSON.stringify((await c.query(`explain (format json) ${sql}`)).rows[0]['QUERY PLAN']);
      return [
        await plan(`select * from app_public.activity_between(now() - interval '1 hour', now() + interval '1 hour') limit 10`),
        await plan('select * from app_public.activity_events order by occurred_at desc, seq desc limit 10'),
      ];
    });
    for (const p of plans) {
      expect(p).not.toMatch(/"Node Type": "(Incremental )?Sort"/);
      expect(p).toMatch(/occurred_at_seq_idx/);
    }
  });
});

describe('personal data in the log follows its classification', () => {
  test('masked columns (notes, message bodies) are "[masked]" in the log, and the change to them is still named', async () => {
    const own = sessionOf(a.owner, a.orgId);
    const id = (await commitAs(own, (c) => one<{ id: string }>(c, `insert into app_public.client_companies (name, notes) values ('Hooli', 'CEO prefers calls after 6pm on her private line')  returning id`))).id;
    await commitAs(own, (c) => c.query(`update app_public.client_companies set notes = 'Call the office' where id = $1`, [id]));
    await commitAs(own, (c) => c.query(`update app_public.client_companies set notes = null where id = $1`, [id]));
    const events = await history(own, 'client_companies', id);
    expect(events[0].new_values?.notes).toBe('[masked]');
    expect(events[1].changed_columns).toEqual(['notes']);
    expect(events[1].changes).toEqual({ notes: { old: '[masked]', new: '[masked]' } });
    expect(events[2].changes).toEqual({ notes: { old: '[masked]', new: null } });
    const message = (await commitAs(own, (c) => one<{ id: string }>(c, `insert into app_public.messages (thread_id, body) values ($1, 'my home address is 1 Elm St') returning id`, [a.internalThreadId]))).id;
    const logged = await pool('owner').query(`select 1 from app_public.activity_events where organization_id = $1 and (new_values::text like '%Elm St%' or old_values::text like '%Elm St%' or new_values::text like '%private line%')`, [a.orgId]);
    expect(logged.rows).toEqual([]);
    expect((await history(own, 'messages', message))[0].new_values?.body).toBe('[masked]');
  });

  test('kept columns (a contact\'s name and email) are in the log as they were', async () => {
    const own = sessionOf(a.owner, a.orgId);
    const events = await history(own, 'contacts', a.contactId);
    const email = (await pool('owner').query<{ email: string }>('select email from app_public.contacts where id = $1', [a.contactId])).rows[0].email;
    expect(events[0].new_values?.email).toBe(email);
    expect(events[0]).toMatchObject({ parent_table: 'client_companies', parent_id: a.clientId });
  });
});

describe('through the API', () => {
  test('recordHistory, recordAsOf and activityBetween answer a frontend\'s timeline', async () => {
    const token = await tokenFor(a.owner, a.orgId);
    const response = await gql(app.url!, `query ($id: UUID!, $at: Datetime!) {
      recordHistory(tableName: "invoices", recordId: $id, first: 50) { nodes { action tableName parentTable parentId changedColumns changes actorName seq } }
      recordAsOf(tableName: "invoices", recordId: $id, at: $at)
    }`, { id: a.invoiceId, at: new Date().toISOString() }, token);
    expect(response.errors).toBeUndefined();
    const nodes = response.data!.recordHistory.nodes as Array<Record<string, unknown>>;
    expect(nodes.length).toBeGreaterThan(2);
    expect(nodes[0]).toMatchObject({ action: 'insert', tableName: 'invoices' });
    expect(nodes.some((n) => n.tableName === 'payments' && n.parentId === a.invoiceId)).toBe(true);
    expect(nodes.find((n) => (n.changedColumns as string[] | null)?.includes('status'))?.changes).toMatchObject({ status: { old: 'draft', new: 'sent' } });
    expect(response.data!.recordAsOf).toMatchObject({ id: a.invoiceId, status: expect.any(String) });

    const clerkToken = await tokenFor(a.clerk, a.orgId);
    const projects = await gql(app.url!, `query ($id: UUID!) { recordHistory(tableName: "projects", recordId: $id) { totalCount } }`, { id: a.projectId }, clerkToken);
    expect(projects.data?.recordHistory.totalCount).toBe(0);
    const wrong = await gql(app.url!, `query ($id: UUID!) { recordHistory(tableName: "nope", recordId: $id) { totalCount } }`, { id: a.projectId }, token);
    expect(wrong.errors?.[0].extensions?.code).toBe('INVALID_VALUE');
  });
});
