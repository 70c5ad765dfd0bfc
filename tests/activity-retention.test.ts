// Retention of the activity log (sql/functions/activity_retention.sql): each organization's window
// (30 to 3650 days, default 730) and the law of its country for bookkeeping records' events (never
// fewer years; longer when it says so); row deletes through the retention door, which lets only
// expired events through, in batches, leaving a trace without contents; whole months dropped once
// older than every organization's longest window, each drop recorded.
// Old events are written inside transactions that are rolled back (they would land in the default
// partition, which other test files expect empty), as the superuser; the rules then run as the
// worker in the same transaction.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { JobHelpers } from 'graphile-worker';
import type pg from 'pg';
import type { Atrium } from '../src/index.ts';
import { tenant_daily } from '../src/worker/tasks/tenant_daily.ts';
import { errorCode, gql, startTestApp, tokenFor } from './support/app.ts';
import { addMember, closePools, inTransaction, pgError, pool, roleName } from './support/db.ts';
import { commitAs } from './support/fixtures.ts';
import { smallOrg, type SmallOrg } from './support/jobs.ts';

afterAll(closePools);

const owner = () => pool('owner');
const worker = (c: pg.PoolClient, orgId: string) =>
  c.query(`set local session authorization ${roleName('worker')}`).then(() => c.query(`select set_config('app.org_id', $1, true)`, [orgId]));
const superuser = (c: pg.PoolClient) => c.query('reset session authorization');

/** A transaction, rolled back, as the superuser (a deadlock with another file's transaction is retried, as a client does). */
async function rolledBack<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await inTransaction('superuser', { 'app.org_id': '' }, fn, false);
    } catch (error) {
      if ((error as { code?: string }).code !== '40P01' || attempt === 5) throw error;
    }
  }
}

interface EventSpec {
  table: string;
  parent?: string;
  /** When: an SQL expression. */
  at: string;
}

/** Writes events of `orgId` (as the superuser: only the audit trigger writes events otherwise); returns their ids in order. */
async function events(c: pg.PoolClient, orgId: string, specs: EventSpec[]): Promise<string[]> {
  const ids: string[] = [];
  for (const spec of specs) {
    const { rows } = await c.query<{ id: string }>(
      `insert into app_public.activity_events (organization_id, action, table_name, record_id, new_values, parent_table, parent_id, occurred_at)
       values ($1, 'insert', $2, gen_random_uuid(), '{"name": "Ada Lovelace"}', $3, case when $3::text is null then null else gen_random_uuid() end, ${spec.at})
       returning id`,
      [orgId, spec.table, spec.parent ?? null],
    );
    ids.push(rows[0].id);
  }
  return ids;
}
const remaining = async (c: pg.PoolClient, ids: string[]): Promise<boolean[]> => {
  const { rows } = await c.query<{ id: string }>('select id from app_public.activity_events where id = any ($1)', [ids]);
  const left = new Set(rows.map((r) => r.id));
  return ids.map((id) => left.has(id));
};
const purge = async (c: pg.PoolClient, batch = 1000): Promise<number> => (await c.query<{ n: number }>(`select app_private.purge_tenant_rows('activity_events', $1) as n`, [batch])).rows[0].n;

const settings = (org: SmallOrg) =>
  owner().query('select country_code as country, activity_retention_days as days, financial_activity_retention_years as years from app_public.organizations where id = $1', [org.orgId]).then((r) => r.rows[0]);
const update = (org: SmallOrg, set: Record<string, unknown>) =>
  commitAs(org.own, (c) => c.query(`update app_public.organizations set ${Object.keys(set).map((k, i) => `${k} = $${i + 2}`).join(', ')} where id = $1`, [org.orgId, ...Object.values(set)]));

describe("an organization's activity retention", () => {
  test('defaults to 730 days and the law of its country; 30 to 3650 days; a country is its upper-case ISO code', async () => {
    const org = await smallOrg('ar-bounds');
    expect(await settings(org)).toEqual({ country: null, days: 730, years: null });
    for (const [column, value, constraint] of [
      ['activity_retention_days', 29, 'activity_retention_window_range'],
      ['activity_retention_days', 3651, 'activity_retention_window_range'],
      ['financial_activity_retention_years', 31, 'financial_retention_years_range'],
      ['country_code', 'de', 'country_code_format'],
      ['country_code', 'DEU', 'country_code_format'],
    ] as const) {
      const error = (await pgError(update(org, { [column]: value }))) as { code: string; constraint?: string };
      expect({ column, value, code: error.code, constraint: error.constraint }).toEqual({ column, value, code: '23514', constraint });
    }
    await update(org, { activity_retention_days: 30 });
    await update(org, { activity_retention_days: 3650, country_code: 'GB', financial_activity_retention_years: 6 });
    expect(await settings(org)).toEqual({ country: 'GB', days: 3650, years: 6 });
  });

  test('bookkeeping years below the law of the country are refused with INVALID_VALUE naming the law, and so is moving to a country whose law asks more', async () => {
    const org = await smallOrg('ar-law');
    await update(org, { country_code: 'DK', financial_activity_retention_years: 5 });
    const below = await pgError(update(org, { country_code: 'DE' }));
    expect(below.code).toBe('22023');
    expect(below.message).toBe('Bookkeeping records must be kept at least 10 years here (DE: Handelsgesetzbuch § 257, Abgabenordnung § 147): financialActivityRetentionYears cannot be 5.');
    expect((await pgError(update(org, { financial_activity_retention_years: 4 }))).code).toBe('22023');
    // Null follows the law; more than the law is allowed.
    await update(org, { country_code: 'DE', financial_activity_retention_years: null });
    await update(org, { financial_activity_retention_years: 12 });
    expect(await settings(org)).toEqual({ country: 'DE', days: 730, years: 12 });
  });

  describe('over the API', () => {
    let app: Atrium;
    beforeAll(async () => {
      app = await startTestApp();
    }, 120_000);
    afterAll(() => app?.stop());

    const UPDATE = 'mutation($o: UUID!, $p: OrganizationPatch!) { updateOrganization(input: { rowId: $o, patch: $p }) { organization { countryCode activityRetentionDays financialActivityRetentionYears } } }';

    test('an admin sets them; out of range or below the law answers INVALID_VALUE with the rule; a member gets NOT_FOUND', async () => {
      const org = await smallOrg('ar-api');
      const admin = await addMember(org.orgId, org.owner, 'admin', 'ar-api-admin');
      const member = await addMember(org.orgId, org.owner, 'member', 'ar-api-member');
      const adminToken = await tokenFor(admin, org.orgId);
      const ok = await gql(app.url!, UPDATE, { o: org.orgId, p: { countryCode: 'FR', activityRetentionDays: 365, financialActivityRetentionYears: 11 } }, adminToken);
      expect(ok.errors).toBeUndefined();
      expect(ok.data!.updateOrganization.organization).toEqual({ countryCode: 'FR', activityRetentionDays: 365, financialActivityRetentionYears: 11 });

      const tooShort = await gql(app.url!, UPDATE, { o: org.orgId, p: { activityRetentionDays: 29 } }, adminToken);
      expect(errorCode(tooShort)).toBe('INVALID_VALUE');
      expect(tooShort.errors![0].message).toBe("The activity log's retention is a whole number of days from 30 to 3650.");
      const belowLaw = await gql(app.url!, UPDATE, { o: org.orgId, p: { financialActivityRetentionYears: 9 } }, adminToken);
      expect(errorCode(belowLaw)).toBe('INVALID_VALUE');
      expect(belowLaw.errors![0].message).toMatch(/^Bookkeeping records must be kept at least 10 years here \(FR: Code de commerce/);
      expect(errorCode(await gql(app.url!, UPDATE, { o: org.orgId, p: { activityRetentionDays: 30 } }, await tokenFor(member, org.orgId)))).toBe('NOT_FOUND');
      expect(await settings(org)).toEqual({ country: 'FR', days: 365, years: 11 });
    });
  });
});

describe('expired events are deleted, per organization', () => {
  test('ordinary events past the window go; recent ones, bookkeeping events (their own or their parent\'s) inside the law\'s years, and another organization\'s stay', async () => {
    const [a, b] = await Promise.all([smallOrg('ar-rows-a'), smallOrg('ar-rows-b')]);
    await update(a, { activity_retention_days: 30, country_code: 'GB' });
    await rolledBack(async (c) => {
      const yearStart = `date_trunc('year', now())`;
      const specs: Array<EventSpec & { gone: boolean }> = [
        { table: 'contacts', at: `now() - interval '40 days'`, gone: true },
        { table: 'contacts', at: `now() - interval '10 days'`, gone: false },
        { table: 'time_entries', parent: 'engagements', at: `now() - interval '400 days'`, gone: true },
        { table: 'invoices', at: `now() - interval '40 days'`, gone: false },
        { table: 'files', parent: 'invoices', at: `now() - interval '400 days'`, gone: false },
        // GB: six years from the end of the record's year.
        { table: 'payments', at: `${yearStart} - interval '6 years' - interval '1 day'`, gone: true },
        { table: 'invoices', at: `${yearStart} - interval '6 years' + interval '1 day'`, gone: false },
      ];
      const ids = await events(c, a.orgId, specs);
      const others = await events(c, b.orgId, [{ table: 'contacts', at: `now() - interval '40 days'` }, { table: 'payments', at: `${yearStart} - interval '7 years'` }]);
      await worker(c, a.orgId);
      expect(await purge(c)).toBe(3);
      expect(await purge(c)).toBe(0);
      await superuser(c);
      expect(await remaining(c, ids)).toEqual(specs.map((s) => !s.gone));
      expect(await remaining(c, others)).toEqual([true, true]);
    });
  });

  test('an organization that keeps bookkeeping events longer than the law keeps them longer', async () => {
    const org = await smallOrg('ar-rows-longer');
    await update(org, { activity_retention_days: 30, country_code: 'GB', financial_activity_retention_years: 8 });
    await rolledBack(async (c) => {
      const ids = await events(c, org.orgId, [
        { table: 'invoices', at: `date_trunc('year', now()) - interval '7 years'` },
        { table: 'invoices', at: `date_trunc('year', now()) - interval '8 years' - interval '1 day'` },
      ]);
      await worker(c, org.orgId);
      expect(await purge(c)).toBe(1);
      await superuser(c);
      expect(await remaining(c, ids)).toEqual([true, false]);
    });
  });

  test('each call deletes at most its batch, oldest first', async () => {
    const org = await smallOrg('ar-batch');
    await update(org, { activity_retention_days: 30 });
    await rolledBack(async (c) => {
      const ids = await events(c, org.orgId, [40, 50, 60].map((days) => ({ table: 'contacts', at: `now() - interval '${days} days'` })));
      await worker(c, org.orgId);
      expect(await purge(c, 2)).toBe(2);
      await superuser(c);
      expect(await remaining(c, ids)).toEqual([true, false, false]);
    });
  });

  test('the door lets only expired events through: the owner cannot delete an event, and inside the door only an expired one', async () => {
    const org = await smallOrg('ar-door');
    await update(org, { activity_retention_days: 30 });
    const live = (await owner().query<{ id: string }>('select id from app_public.activity_events where organization_id = $1 limit 1', [org.orgId])).rows[0].id;
    expect((await pgError(owner().query('delete from app_public.activity_events where id = $1', [live]))).code).toBe('42501');
    await rolledBack(async (c) => {
      const [expired] = await events(c, org.orgId, [{ table: 'contacts', at: `now() - interval '40 days'` }]);
      await c.query(`insert into app_private.erasure_transactions (transaction_id, organization_id, erasure_id, scope) values (pg_current_xact_id()::text::bigint, $1, $1, 'retention')`, [org.orgId]);
      await c.query(`select set_config('app.erasure', $1, true)`, [org.orgId]);
      await c.query(`set local session authorization ${roleName('owner')}`);
      await c.query('savepoint live');
      expect((await pgError(c.query('delete from app_public.activity_events where id = $1', [live]))).message).toMatch(/append-only/);
      await c.query('rollback to savepoint live');
      expect((await c.query('delete from app_public.activity_events where id = $1', [expired])).rowCount).toBe(1);
      // Rewriting values is an erasure's, not retention's.
      await c.query('savepoint update');
      expect((await pgError(c.query(`update app_public.activity_events set new_values = '{}' where id = $1`, [live]))).message).toMatch(/append-only/);
      await c.query('rollback to savepoint update');
    });
  });

  test('only the worker inside an organization runs it; the worker cannot open the door itself', async () => {
    const org = await smallOrg('ar-who');
    await rolledBack(async (c) => {
      await worker(c, org.orgId);
      await c.query('savepoint direct');
      expect((await pgError(c.query('select app_private.purge_expired_activity(10)'))).code).toBe('42501');
      await c.query('rollback to savepoint direct');
      await c.query(`select set_config('app.org_id', '', true)`);
      expect((await pgError(c.query(`select app_private.purge_tenant_rows('activity_events', 10)`))).message).toMatch(/organization/i);
    });
  });

  test("tenant_daily deletes an organization's expired events and leaves one event saying how many and up to when, without their contents", async () => {
    const org = await smallOrg('ar-daily');
    await update(org, { activity_retention_days: 30 });
    const lines: Array<{ message: string; meta: Record<string, unknown> }> = [];
    await rolledBack(async (c) => {
      const ids = await events(c, org.orgId, [{ table: 'contacts', at: `now() - interval '40 days'` }, { table: 'contacts', at: `now() - interval '41 days'` }]);
      await c.query(`set local session authorization ${roleName('worker')}`);
      // The task's transactions, nested in this one as savepoints.
      const nested = { query: (text: string, params?: unknown[]) => c.query(({ begin: 'savepoint batch', commit: 'release savepoint batch', rollback: 'rollback to savepoint batch' } as Record<string, string>)[text] ?? text, params) };
      const helpers = { withPgClient: (fn: (client: unknown) => unknown) => fn(nested), logger: { info: (message: string, meta: Record<string, unknown>) => lines.push({ message, meta }) } } as unknown as JobHelpers;
      await tenant_daily({ organization_id: org.orgId, day: '1990-01-01' }, helpers);
      await superuser(c);
      expect(await remaining(c, ids)).toEqual([false, false]);
      const trace = (await c.query(`select action, actor_id, new_values from app_public.activity_events where organization_id = $1 and table_name = 'activity_events'`, [org.orgId])).rows;
      expect(trace).toEqual([{ action: 'purge', actor_id: null, new_values: { events_deleted: 2, deleted_before: expect.any(String), bookkeeping_deleted_before: expect.any(String) } }]);
    });
    expect(lines.find((l) => l.message === 'retention applied')?.meta.removed).toMatchObject({ activity_events: 2 });
    expect(JSON.stringify(lines)).not.toMatch(/Ada Lovelace/);
  });
});

describe('whole months are dropped', () => {
  const month = (c: pg.PoolClient, sql: string) => c.query<{ m: string }>(`select to_char(${sql}, 'YYYY-MM-DD') as m`).then((r) => r.rows[0].m);
  /** Creates the month partition starting at `start` (YYYY-MM-DD), as ensure_activity_partitions does, with one event of `orgId`. */
  async function monthWithEvent(c: pg.PoolClient, start: string, orgId: string): Promise<string> {
    const name = `activity_events_${start.slice(0, 7).replace('-', '_')}`;
    // As the owner, who owns the log's months (they are made by its functions).
    await c.query(`set local session authorization ${roleName('owner')}`);
    await c.query(`create table app_partitions.${name} partition of app_public.activity_events for values from ('${start}') to ('${start}'::date + interval '1 month')`);
    await superuser(c);
    await events(c, orgId, [{ table: 'contacts', at: `'${start}'::timestamptz + interval '1 day'` }]);
    return name;
  }
  const exists = async (c: pg.PoolClient, name: string) => (await c.query('select to_regclass($1) is not null as e', [`app_partitions.${name}`])).rows[0].e as boolean;

  test("a month older than every organization's longest window is dropped and recorded; the month holding that cut-off stays; one organization's longer window keeps it", async () => {
    const org = await smallOrg('ar-months');
    await rolledBack(async (c) => {
      // In the writers' lock order (sql/functions/activity_partitions.sql).
      await c.query('lock table app_public.organizations in share row exclusive mode');
      await c.query('lock table app_public.activity_events in access exclusive mode');
      const cutoff = `date_trunc('month', now() - app_private.longest_activity_retention())`;
      const older = await monthWithEvent(c, await month(c, `${cutoff} - interval '1 month'`), org.orgId);
      const holding = await monthWithEvent(c, await month(c, cutoff), org.orgId);
      await c.query('savepoint longer');
      // An organization keeping thirty years keeps both months for everyone.
      await c.query('update app_public.organizations set financial_activity_retention_years = 30 where id = $1', [org.orgId]);
      await c.query(`set local session authorization ${roleName('worker')}`);
      expect((await c.query('select * from app_private.drop_expired_activity_partitions()')).rows).toEqual([]);
      await c.query('rollback to savepoint longer');

      await c.query(`set local session authorization ${roleName('worker')}`);
      const dropped = (await c.query<{ m: string }>(`select to_char(m, 'YYYY-MM-DD') as m from app_private.drop_expired_activity_partitions() as m`)).rows.map((r) => r.m);
      await superuser(c);
      expect(dropped).toEqual([`${older.slice(16).replace('_', '-')}-01`]);
      expect([await exists(c, older), await exists(c, holding)]).toEqual([false, true]);
      const record = (await c.query(`select partition_name, events, kept_for = app_private.longest_activity_retention() as kept_for from app_private.activity_partition_drops where partition_name = $1`, [older])).rows;
      expect(record).toEqual([{ partition_name: older, events: '1', kept_for: true }]);
      // Never the default partition, nor the months ahead.
      expect(await exists(c, 'activity_events_default')).toBe(true);
    });
  });

  test('a month the log is busy with is left for the next run, and dropped by the next', async () => {
    // A committed month long gone (1970), without events; dropped by this test.
    await owner().query(`lock table app_public.organizations in share row exclusive mode; lock table app_public.activity_events in access exclusive mode;
      create table app_partitions.activity_events_1970_01 partition of app_public.activity_events for values from ('1970-01-01') to ('1970-02-01')`);
    const reader = await owner().connect();
    const drop = () =>
      inTransaction('worker', {}, async (c) => (await c.query<{ m: string }>(`select to_char(m, 'YYYY-MM') as m from app_private.drop_expired_activity_partitions('200 milliseconds') as m`)).rows.map((r) => r.m), true);
    try {
      // A reader holding the log: the drop waits 200 ms for it, then leaves the month.
      await reader.query('begin');
      await reader.query('select count(*) from app_public.activity_events where false');
      expect(await drop()).toEqual([]);
      expect(await exists(reader, 'activity_events_1970_01')).toBe(true);
    } finally {
      await reader.query('rollback');
      reader.release();
    }
    expect(await drop()).toEqual(['1970-01']);
    expect((await owner().query(`select to_regclass('app_partitions.activity_events_1970_01') is null as gone`)).rows[0].gone).toBe(true);
  });
});
