// The activity log partitioned by month (sql/functions/activity_partitions.sql): months ahead exist,
// events land in their month's partition, the partitions are reachable only through the log itself
// (whose policy, privileges and append-only triggers apply), and the daily maintenance keeps the
// months ahead, as the worker.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { asVisitor, closePools, inTransaction, pgError, pool, sessionOf } from './support/db.ts';
import { commitAs, one, oneTenant, type Tenant } from './support/fixtures.ts';

let t: Tenant;
beforeAll(async () => {
  t = await oneTenant('partitions');
}, 60_000);
afterAll(closePools);

const owner = () => pool('owner');
const monthName = (d: Date) => `activity_events_${d.getUTCFullYear()}_${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
const partitions = async () =>
  (await owner().query<{ name: string; bound: string }>(
    `select c.relname as name, pg_get_expr(c.relpartbound, c.oid) as bound
     from pg_inherits i join pg_class c on c.oid = i.inhrelid
     where i.inhparent = 'app_public.activity_events'::regclass order by 1`,
  )).rows;

describe('the activity log is partitioned by month', () => {
  test('partitions exist for this month and three ahead, in app_partitions, plus an empty default', async () => {
    const { rows } = await owner().query<{ kind: string; schema: string }>(`select relkind as kind from pg_class where oid = 'app_public.activity_events'::regclass`);
    expect(rows[0].kind).toBe('p');
    const names = (await partitions()).map((p) => p.name);
    const now = new Date();
    for (let ahead = 0; ahead <= 3; ahead++) expect(names).toContain(monthName(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + ahead, 1))));
    expect(names).toContain('activity_events_default');
    const schemas = (await owner().query<{ schema: string }>(`select distinct relnamespace::regnamespace::text as schema from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'app_public.activity_events'::regclass`)).rows;
    expect(schemas).toEqual([{ schema: 'app_partitions' }]);
    expect((await owner().query('select count(*)::int as n from app_partitions.activity_events_default')).rows[0].n).toBe(0);
  });

  test('a change\'s event lands in the partition of its month', async () => {
    const id = (await commitAs(sessionOf(t.owner, t.orgId), (c) => one<{ id: string }>(c, `insert into app_public.client_companies (name) values ('Partitioned') returning id`))).id;
    const { rows } = await owner().query<{ part: string; occurred_at: Date }>(`select tableoid::regclass::text as part, occurred_at from app_public.activity_events where record_id = $1`, [id]);
    expect(rows).toEqual([{ part: `app_partitions.${monthName(rows[0].occurred_at)}`, occurred_at: expect.any(Date) }]);
  });

  test('a partition is reachable only through the log: the visitor may not use the schema, and the owner role can neither change nor truncate a month', async () => {
    const month = monthName(new Date());
    const visitor = await pgError(asVisitor(sessionOf(t.owner, t.orgId), (c) => c.query(`select count(*) from app_partitions.${month}`)));
    expect(visitor.code).toBe('42501');
    expect((await pgError(owner().query(`update app_partitions.${month} set new_values = '{}' where organization_id = $1`, [t.orgId]))).code).toBe('42501');
    expect((await pgError(owner().query(`delete from app_partitions.${month} where organization_id = $1`, [t.orgId]))).code).toBe('42501');
    expect((await pgError(owner().query(`truncate app_partitions.${month}`))).code).toBe('42501');
    expect((await pgError(owner().query('truncate app_public.activity_events'))).code).toBe('42501');
  });

  test('the daily maintenance (as the worker) keeps three months ahead, and creating them twice creates nothing', async () => {
    const created = await inTransaction('worker', {}, async (c) => (await c.query<{ n: number }>('select app_private.maintain_activity_partitions() as n')).rows[0].n, false);
    expect(created).toBe(0);
    // A month further ahead is created by the procedure when asked, once.
    await inTransaction('superuser', {}, async (c) => {
      await c.query(`set local role ${(await c.query<{ r: string }>(`select relowner::regrole::text as r from pg_class where oid = 'app_public.activity_events'::regclass`)).rows[0].r}`);
      const before = (await c.query<{ n: number }>(`select count(*)::int as n from pg_inherits where inhparent = 'app_public.activity_events'::regclass`)).rows[0].n;
      await c.query('call app_private.ensure_activity_partitions(5)');
      await c.query('call app_private.ensure_activity_partitions(5)');
      const after = (await c.query<{ n: number }>(`select count(*)::int as n from pg_inherits where inhparent = 'app_public.activity_events'::regclass`)).rows[0].n;
      expect(after - before).toBe(2);
    }, false);
  });

  test('creating a month never deadlocks with a transaction that read the log and then changes an organization: it steps back and retries', async () => {
    // The transaction of CI's deadlock: it holds the log's ACCESS SHARE lock (a read), and next
    // wants ROW EXCLUSIVE on organizations (an update), which the creation's lock there blocks.
    const reader = await pool('superuser').connect();
    const creator = await pool('superuser').connect();
    try {
      await reader.query('begin');
      await reader.query('select count(*) from app_public.activity_events where false');
      await creator.query('begin');
      await creator.query(`set local role ${(await creator.query<{ r: string }>(`select relowner::regrole::text as r from pg_class where oid = 'app_public.activity_events'::regclass`)).rows[0].r}`);
      await creator.query(`set local lock_timeout = '7s'`);
      const creating = creator.query('call app_private.ensure_activity_partitions(9)');
      await new Promise((resolve) => setTimeout(resolve, 100));
      await reader.query('lock table app_public.organizations in row exclusive mode');
      await reader.query('commit');
      await creating;
      const month = new Date();
      month.setUTCDate(1);
      month.setUTCMonth(month.getUTCMonth() + 9);
      expect((await creator.query<{ r: string | null }>(`select to_regclass($1)::text as r`, [`app_partitions.${monthName(month)}`])).rows[0].r).not.toBeNull();
      // The procedure's own lock_timeout does not outlive it.
      expect((await creator.query<{ t: string }>("select current_setting('lock_timeout') as t")).rows[0].t).toBe('7s');
    } finally {
      await reader.query('rollback').catch(() => undefined);
      await creator.query('rollback').catch(() => undefined);
      reader.release();
      creator.release();
    }
  });
});
