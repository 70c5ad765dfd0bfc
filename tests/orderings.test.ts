// Lists in order of creation: every tenant table's list offers `orderBy: CREATED_AT_ASC` and
// `CREATED_AT_DESC` (migrations 000075-000124), and each is read from an index that matches the
// order PostGraphile asks for exactly — created_at, then the primary key it adds as tie-break — so
// a page costs the page, not a sort of the organization's rows. The lists' usual orders by date
// or name have such an index too (migrations 000125-000143).
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import type { Atrium } from '../src/index.ts';
import { gql, startTestApp, tokenFor } from './support/app.ts';
import { closePools, inTransaction, sessionOf } from './support/db.ts';
import { commitAs, twoTenants, type Tenant } from './support/fixtures.ts';

let a: Tenant;
let app: Atrium;
let tables: string[];
beforeAll(async () => {
  ({ a } = await twoTenants());
  // Three tasks created one after another (each in its own transaction: its own created_at).
  for (const title of ['First', 'Second', 'Third']) {
    await commitAs(sessionOf(a.owner, a.orgId), (c) => c.query('insert into app_public.tasks (project_id, title) values ($1, $2)', [a.projectId, `Ordering ${title}`]));
  }
  tables = await inTransaction('superuser', {}, async (c) => (await c.query<{ name: string }>(
    `select c.relname as name from pg_class c
     where c.relnamespace = 'app_public'::regnamespace and c.relkind = 'r'
       and exists (select from pg_attribute x where x.attrelid = c.oid and x.attname = 'organization_id' and not x.attisdropped)
       and exists (select from pg_attribute x where x.attrelid = c.oid and x.attname = 'created_at' and not x.attisdropped)
     order by 1`)).rows.map((r) => r.name), false);
  app = await startTestApp();
}, 90_000);
afterAll(async () => {
  await app?.stop();
  await closePools();
});

test('every tenant table\'s list can be ordered by creation, both ways', async () => {
  expect(tables.length).toBeGreaterThanOrEqual(48);
  const token = await tokenFor(a.owner, a.orgId);
  const res = await gql<{ __schema: { types: Array<{ name: string; enumValues: Array<{ name: string }> | null }> } }>(app.url!, '{ __schema { types { name enumValues { name } } } }', {}, token);
  expect(res.errors).toBeUndefined();
  const orderEnums = res.data!.__schema.types.filter((t) => t.name.endsWith('OrderBy') && t.enumValues);
  const withCreatedAt = orderEnums.filter((t) => ['CREATED_AT_ASC', 'CREATED_AT_DESC'].every((v) => t.enumValues!.some((e) => e.name === v)));
  // One list type per tenant table with created_at (the others: users, organizations, permissions and the activity log).
  expect(withCreatedAt.length).toBeGreaterThanOrEqual(tables.length);
  expect(orderEnums.filter((t) => !withCreatedAt.includes(t)).map((t) => t.name).sort()).toEqual(['ActivityEventOrderBy', 'OrganizationOrderBy', 'PermissionOrderBy', 'UserOrderBy']);

  const newest = await gql<{ tasks: { nodes: Array<{ title: string; createdAt: string }> } }>(app.url!, '{ tasks(orderBy: CREATED_AT_DESC, first: 3, filter: { title: { startsWith: "Ordering " } }) { nodes { title createdAt } } }', {}, token);
  expect(newest.errors).toBeUndefined();
  expect(newest.data!.tasks.nodes.map((n) => n.title)).toEqual(['Ordering Third', 'Ordering Second', 'Ordering First']);
});

test('each order of creation is read from its index, without a sort', async () => {
  const sorted: string[] = [];
  await inTransaction('superuser', {}, async (c) => {
    // (A test database is small: scans and sorts are ruled out so the planner shows what it would use.)
    await c.query('set local enable_seqscan = off');
    await c.query('set local enable_sort = off');
    for (const table of tables) {
      for (const dir of ['asc', 'desc']) {
        // The order PostGraphile asks for: the column, then the primary key; the organization is
        // fixed by the policy (a parameter, as here).
        const { rows } = await c.query(`explain (format json) select id from app_public.${table} where organization_id = (select $1::uuid) order by created_at ${dir}, organization_id ${dir}, id ${dir} limit 21`, [a.orgId]);
        const plan = JSON.stringify(rows[0]['QUERY PLAN']);
        if (plan.includes('"Sort"') || !plan.includes(`${table}_organization_id_created_at_id_idx`)) sorted.push(`${table} ${dir}`);
      }
    }
  }, false);
  expect(sorted).toEqual([]);
});

// The usual orders of the busiest lists: by date or by name, each read from its own index.
const USUAL_ORDERS: Array<[string, string, string]> = [
  ['tasks', 'due_on', 'TaskOrderBy'],
  ['projects', 'due_on', 'ProjectOrderBy'],
  ['milestones', 'due_on', 'MilestoneOrderBy'],
  ['deals', 'expected_close_on', 'DealOrderBy'],
  ['invoices', 'issued_on', 'InvoiceOrderBy'],
  ['invoices', 'balance', 'InvoiceOrderBy'],
  ['payments', 'received_on', 'PaymentOrderBy'],
  ['expenses', 'incurred_on', 'ExpenseOrderBy'],
  ['time_entries', 'work_date', 'TimeEntryOrderBy'],
  ['client_companies', 'name', 'ClientCompanyOrderBy'],
  ['vendors', 'name', 'VendorOrderBy'],
  ['project_templates', 'name', 'ProjectTemplateOrderBy'],
];

test('the usual orders by date or name are offered and read from an index, without a sort', async () => {
  const token = await tokenFor(a.owner, a.orgId);
  const missing: string[] = [];
  for (const [, column, type] of USUAL_ORDERS) {
    const res = await gql<{ __type: { enumValues: Array<{ name: string }> } }>(app.url!, `{ __type(name: "${type}") { enumValues { name } } }`, {}, token);
    const value = `${column.toUpperCase()}_DESC`;
    if (!res.data?.__type?.enumValues.some((v) => v.name === value)) missing.push(`${type}.${value}`);
  }
  expect(missing).toEqual([]);
  const sorted: string[] = [];
  await inTransaction('superuser', {}, async (c) => {
    await c.query('set local enable_seqscan = off');
    await c.query('set local enable_sort = off');
    for (const [table, column] of USUAL_ORDERS) {
      const { rows } = await c.query(`explain (format json) select id from app_public.${table} where organization_id = (select $1::uuid) order by ${column} desc, organization_id desc, id desc limit 21`, [a.orgId]);
      const plan = JSON.stringify(rows[0]['QUERY PLAN']);
      if (plan.includes('"Sort"') || !plan.includes(`${table}_organization_id_${column}_`)) sorted.push(`${table}.${column}`);
    }
  }, false);
  expect(sorted).toEqual([]);
});
