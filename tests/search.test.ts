// Searching task titles (sql/functions/search.sql): the API's `filter` finds a word inside titles,
// case-insensitively, in the caller's organization only; the trigram index serves it; lists are not
// ordered by title (no index could order them).
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
