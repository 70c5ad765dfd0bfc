// Searching and filtering lists. Task titles (sql/functions/search.sql): the API's `filter` finds a
// word inside titles, case-insensitively, in the caller's organization only; the trigram index serves
// it; lists are not ordered by title (no index could order them). Invoices by balance and time
// entries by billable (migrations 000072, 000073): filtered in the API, each read through its index.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import type { Atrium } from '../src/index.ts';
import { gql, startTestApp, tokenFor } from './support/app.ts';
import { closePools, inTransaction, sessionOf } from './support/db.ts';
import { commitAs, twoTenants, type Tenant } from './support/fixtures.ts';

let a: Tenant;
let b: Tenant;
let app: Atrium;
beforeAll(async () => {
  ({ a, b } = await twoTenants());
  for (const [t, titles] of [[a, ['Logo sketches', 'Final LOGO files', 'Brand book']], [b, ['Logo for the other firm']]] as const) {
    await commitAs(sessionOf(t.owner, t.orgId), async (c) => {
      for (const title of titles) await c.query('insert into app_public.tasks (project_id, title) values ($1, $2)', [t.projectId, title]);
    });
  }
  app = await startTestApp();
}, 90_000);
afterAll(async () => {
  await app?.stop();
  await closePools();
});

test('filter: title includesInsensitive finds the word inside titles of the caller\'s organization only', async () => {
  const token = await tokenFor(a.owner, a.orgId);
  const res = await gql<{ tasks: { nodes: Array<{ title: string }> } }>(app.url!, '{ tasks(filter: { title: { includesInsensitive: "logo" } }) { nodes { title } } }', {}, token);
  expect(res.errors).toBeUndefined();
  expect(res.data!.tasks.nodes.map((n) => n.title).sort()).toEqual(['Final LOGO files', 'Logo sketches']);
  const orders = await gql<{ __type: { enumValues: Array<{ name: string }> } }>(app.url!, '{ __type(name: "TaskOrderBy") { enumValues { name } } }', {}, token);
  expect(orders.data!.__type.enumValues.map((v) => v.name).filter((name) => name.startsWith('TITLE'))).toEqual([]);
});

test('the trigram index serves the search', async () => {
  // (A test database is small: sequential scans are ruled out so the planner shows what it would use.)
  const plan = await inTransaction('superuser', {}, async (c) => {
    await c.query('set local enable_seqscan = off');
    return (await c.query(`explain (format json) select id from app_public.tasks where title ilike '%logo%'`)).rows[0]['QUERY PLAN'];
  }, false);
  expect(JSON.stringify(plan)).toContain('tasks_title_trgm_idx');
});

/** The caller's organization's rows matching `where`, read in SQL: what the API must answer. */
const expected = (t: Tenant, table: string, where: string): Promise<string[]> =>
  inTransaction('superuser', {}, async (c) => (await c.query(`select id from app_public.${table} where organization_id = $1 and deleted_at is null and ${where} order by id`, [t.orgId])).rows.map((r) => r.id as string), false);

test('filter: invoices with something left to pay, time entries that are not billable', async () => {
  const token = await tokenFor(a.owner, a.orgId);
  const open = await gql<{ invoices: { nodes: Array<{ rowId: string; balance: string }> } }>(app.url!, '{ invoices(filter: { balance: { greaterThan: "0" } }, orderBy: BALANCE_DESC) { nodes { rowId balance } } }', {}, token);
  expect(open.errors).toBeUndefined();
  const openIds = open.data!.invoices.nodes.map((n) => n.rowId);
  expect([...openIds].sort()).toEqual(await expected(a, 'invoices', 'balance > 0'));
  // The fixture has settled invoices too (paid and credited, written off): the filter leaves them out.
  expect((await expected(a, 'invoices', 'balance = 0')).length).toBeGreaterThan(0);
  expect(openIds.length).toBeGreaterThan(0);
  const balances = open.data!.invoices.nodes.map((n) => Number(n.balance));
  expect(balances).toEqual([...balances].sort((x, y) => y - x));

  const unbillable = await gql<{ timeEntries: { nodes: Array<{ rowId: string; billable: boolean }> } }>(app.url!, '{ timeEntries(filter: { billable: { equalTo: false } }) { nodes { rowId billable } } }', {}, token);
  expect(unbillable.errors).toBeUndefined();
  const ids = unbillable.data!.timeEntries.nodes.map((n) => n.rowId);
  expect(ids.length).toBeGreaterThan(0);
  expect([...ids].sort()).toEqual(await expected(a, 'time_entries', 'not billable'));
  expect((await expected(a, 'time_entries', 'billable')).length).toBeGreaterThan(0);
});

test.each([
  ['invoices', `balance > 0 order by balance desc, id desc limit 21`, 'invoices_organization_id_balance_idx'],
  ['time_entries', `not billable order by billable, work_date, id limit 21`, 'time_entries_organization_id_billable_idx'],
])('the index serves the filter on %s', async (table, rest, index) => {
  const plan = await inTransaction('superuser', {}, async (c) => {
    // (Small tables: scans and sorts are ruled out so the planner shows the index it would use.)
    await c.query('set local enable_seqscan = off');
    await c.query('set local enable_sort = off');
    return (await c.query(`explain (format json) select id from app_public.${table} where organization_id = $1 and ${rest}`, [a.orgId])).rows[0]['QUERY PLAN'];
  }, false);
  expect(JSON.stringify(plan)).toContain(index);
  expect(JSON.stringify(plan)).not.toContain('"Sort"');
});
