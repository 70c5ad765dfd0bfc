// Retention of the tables that grow with use (sql/functions/retention_growing.sql,
// src/worker/retention.ts, src/worker/tasks/daily_maintenance.ts and tenant_daily.ts): each
// organization's windows for its webhook payloads, email send log and failed jobs (1 to 365 days,
// set by owners and admins, another organization's never applied), and the fixed windows of the
// system-wide tables; rows inside their window stay; every rule works in bounded batches and a
// second run removes nothing more; logs carry counts, never values.
// The system-wide rules touch every organization's rows, so their tests run inside a transaction
// that is rolled back: other test files' rows are never removed for good.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { JobHelpers } from 'graphile-worker';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import pino from 'pino';
import type { Atrium } from '../src/index.ts';
import { startWorker } from '../src/worker/index.ts';
import { inBatches } from '../src/worker/retention.ts';
import { dailyMaintenance } from '../src/worker/tasks/daily_maintenance.ts';
import { tenant_daily } from '../src/worker/tasks/tenant_daily.ts';
import { errorCode, gql, startTestApp, tokenFor } from './support/app.ts';
import { addMember, asVisitor, closePools, inTransaction, pgError, pool, roleName, sessionOf, signUp, takingTurns, unique, urlFor } from './support/db.ts';
import { commitAs, one } from './support/fixtures.ts';
import { asWorkerCommitted, smallOrg, type SmallOrg } from './support/jobs.ts';

afterAll(closePools);

const owner = () => pool('owner');
const n = async (c: pg.PoolClient, sql: string, params: unknown[] = []) => (await one<{ n: number }>(c, sql, params)).n;
const tenantRule = (org: SmallOrg, rule: string, batch = 1000) =>
  asWorkerCommitted(org.orgId, (c) => n(c, 'select app_private.purge_tenant_rows($1, $2) as n', [rule, batch]));
type Look = (sql: string, params?: unknown[]) => Promise<pg.QueryResult>;
/**
 * A transaction, rolled back, in which `c` is the worker's session outside any organization (as
 * daily_maintenance runs), and `look` reads what the worker may not (as the superuser), inside
 * the same transaction.
 */
const asSystemWorker = <T>(fn: (c: pg.PoolClient, look: Look) => Promise<T>, settings: Record<string, string> = {}) =>
  inTransaction('superuser', { 'app.org_id': '', ...settings }, async (c) => {
    const worker = () => c.query(`set local session authorization ${roleName('worker')}`);
    await worker();
    const look: Look = async (sql, params = []) => {
      await c.query('reset session authorization');
      try {
        return await c.query(sql, params);
      } finally {
        await worker();
      }
    };
    return fn(c, look);
  }, false);
const systemRule = (c: pg.PoolClient, rule: string, batch = 1000) => n(c, 'select app_private.purge_system_rows($1, $2) as n', [rule, batch]);
const count = async (c: pg.PoolClient | pg.Pool, sql: string, params: unknown[] = []) => Number((await c.query(sql, params)).rowCount);

const setWindows = (org: SmallOrg, windows: Record<string, number>) =>
  commitAs(org.own, (c) =>
    c.query(`update app_public.organizations set ${Object.keys(windows).map((k, i) => `${k} = $${i + 2}`).join(', ')} where id = $1`, [org.orgId, ...Object.values(windows)]),
  );

// Rows made as the owner role (it bypasses row-level security), dated `days` ago ------------------

async function endpointOf(org: SmallOrg): Promise<string> {
  return commitAs(org.own, async (c) => (await one<{ id: string }>(c, `select (app_public.create_webhook_endpoint('https://example.com/hook', array['*'])).endpoint_id as id`)).id);
}

async function delivery(org: SmallOrg, endpoint: string, status: string, days: number): Promise<string> {
  const { rows } = await owner().query(
    `insert into app_public.webhook_deliveries (organization_id, endpoint_id, event_type, payload, status, attempts, last_error, response_code, created_at)
     values ($1, $2, 'deal.won', '{"data": {"object": {"email": "ada@example.com"}}}', $3, 2, 'the endpoint answered 500 for ada@example.com', 500, now() - make_interval(days => $4))
     returning id`,
    [org.orgId, endpoint, status, days],
  );
  return rows[0].id;
}

async function emailMessage(orgId: string | null, days: number, key = unique('retention-test')): Promise<string> {
  await owner().query(
    `insert into app_private.email_messages (message_key, organization_id, template, recipient, first_attempt_at, last_attempt_at, sent_at, message_id, transport)
     values ($1, $2, 'invoice_sent', 'ada@example.com', now() - make_interval(days => $3), now() - make_interval(days => $3), now() - make_interval(days => $3), '<m@example.com>', 'folder')`,
    [key, orgId, days],
  );
  return key;
}

/** A job of a task no worker runs, failed for good `days` ago (as graphile-worker leaves it). */
async function failedJob(orgId: string | null, days: number): Promise<string> {
  const payload = orgId ? { organization_id: orgId } : {};
  const { rows } = await pool('worker').query(`select id from graphile_worker.add_job('atrium_test_retention', $1::json, max_attempts => 1)`, [JSON.stringify(payload)]);
  await pool('worker').query(`update graphile_worker._private_jobs set attempts = 1, last_error = 'boom', updated_at = now() - make_interval(days => $2) where id = $1`, [rows[0].id, days]);
  return String(rows[0].id);
}

/** A job holding `key` that no worker runs (waits ten years). */
async function jobWithKey(key: string): Promise<void> {
  await pool('worker').query(`select graphile_worker.add_job('atrium_test_retention', '{}'::json, job_key => $1, run_at => now() + interval '10 years')`, [key]);
}
const removeJob = (key: string) => pool('worker').query('select graphile_worker.remove_job($1)', [key]);

const exists = async (sql: string, params: unknown[]) => (await owner().query(sql, params)).rowCount === 1;
const jobExists = (id: string) => exists('select 1 from graphile_worker._private_jobs where id = $1', [id]);
const messageExists = (key: string) => exists('select 1 from app_private.email_messages where message_key = $1', [key]);

// -------------------------------------------------------------------------------------------------

describe("an organization's windows", () => {
  test('default to 30 days; owners and admins change them; a member cannot; a member of A cannot change B', async () => {
    const [a, b] = await Promise.all([smallOrg('rg-settings-a'), smallOrg('rg-settings-b')]);
    const windows = async (org: SmallOrg) =>
      (await owner().query('select webhook_payload_retention_days as w, email_log_retention_days as e, failed_job_retention_days as f from app_public.organizations where id = $1', [org.orgId])).rows[0];
    expect(await windows(a)).toEqual({ w: 30, e: 30, f: 30 });

    const admin = await addMember(a.orgId, a.owner, 'admin', 'rg-admin');
    const member = await addMember(a.orgId, a.owner, 'member', 'rg-member');
    const update = (who: ReturnType<typeof sessionOf>, orgId: string, days: number) =>
      asVisitor(who, (c) => c.query('update app_public.organizations set webhook_payload_retention_days = $2, email_log_retention_days = $2, failed_job_retention_days = $2 where id = $1', [orgId, days]), { commit: true });
    expect((await update(sessionOf(admin, a.orgId), a.orgId, 7)).rowCount).toBe(1);
    expect((await update(a.own, a.orgId, 8)).rowCount).toBe(1);
    expect((await update(sessionOf(member, a.orgId), a.orgId, 9)).rowCount).toBe(0);
    expect(await windows(a)).toEqual({ w: 8, e: 8, f: 8 });
    // A's owner, in A, aiming at B; and in B, where A's owner is nobody.
    expect((await update(a.own, b.orgId, 2)).rowCount).toBe(0);
    expect((await update(sessionOf(a.owner, b.orgId), b.orgId, 2)).rowCount).toBe(0);
    expect(await windows(b)).toEqual({ w: 30, e: 30, f: 30 });
  });

  test('a window outside 1 to 365 days is refused by the domain rule retention_window_range', async () => {
    const org = await smallOrg('rg-bounds');
    for (const [column, days] of [['webhook_payload_retention_days', 0], ['email_log_retention_days', 366], ['failed_job_retention_days', -1]] as const) {
      const error = (await pgError(commitAs(org.own, (c) => c.query(`update app_public.organizations set ${column} = $2 where id = $1`, [org.orgId, days])))) as { code: string; constraint?: string; dataType?: string };
      expect({ column, code: error.code, constraint: error.constraint, type: error.dataType }).toEqual({ column, code: '23514', constraint: 'retention_window_range', type: 'retention_window' });
    }
    // The edges are allowed.
    await setWindows(org, { webhook_payload_retention_days: 1, email_log_retention_days: 365 });
  });

  describe('over the API', () => {
    let app: Atrium;
    beforeAll(async () => {
      app = await startTestApp();
    }, 120_000);
    afterAll(() => app?.stop());

    const UPDATE = 'mutation($o: UUID!, $p: OrganizationPatch!) { updateOrganization(input: { rowId: $o, patch: $p }) { organization { webhookPayloadRetentionDays emailLogRetentionDays failedJobRetentionDays } } }';

    test('an admin sets the windows; 0 or 366 days answers INVALID_VALUE naming the range; a member, or a member of another organization, gets NOT_FOUND', async () => {
      const [a, b] = await Promise.all([smallOrg('rg-api-a'), smallOrg('rg-api-b')]);
      const admin = await addMember(a.orgId, a.owner, 'admin', 'rg-api-admin');
      const member = await addMember(a.orgId, a.owner, 'member', 'rg-api-member');
      const adminToken = await tokenFor(admin, a.orgId);

      const ok = await gql(app.url!, UPDATE, { o: a.orgId, p: { webhookPayloadRetentionDays: 14, emailLogRetentionDays: 60, failedJobRetentionDays: 7 } }, adminToken);
      expect(ok.errors).toBeUndefined();
      expect(ok.data!.updateOrganization.organization).toEqual({ webhookPayloadRetentionDays: 14, emailLogRetentionDays: 60, failedJobRetentionDays: 7 });

      for (const p of [{ webhookPayloadRetentionDays: 0 }, { emailLogRetentionDays: 366 }]) {
        const refused = await gql(app.url!, UPDATE, { o: a.orgId, p }, adminToken);
        expect(errorCode(refused)).toBe('INVALID_VALUE');
        expect(refused.errors![0].message).toBe('A retention window is a whole number of days from 1 to 365.');
      }
      expect(errorCode(await gql(app.url!, UPDATE, { o: a.orgId, p: { failedJobRetentionDays: 1 } }, await tokenFor(member, a.orgId)))).toBe('NOT_FOUND');
      expect(errorCode(await gql(app.url!, UPDATE, { o: b.orgId, p: { failedJobRetentionDays: 1 } }, adminToken))).toBe('NOT_FOUND');
      const settings = await owner().query('select id, webhook_payload_retention_days as w, email_log_retention_days as e, failed_job_retention_days as f from app_public.organizations where id = any ($1) order by id = $2 desc', [[a.orgId, b.orgId], a.orgId]);
      expect(settings.rows.map(({ w, e, f }) => ({ w, e, f }))).toEqual([{ w: 14, e: 60, f: 7 }, { w: 30, e: 30, f: 30 }]);
    });
  });
});

describe('webhook deliveries', () => {
  test("past the organization's window a finished delivery loses its payload and last error and keeps its log; pending and recent ones, and another organization's, keep theirs", async () => {
    const [a, b] = await Promise.all([smallOrg('rg-hooks-a'), smallOrg('rg-hooks-b')]);
    await setWindows(a, { webhook_payload_retention_days: 7 });
    const [endpointA, endpointB] = await Promise.all([endpointOf(a), endpointOf(b)]);
    const oldSucceeded = await delivery(a, endpointA, 'succeeded', 10);
    const oldFailed = await delivery(a, endpointA, 'failed', 8);
    const oldPending = await delivery(a, endpointA, 'pending', 10);
    const recent = await delivery(a, endpointA, 'failed', 6);
    const otherOrg = await delivery(b, endpointB, 'succeeded', 10); // B keeps 30 days

    expect(await tenantRule(a, 'webhook_payloads')).toBe(2);
    const { rows } = await owner().query(
      `select id, status, attempts, response_code, payload is not null as has_payload, last_error is not null as has_error, payload_removed_at is not null as removed
       from app_public.webhook_deliveries where id = any ($1)`,
      [[oldSucceeded, oldFailed, oldPending, recent, otherOrg]],
    );
    const byId = Object.fromEntries(rows.map(({ id, ...rest }) => [id, rest]));
    const stripped = { attempts: 2, response_code: 500, has_payload: false, has_error: false, removed: true };
    const kept = { attempts: 2, response_code: 500, has_payload: true, has_error: true, removed: false };
    expect(byId[oldSucceeded]).toEqual({ status: 'succeeded', ...stripped });
    expect(byId[oldFailed]).toEqual({ status: 'failed', ...stripped });
    expect(byId[oldPending]).toEqual({ status: 'pending', ...kept });
    expect(byId[recent]).toEqual({ status: 'failed', ...kept });
    expect(byId[otherOrg]).toEqual({ status: 'succeeded', ...kept });

    // The strip's own event in the activity log carries neither the payload nor the last error.
    const events = await owner().query(
      `select old_values, new_values from app_public.activity_events where organization_id = $1 and table_name = 'webhook_deliveries' and record_id = $2 and action = 'update'`,
      [a.orgId, oldSucceeded],
    );
    expect(events.rows).toHaveLength(1);
    expect(JSON.stringify(events.rows)).not.toContain('ada@example.com');

    // A second run strips nothing more; the stripped delivery cannot be sent again.
    expect(await tenantRule(a, 'webhook_payloads')).toBe(0);
    const retry = await pgError(commitAs(a.own, (c) => c.query('select app_public.retry_webhook_delivery($1)', [oldFailed])));
    expect(retry).toMatchObject({ code: 'AT471', message: expect.stringContaining('payload was removed') });
    expect((await commitAs(a.own, (c) => c.query('select status from app_public.retry_webhook_delivery($1)', [recent]))).rows[0].status).toBe('pending');
  });

  test('each call strips at most its batch', async () => {
    const org = await smallOrg('rg-hooks-batch');
    const endpoint = await endpointOf(org);
    for (let i = 0; i < 3; i++) await delivery(org, endpoint, 'succeeded', 40);
    expect([await tenantRule(org, 'webhook_payloads', 2), await tenantRule(org, 'webhook_payloads', 2), await tenantRule(org, 'webhook_payloads', 2)]).toEqual([2, 1, 0]);
  });
});

describe('the email send log', () => {
  test("an organization's messages go after its window once no job holds their key; recent ones and another organization's stay", async () => {
    const [a, b] = await Promise.all([smallOrg('rg-mail-a'), smallOrg('rg-mail-b')]);
    await setWindows(a, { email_log_retention_days: 7 });
    const old = await emailMessage(a.orgId, 10);
    const waiting = await emailMessage(a.orgId, 10); // its job (pending or failed) still has the key
    await jobWithKey(`send_email:${waiting}`);
    const recent = await emailMessage(a.orgId, 6);
    const otherOrg = await emailMessage(b.orgId, 10);
    try {
      expect(await tenantRule(a, 'email_messages')).toBe(1);
      expect([await messageExists(old), await messageExists(waiting), await messageExists(recent), await messageExists(otherOrg)]).toEqual([false, true, true, true]);
      expect(await tenantRule(a, 'email_messages')).toBe(0);
    } finally {
      await removeJob(`send_email:${waiting}`);
    }
    // The job gone, nothing needs the row.
    expect(await tenantRule(a, 'email_messages')).toBe(1);
    expect(await messageExists(waiting)).toBe(false);
    expect(await tenantRule(b, 'email_messages')).toBe(0);
  });
});

describe('invitations', () => {
  test("invitations never accepted go 30 days after they expired, with their secrets; recent, pending and accepted ones, and another organization's, stay", async () => {
    const [org, other] = await Promise.all([smallOrg('rg-invitations'), smallOrg('rg-invitations-other')]);
    const invite = async (o: SmallOrg, expiredDaysAgo: number | null, accepted = false) => {
      const email = `${unique('invitee')}@example.com`;
      const { rows } = await owner().query<{ id: string }>(
        `insert into app_public.invitations (organization_id, email, expires_at, accepted_at, accepted_by)
         values ($1, $2, now() - make_interval(days => $3), case when $4 then now() - interval '60 days' end, case when $4 then $5::uuid end) returning id`,
        [o.orgId, email, expiredDaysAgo ?? -7, accepted, o.owner.userId],
      );
      return rows[0].id;
    };
    const old = await invite(org, 31);
    const recent = await invite(org, 29);
    const pending = await invite(org, null);
    const accepted = await invite(org, 60, true);
    const others = await invite(other, 31);
    await owner().query(`insert into app_private.invitation_secrets (organization_id, invitation_id, token_hash) values ($1, $2, app_private.hash_token($3))`, [org.orgId, old, unique('token')]);
    expect(await tenantRule(org, 'expired_invitations')).toBe(1);
    expect(await tenantRule(org, 'expired_invitations')).toBe(0);
    const left = (await owner().query<{ id: string }>('select id from app_public.invitations where id = any ($1)', [[old, recent, pending, accepted, others]])).rows.map((r) => r.id);
    expect(new Set(left)).toEqual(new Set([recent, pending, accepted, others]));
    expect(await exists('select 1 from app_private.invitation_secrets where invitation_id = $1', [old])).toBe(false);
  });
});

describe('the system-wide rules (in a transaction rolled back)', () => {
  test('sessions go 30 days after they ended, with their used refresh tokens; live and recently ended ones stay', async () => {
    const user = await signUp('rg-sessions');
    const session = async () => (await owner().query('select session_id from app_private.start_session($1, null)', [user.userId])).rows[0].session_id as string;
    const [revokedLongAgo, revokedRecently, expiredLongAgo, live] = [await session(), await session(), await session(), await session()];
    await owner().query(`update app_private.sessions set revoked_at = now() - interval '31 days', revoked_reason = 'refresh token reused' where id = $1`, [revokedLongAgo]);
    await owner().query(`update app_private.sessions set revoked_at = now() - interval '29 days', revoked_reason = 'signed out' where id = $1`, [revokedRecently]);
    await owner().query(`update app_private.sessions set expires_at = now() - interval '31 days' where id = $1`, [expiredLongAgo]);
    await owner().query(`insert into app_private.used_refresh_tokens (token_hash, session_id) values (app_private.hash_token($1), $2)`, [unique('used'), revokedLongAgo]);
    await asSystemWorker(async (c, look) => {
      expect(await systemRule(c, 'sessions')).toBeGreaterThanOrEqual(2);
      const left = await look('select id from app_private.sessions where id = any ($1)', [[revokedLongAgo, revokedRecently, expiredLongAgo, live]]);
      expect(left.rows.map((r) => r.id).sort()).toEqual([revokedRecently, live].sort());
      expect((await look('select 1 from app_private.used_refresh_tokens where session_id = $1', [revokedLongAgo])).rowCount).toBe(0);
      await systemRule(c, 'sessions');
      expect((await look('select 1 from app_private.sessions where id = any ($1)', [[revokedRecently, live]])).rowCount).toBe(2);
    });
  });

  test('used refresh tokens go once the refresh-token TTL has passed since their use (REFRESH_TOKEN_TTL_SECONDS, default 30 days)', async () => {
    const user = await signUp('rg-tokens');
    const used = async (days: number) => {
      const hash = unique('token');
      await owner().query(`insert into app_private.used_refresh_tokens (token_hash, session_id, used_at) values (app_private.hash_token($1), $2, now() - make_interval(days => $3))`, [hash, user.sessionId, days]);
      return hash;
    };
    const [d31, d29, d10] = [await used(31), await used(29), await used(10)];
    const left = async (look: Look) =>
      (await look('select 1 from app_private.used_refresh_tokens where token_hash = any (array[app_private.hash_token($1), app_private.hash_token($2), app_private.hash_token($3)])', [d31, d29, d10])).rowCount;
    await asSystemWorker(async (c, look) => {
      expect(await systemRule(c, 'used_refresh_tokens')).toBeGreaterThanOrEqual(1);
      expect(await left(look)).toBe(2);
    });
    // As the worker runs it: with the API's TTL in app.refresh_token_ttl_seconds (here 7 days).
    await asSystemWorker(async (c, look) => {
      expect(await systemRule(c, 'used_refresh_tokens')).toBeGreaterThanOrEqual(3);
      expect(await left(look)).toBe(0);
    }, { 'app.refresh_token_ttl_seconds': String(7 * 86400) });
  });

  test('reset tokens and registrations a day past expiry, expired email secrets, day-old throttle rows and enqueue counts go; newer ones stay', async () => {
    // The sign-in throttle test counts every stale row of login_throttle: the two take turns.
    await takingTurns('login_throttle', async () => {
      const org = await smallOrg('rg-system');
      const user = await signUp('rg-system-user');
      const tag = unique('rg');
      const insert = async (sql: string, params: unknown[]) => (await owner().query(sql, params)).rows[0];
      const reset = async (expires: string) => (await insert(`insert into app_private.password_reset_tokens (user_id, token_hash, expires_at) values ($1, app_private.hash_token($2), now() + $3::interval) returning id`, [user.userId, unique('reset'), expires])).id;
      const registration = async (expires: string) => (await insert(`insert into app_private.registrations (email, expires_at) values ($1, now() + $2::interval) returning id`, [`${unique(tag)}@example.com`, expires])).id;
      const secret = async (expires: string) => (await insert(`insert into app_private.email_secrets (message_key, secrets, expires_at) values ($1, '{"token": "x"}', now() + $2::interval) returning message_key as id`, [unique(tag), expires])).id;
      const throttle = async (ago: string) => (await insert(`insert into app_private.login_throttle (email, client, failures, last_failed_at, next_attempt_at) values ($1, '192.0.2.90', 3, now() - $2::interval, now() - $2::interval) returning email as id`, [`${unique(tag)}@example.com`, ago])).id;
      const enqueued = async (ago: string) => (await insert(`insert into app_private.job_enqueue_counts (organization_id, minute, jobs) values ($1, date_trunc('minute', now() - $2::interval), 1) returning minute as id`, [org.orgId, ago])).id;
      const rows = {
        password_reset_tokens: { table: 'password_reset_tokens', key: 'id', gone: await reset('-2 days'), kept: await reset('-1 hour') },
        registrations: { table: 'registrations', key: 'id', gone: await registration('-2 days'), kept: await registration('-1 hour') },
        email_secrets: { table: 'email_secrets', key: 'message_key', gone: await secret('-1 second'), kept: await secret('1 hour') },
        login_throttle: { table: 'login_throttle', key: 'email', gone: await throttle('2 days'), kept: await throttle('1 hour') },
        job_enqueue_counts: { table: 'job_enqueue_counts', key: 'minute', gone: await enqueued('2 days'), kept: await enqueued('1 hour') },
      };
      await asSystemWorker(async (c, look) => {
        for (const [rule, { table, key, gone, kept }] of Object.entries(rows)) {
          const there = async (value: unknown) => (await look(`select 1 from app_private.${table} where ${key} = $1${table === 'job_enqueue_counts' ? ' and organization_id = $2' : ''}`, table === 'job_enqueue_counts' ? [value, org.orgId] : [value])).rowCount === 1;
          expect({ rule, removed: await systemRule(c, rule) }).toEqual({ rule, removed: expect.any(Number) });
          expect({ rule, gone: await there(gone), kept: await there(kept) }).toEqual({ rule, gone: false, kept: true });
          // Again: nothing of these changes (other test files may meanwhile have committed rows past a window).
          await systemRule(c, rule);
          expect({ rule, gone: await there(gone), kept: await there(kept) }).toEqual({ rule, gone: false, kept: true });
        }
      });
      await owner().query('delete from app_private.login_throttle where email = any ($1)', [[rows.login_throttle.gone, rows.login_throttle.kept]]);
    });
  });

  test('dispatch records go 7 days after the dispatch once no job of it is left', async () => {
    const org = await smallOrg('rg-dispatch');
    const tx = () => 9_000_000_000 + Math.floor(Math.random() * 1_000_000_000);
    const dispatch = async (days: number) => {
      const id = tx();
      await owner().query(`insert into app_private.activity_dispatches (organization_id, transaction_id, event_count, dispatched_at) values ($1, $2, 1, now() - make_interval(days => $3))`, [org.orgId, id, days]);
      return id;
    };
    const [old, held, recent] = [await dispatch(8), await dispatch(8), await dispatch(6)];
    const heldKey = `dispatch_activity:${org.orgId}:${held}`;
    await jobWithKey(heldKey);
    try {
      await asSystemWorker(async (c, look) => {
        await systemRule(c, 'activity_dispatches');
        // (Only these three: other test files' workers dispatch the organization's own changes.)
        const left = await look('select transaction_id from app_private.activity_dispatches where organization_id = $1 and transaction_id = any ($2) order by transaction_id', [org.orgId, [old, held, recent]]);
        expect(left.rows.map((r) => Number(r.transaction_id))).toEqual([held, recent].sort((x, y) => x - y));
      });
    } finally {
      await removeJob(heldKey);
    }
  });

  test('account emails (no organization) go after 30 days once no job holds their key; an organization\'s are left to its own rule', async () => {
    const org = await smallOrg('rg-account-mail');
    const [old, recent, ofOrg] = [await emailMessage(null, 31), await emailMessage(null, 29), await emailMessage(org.orgId, 31)];
    await asSystemWorker(async (c, look) => {
      await systemRule(c, 'account_email_messages');
      const left = await look('select message_key from app_private.email_messages where message_key = any ($1)', [[old, recent, ofOrg]]);
      expect(left.rows.map((r) => r.message_key).sort()).toEqual([recent, ofOrg].sort());
    });
  });

  test("failed jobs go after their organization's window (30 days without one); another organization's window does not apply; waiting jobs stay", async () => {
    const [a, b] = await Promise.all([smallOrg('rg-jobs-a'), smallOrg('rg-jobs-b')]);
    await setWindows(a, { failed_job_retention_days: 3 });
    const jobs = {
      aOld: await failedJob(a.orgId, 5),
      aRecent: await failedJob(a.orgId, 2),
      bOld: await failedJob(b.orgId, 5),
      bPast: await failedJob(b.orgId, 31),
      systemOld: await failedJob(null, 31),
      systemRecent: await failedJob(null, 29),
    };
    const { rows } = await pool('worker').query(`select id from graphile_worker.add_job('atrium_test_retention', json_build_object('organization_id', $1::uuid), run_at => now() + interval '10 years')`, [a.orgId]);
    const waiting = String(rows[0].id);
    try {
      await asSystemWorker(async (c, look) => {
        expect(await systemRule(c, 'failed_jobs')).toBeGreaterThanOrEqual(3);
        const left = new Set((await look('select id::text from graphile_worker._private_jobs where id = any ($1)', [[...Object.values(jobs), waiting]])).rows.map((r) => r.id));
        expect(Object.fromEntries(Object.entries(jobs).map(([k, id]) => [k, left.has(id)]))).toEqual({ aOld: false, aRecent: true, bOld: true, bPast: false, systemOld: false, systemRecent: true });
        expect(left.has(waiting)).toBe(true);
        await systemRule(c, 'failed_jobs');
        expect((await look('select 1 from graphile_worker._private_jobs where id = any ($1)', [[jobs.aRecent, jobs.bOld, jobs.systemRecent, waiting]])).rowCount).toBe(4);
      });
    } finally {
      await pool('worker').query('select graphile_worker.complete_jobs($1)', [[...Object.values(jobs), waiting]]);
    }
  });

  test('only the worker applies retention, and a batch is between 1 and 10,000 rows', async () => {
    const org = await smallOrg('rg-who');
    expect((await pgError(asVisitor(org.own, (c) => c.query(`select app_private.purge_system_rows('sessions', 10)`)))).code).toBe('42501');
    expect((await pgError(asVisitor(org.own, (c) => c.query(`select app_private.purge_tenant_rows('email_messages', 10)`)))).code).toBe('42501');
    expect((await pgError(inTransaction('worker', { 'app.org_id': '' }, (c) => c.query(`select app_private.purge_tenant_rows('email_messages', 10)`), false))).code).toBe('AT402');
    expect((await pgError(asSystemWorker((c) => systemRule(c, 'sessions', 0)))).code).toBe('22023');
    expect((await pgError(asSystemWorker((c) => systemRule(c, 'no_such_rule')))).code).toBe('22023');
  });
});

describe('the daily runs', () => {
  test('batches: called again until a call removes fewer than a batch, at most so many calls', async () => {
    const sizes = [3, 3, 1];
    const calls: number[] = [];
    expect(await inBatches(async (size) => (calls.push(size), sizes.shift() ?? 0), 3, 10)).toEqual({ rows: 7, more: false });
    expect(calls).toEqual([3, 3, 3]);
    expect(await inBatches(async () => 3, 3, 4)).toEqual({ rows: 12, more: true });
  });

  test("daily_maintenance applies every system-wide rule with the configured refresh-token TTL and logs counts, not values (its transactions nested in one rolled back)", async () => {
    const user = await signUp('rg-daily');
    const hash = unique('token');
    await owner().query(`insert into app_private.used_refresh_tokens (token_hash, session_id, used_at) values (app_private.hash_token($1), $2, now() - interval '10 days')`, [hash, user.sessionId]);
    const key = await emailMessage(null, 31);
    const lines: Array<{ message: string; meta: Record<string, unknown> }> = [];
    // (It sweeps login_throttle too: in turn with the sign-in throttle test.)
    await takingTurns('login_throttle', async () => {
      const client = await pool('superuser').connect();
      try {
        await client.query('begin');
        await client.query(`set local session authorization ${roleName('worker')}`);
        const nested = { query: (text: string, params?: unknown[]) => client.query(({ begin: 'savepoint batch', commit: 'release savepoint batch', rollback: 'rollback to savepoint batch' } as Record<string, string>)[text] ?? text, params) };
        const helpers = { withPgClient: (fn: (c: unknown) => unknown) => fn(nested), logger: { info: (message: string, meta: Record<string, unknown>) => lines.push({ message, meta }) } } as unknown as JobHelpers;
        await dailyMaintenance({ refreshTokenTtlSeconds: 7 * 86400 })({ _cron: { ts: '1990-01-01T02:00:00Z' } }, helpers);
        await client.query('reset session authorization');
        expect(await count(client, 'select 1 from app_private.used_refresh_tokens where token_hash = app_private.hash_token($1)', [hash])).toBe(0);
        expect(await count(client, 'select 1 from app_private.email_messages where message_key = $1', [key])).toBe(0);
      } finally {
        await client.query('rollback');
        client.release();
      }
    });
    const applied = lines.find((l) => l.message === 'retention applied (system-wide)');
    expect(applied?.meta.removed).toEqual(Object.fromEntries(
      ['sessions', 'used_refresh_tokens', 'password_reset_tokens', 'registrations', 'email_secrets', 'login_throttle', 'job_enqueue_counts', 'activity_dispatches', 'account_email_messages', 'failed_jobs'].map((rule) => [rule, expect.any(Number)]),
    ));
    expect((applied?.meta.removed as Record<string, number>).used_refresh_tokens).toBeGreaterThanOrEqual(1);
    // No month of the activity log is old enough to drop here (tests/activity-retention.test.ts drops some).
    expect(applied?.meta.activityMonthsDropped).toEqual([]);
    expect(JSON.stringify(lines)).not.toMatch(/@example\.com/);
  });

  test("the worker's tenant_daily job applies its organization's rules and logs the counts", async () => {
    const org = await smallOrg('rg-tenant-daily');
    await setWindows(org, { webhook_payload_retention_days: 1, email_log_retention_days: 1 });
    const endpoint = await endpointOf(org);
    const stripped = await delivery(org, endpoint, 'succeeded', 2);
    const key = await emailMessage(org.orgId, 2);
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (text: string) => void lines.push(JSON.parse(text)) });
    // The tenant_daily task under a name of this test's own, so that no other test file's worker takes the job.
    const task = unique('rg_tenant_daily').replaceAll('-', '_');
    const worker = await startWorker({ connectionString: urlFor('worker'), concurrency: 2, log, crontab: false, onlyTasks: [], extraTasks: { [task]: tenant_daily } });
    const done = () => lines.find((l) => l.msg === 'retention applied' && l.organizationId === org.orgId);
    try {
      await pool('worker').query(`select graphile_worker.add_job($2, json_build_object('organization_id', $1::uuid, 'day', '1990-01-01'))`, [org.orgId, task]);
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && !done()) await sleep(200);
    } finally {
      await worker.stop();
    }
    expect(done()).toMatchObject({ removed: { webhook_payloads: 1, email_messages: 1, expired_invitations: 0, activity_events: 0 } });
    expect(await exists('select 1 from app_public.webhook_deliveries where id = $1 and payload is null', [stripped])).toBe(true);
    expect(await messageExists(key)).toBe(false);
    expect(JSON.stringify(lines.filter((l) => l.organizationId === org.orgId))).not.toMatch(/ada@example\.com/);
  }, 60_000);
});
