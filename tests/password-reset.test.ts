// Password reset by email (sql/functions/password_reset.sql; requestPasswordReset and
// resetPassword in src/http/auth-mutations.ts): the request reveals nothing — it only queues a
// password_reset_request job, the same for every address — and the worker's half enqueues one
// email with a single-use, expiring token stored only as a hash, at most every 5 minutes; the reset
// sets the password, uses the token up and signs out every session. End to end over HTTP with a
// running worker: the email file holds the token that resets the password.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Atrium } from '../src/index.ts';
import { errorCode, gql, registerAndConfirm, startTestApp } from './support/app.ts';
import { asVisitor, closePools, pgError, pool, roleName, signUp, unique } from './support/db.ts';
import { one } from './support/fixtures.ts';
import { emailsOf, inRequest } from './support/outbox.ts';
import { parseMessage } from './support/smtp.ts';

afterAll(closePools);

const anonymous = {};
/** The worker's half of a request (task password_reset_request), and the emails it enqueues. */
const request = (email: string, commit = false) => emailsOf(anonymous, (c) => c.query('select app_private.start_password_reset($1)', [email]), { commit, as: 'worker' });
/** The one-time token of a queued message (app_private.email_secrets, read as the owner). */
const secretOf = async (messageKey: string) =>
  (await pool('owner').query<{ token: string }>(`select secrets->>'token' as token from app_private.email_secrets where message_key = $1`, [messageKey])).rows[0]?.token;
const tokenRows = async (userId: string) =>
  (await pool('owner').query<{ id: string; token_hash: Buffer; used_at: Date | null }>('select id, token_hash, used_at from app_private.password_reset_tokens where user_id = $1 order by created_at', [userId])).rows;

describe('requesting a reset', () => {
  /** What requestPasswordReset does in the database, seen from inside its transaction (rolled back). */
  async function apiRequest(email: string) {
    const { result } = await emailsOf(anonymous, async (c) => {
      const { ok } = await one<{ ok: boolean }>(c, 'select app_private.request_password_reset($1) as ok', [email]);
      await c.query('reset role');
      const { rows: jobs } = await c.query<{ task: string; key: string; payload: unknown }>(
        `select t.identifier as task, j.key, j.payload from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
         where j.xmin = pg_current_xact_id()::xid order by j.id`,
      );
      const { rows: tokens } = await c.query('select 1 from app_private.password_reset_tokens where xmin = pg_current_xact_id()::xid');
      return { ok, jobs, tokens: tokens.length };
    });
    return result;
  }

  test('the API\'s half does the same work for an account and for an unknown address: one job with the address, nothing else', async () => {
    const user = await signUp('reset-same-work');
    const nobody = `${unique('nobody')}@example.com`;
    const known = await apiRequest(` ${user.email.toUpperCase()} `);
    const unknown = await apiRequest(nobody);
    expect(known).toEqual({ ok: true, tokens: 0, jobs: [{ task: 'password_reset_request', key: `password_reset_request:${user.email}`, payload: { email: user.email } }] });
    expect(unknown).toEqual({ ok: true, tokens: 0, jobs: [{ task: 'password_reset_request', key: `password_reset_request:${nobody}`, payload: { email: nobody } }] });
    // No account can have a malformed address: nothing to queue.
    expect(await apiRequest('not an address')).toEqual({ ok: true, tokens: 0, jobs: [] });
  });

  test('only the worker role runs the look-up (start_password_reset)', async () => {
    expect((await pgError(asVisitor({}, (c) => c.query(`select app_private.start_password_reset('a@b.example')`)))).code).toBe('42501');
  });

  test('an unknown address gets no email', async () => {
    const { emails } = await request(`${unique('nobody')}@example.com`);
    expect(emails).toEqual([]);
  });

  test('an account gets one email with a token; only its hash is stored, and the job carries no token', async () => {
    const user = await signUp('reset-request');
    const { emails } = await request(`  ${user.email.toUpperCase()} `, true);
    expect(emails).toHaveLength(1);
    expect(emails[0].payload).toEqual({ template: 'password_reset', to: user.email, data: { name: user.name, email: user.email, valid_for: '1 hour' }, message_key: emails[0].payload.message_key, has_secrets: true });
    const token = (await secretOf(emails[0].payload.message_key))!;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(JSON.stringify(emails[0])).not.toContain(token);
    const rows = await tokenRows(user.userId);
    expect(rows).toHaveLength(1);
    const expected = (await pool('owner').query<{ h: string }>(`select encode(public.digest($1, 'sha256'), 'hex') as h`, [token])).rows[0].h;
    expect(rows[0].token_hash.toString('hex')).toBe(expected);
    expect(JSON.stringify(rows)).not.toContain(token);
    expect(emails[0].payload.message_key).toBe(`password_reset:${rows[0].id}`);
  });

  test('at most one email per account every 5 minutes; a newer token replaces the older one', async () => {
    const user = await signUp('reset-rate');
    expect((await request(user.email, true)).emails).toHaveLength(1);
    expect((await request(user.email, true)).emails).toEqual([]); // too soon: nothing new
    expect(await tokenRows(user.userId)).toHaveLength(1);
    await pool('owner').query(`update app_private.password_reset_tokens set created_at = now() - interval '6 minutes' where user_id = $1`, [user.userId]);
    const again = await request(user.email, true);
    expect(again.emails).toHaveLength(1);
    const rows = await tokenRows(user.userId);
    expect(rows).toHaveLength(1); // the older token is gone
    expect(again.emails[0].payload.message_key).toBe(`password_reset:${rows[0].id}`);
  });

  test("a replaced token's email, still queued, is not sent", async () => {
    const user = await signUp('reset-replaced');
    const { emails, done } = await inRequest(anonymous, async (c) => {
      await c.query('select app_private.start_password_reset($1)', [user.email]);
      await c.query('reset role');
      await c.query(`update app_private.password_reset_tokens set created_at = now() - interval '6 minutes' where user_id = $1`, [user.userId]);
      await c.query(`select set_config('role', $1, true)`, [roleName('worker')]);
      await c.query('select app_private.start_password_reset($1)', [user.email]);
    }, { as: 'worker' });
    await done(false);
    // Two tokens were made in this transaction; only the second one's email is still queued.
    expect(emails).toHaveLength(1);
  });

  test('a rolled-back request leaves no token and no email', async () => {
    const user = await signUp('reset-rollback');
    const { emails } = await request(user.email, false);
    expect(emails).toHaveLength(1);
    expect(await tokenRows(user.userId)).toEqual([]);
    expect((await pool('owner').query('select 1 from graphile_worker._private_jobs where key = $1', [emails[0].key])).rowCount).toBe(0);
  });

  test('the tokens are out of the visitor\'s reach', async () => {
    expect((await pgError(asVisitor({}, (c) => c.query('select * from app_private.password_reset_tokens')))).code).toBe('42501');
  });
});

describe('resetting the password (SQL)', () => {
  const reset = (token: string, password: string) => asVisitor({}, (c) => c.query('select * from app_private.reset_password($1, $2)', [token, password]), { commit: true });
  const tokenFor = async (email: string) => (await secretOf((await request(email, true)).emails[0].payload.message_key))!;

  test('a weak password is refused and does not use the token up', async () => {
    const user = await signUp('reset-weak');
    const token = await tokenFor(user.email);
    expect((await pgError(reset(token, 'short'))).code).toBe('AT413'); // WEAK_PASSWORD
    await reset(token, 'a brand new password');
  });

  test('unknown, used, replaced and expired tokens are refused with stable codes', async () => {
    expect((await pgError(reset('no-such-token', 'a brand new password'))).code).toBe('AT415'); // RESET_TOKEN_INVALID
    const user = await signUp('reset-codes');
    const first = await tokenFor(user.email);
    await pool('owner').query(`update app_private.password_reset_tokens set created_at = now() - interval '6 minutes' where user_id = $1`, [user.userId]);
    const second = await tokenFor(user.email);
    expect((await pgError(reset(first, 'a brand new password'))).code).toBe('AT415'); // replaced
    await pool('owner').query(`update app_private.password_reset_tokens set expires_at = now() - interval '1 second' where user_id = $1`, [user.userId]);
    expect((await pgError(reset(second, 'a brand new password'))).code).toBe('AT416'); // RESET_TOKEN_EXPIRED
  });
});

// ---------------------------------------------------------------------------------------------

describe('over HTTP, with the worker sending the email', () => {
  let app: Atrium;
  let url: string;
  const AUTH = 'accessToken refreshToken userId';

  beforeAll(async () => {
    app = await startTestApp({ worker: true });
    url = app.url!;
  }, 60_000);
  afterAll(async () => {
    await app?.stop();
  });

  const requestReset = async (email: string) => {
    const res = await gql<{ requestPasswordReset: { requested: boolean } }>(url, 'mutation($email: String!) { requestPasswordReset(input: { email: $email }) { requested } }', { email });
    expect(res.errors).toBeUndefined();
    return res.data!.requestPasswordReset.requested;
  };
  const resetPassword = (token: string, newPassword: string) =>
    gql<{ resetPassword: { accessToken: string; refreshToken: string; userId: string } }>(url, `mutation($token: String!, $newPassword: String!) { resetPassword(input: { token: $token, newPassword: $newPassword }) { ${AUTH} } }`, { token, newPassword });
  const login = (email: string, password: string) => gql<{ login: { accessToken: string } }>(url, `mutation($email: String!, $password: String!) { login(input: { email: $email, password: $password }) { accessToken } }`, { email, password });

  /** The newest password_reset email the worker sent to `email` (after `after` emails), as written to its file. */
  async function resetEmailTo(email: string, after = 0) {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { rows } = await pool('owner').query<{ transport_detail: string }>(
        `select transport_detail from app_private.email_messages where recipient = $1 and template = 'password_reset' and sent_at is not null order by sent_at`,
        [email],
      );
      if (rows.length > after) return parseMessage(fs.readFileSync(rows[rows.length - 1].transport_detail, 'utf8'));
      if (Date.now() > deadline) throw new Error(`no password_reset email to ${email} after 20 s`);
      await sleep(100);
    }
  }
  const tokenIn = (text: string) => {
    const match = /\/reset-password\?token=([A-Za-z0-9_%-]+)/.exec(text);
    expect(match).not.toBeNull();
    return decodeURIComponent(match![1]);
  };

  test('request → email file with the link → reset → the new password works, the old one and the old sessions do not', async () => {
    const email = `${unique('reset-http')}@example.com`;
    const registered = await registerAndConfirm(url, { email, password: 'the old password', name: 'Reset Me' });

    expect(await requestReset(email)).toBe(true);
    expect(await requestReset(`${unique('nobody')}@example.com`)).toBe(true); // same answer for no account

    const message = await resetEmailTo(email);
    expect(message.headers.subject).toBe('Reset your Atrium password');
    expect(message.headers.to).toBe(email);
    expect(message.text).toContain('Hello Reset Me,');
    const token = tokenIn(message.text);
    expect(message.html).toContain(`/reset-password?token=${encodeURIComponent(token)}`);

    const weak = await resetPassword(token, 'short');
    expect(errorCode(weak)).toBe('WEAK_PASSWORD');

    const done = await resetPassword(token, 'the new password');
    expect(done.errors).toBeUndefined();
    expect(done.data!.resetPassword.accessToken).toEqual(expect.any(String));
    expect((await gql<{ viewer: { name: string } }>(url, '{ viewer { name } }', {}, done.data!.resetPassword.accessToken)).data?.viewer).toEqual({ name: 'Reset Me' });

    expect((await login(email, 'the new password')).errors).toBeUndefined();
    expect(errorCode(await login(email, 'the old password'))).toBe('INVALID_CREDENTIALS');
    // Every earlier session is signed out: its refresh token no longer works.
    const refreshed = await gql(url, 'mutation($t: String!) { refresh(input: { refreshToken: $t }) { accessToken } }', { t: registered.refreshToken });
    expect(errorCode(refreshed)).toBe('INVALID_REFRESH_TOKEN');

    // The link works once.
    expect(errorCode(await resetPassword(token, 'yet another password'))).toBe('RESET_TOKEN_INVALID');
  });

  test('an expired link is refused with RESET_TOKEN_EXPIRED', async () => {
    const user = await signUp('reset-expired');
    expect(await requestReset(user.email)).toBe(true);
    const token = tokenIn((await resetEmailTo(user.email)).text);
    await pool('owner').query(`update app_private.password_reset_tokens set expires_at = now() - interval '1 second' where user_id = $1`, [user.userId]);
    const res = await resetPassword(token, 'the new password');
    expect(errorCode(res)).toBe('RESET_TOKEN_EXPIRED');
    expect(res.errors?.[0].extensions?.httpStatus).toBe(400);
    expect((await login(user.email, 'correct horse battery')).errors).toBeUndefined(); // unchanged
  });
});
