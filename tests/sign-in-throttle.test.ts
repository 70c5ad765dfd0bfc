// The database's sign-in throttle by itself (sql/functions/auth.sql, app_private.login), called
// as the API calls it: as the visitor, with the client's address in app.client_address. Over HTTP
// (tests/auth-http.test.ts) the API also asks app_private.login_retry_after first, to tell the
// client how long to wait; these tests prove the database refuses without it.
import { afterAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import { closePools, inTransaction, pgError, pool, roleName, takingTurns, unique } from './support/db.ts';

afterAll(closePools);

const PASSWORD = 'correct horse battery';

/** A user made directly in the tables (independent of how register behaves). */
async function makeUser(label: string): Promise<{ id: string; email: string }> {
  const email = `${unique(label)}@example.com`;
  const { rows } = await pool('owner').query<{ id: string }>('insert into app_public.users (email, name) values ($1, $2) returning id', [email, label]);
  await pool('owner').query(`insert into app_private.user_secrets (user_id, password_hash) values ($1, public.crypt($2, public.gen_salt('bf', 4)))`, [rows[0].id, PASSWORD]);
  return { id: rows[0].id, email };
}

const asClient = <T extends pg.QueryResultRow>(client: string | undefined, sql: string, values: unknown[]) =>
  inTransaction('authenticator', { role: roleName('visitor'), ...(client === undefined ? {} : { 'app.client_address': client }) }, (c) => c.query<T>(sql, values), true);
const login = async (client: string | undefined, email: string, password: string) =>
  (await asClient<{ user_id: string | null }>(client, 'select user_id from app_private.login($1, $2)', [email, password])).rows[0].user_id;
const retryAfter = async (client: string, email: string) => (await asClient<{ s: number }>(client, 'select app_private.login_retry_after($1) as s', [email])).rows[0].s;
const row = async (email: string, client: string) =>
  (await pool('owner').query<{ failures: number }>('select failures from app_private.login_throttle where email = $1 and client = $2', [email, client])).rows[0];

describe('the database throttles sign-ins per email address and client', () => {
  test('app_private.login itself refuses a client that must wait, even with the right password; the same address from another client signs in', async () => {
    const user = await makeUser('db-throttle');
    for (let i = 0; i < 5; i++) expect(await login('192.0.2.10', user.email, `wrong ${i}`)).toBeNull();
    const refused = await pgError(login('192.0.2.10', user.email, PASSWORD));
    expect(refused.code).toBe('AT417'); // TOO_MANY_ATTEMPTS
    expect(refused.message).toMatch(/try again in \d+ second/);
    expect(await login('192.0.2.11', user.email, PASSWORD)).toBe(user.id);
    // login_retry_after tells each client only about its own failures.
    expect(await retryAfter('192.0.2.10', user.email)).toBeGreaterThan(0);
    expect(await retryAfter('192.0.2.11', user.email)).toBe(0);
  });

  test('a password reset clears the wait of every client for that address', async () => {
    const user = await makeUser('db-reset');
    for (const client of ['192.0.2.20', '192.0.2.21']) for (let i = 0; i < 5; i++) await login(client, user.email, `wrong ${i}`);
    const token = unique('reset-token');
    await pool('owner').query(`insert into app_private.password_reset_tokens (user_id, token_hash, expires_at) values ($1, app_private.hash_token($2), now() + interval '1 hour')`, [user.id, token]);
    await asClient(undefined, 'select app_private.reset_password($1, $2)', [token, 'a brand new password']);
    expect((await pool('owner').query('select 1 from app_private.login_throttle where email = $1', [user.email])).rowCount).toBe(0);
    expect(await login('192.0.2.20', user.email, 'a brand new password')).toBe(user.id);
  });

  test('without app.client_address every caller is one client ("unknown"): it fails closed, not open', async () => {
    const user = await makeUser('db-unknown');
    for (let i = 0; i < 5; i++) await login(undefined, user.email, `wrong ${i}`);
    expect(await row(user.email, 'unknown')).toEqual({ failures: 5 });
    expect((await pgError(login(undefined, user.email, PASSWORD))).code).toBe('AT417');
  });

  test('failures over a day old are forgotten: the count starts again', async () => {
    const user = await makeUser('db-forget');
    await pool('owner').query(
      `insert into app_private.login_throttle (email, client, failures, last_failed_at, next_attempt_at) values ($1, '192.0.2.30', 30, now() - interval '25 hours', now() - interval '24 hours')`,
      [user.email],
    );
    expect(await login('192.0.2.30', user.email, 'wrong')).toBeNull();
    expect(await row(user.email, '192.0.2.30')).toEqual({ failures: 1 });
  });

  test('the table stays bounded: every failure deletes up to 10 rows whose last failure is over a day old', async () => {
    // Counts every stale row: the daily retention's tests (tests/retention-growing.test.ts) sweep
    // the same rows, so the two take turns.
    await takingTurns('login_throttle', async () => {
      const stale = unique('stale');
      await pool('owner').query(
        `insert into app_private.login_throttle (email, client, failures, last_failed_at, next_attempt_at)
         select $1 || i || '@example.com', '192.0.2.40', 3, now() - interval '2 days', now() - interval '2 days' from generate_series(1, 30) i`,
        [stale],
      );
      const staleLeft = async () => Number((await pool('owner').query<{ n: string }>(`select count(*) as n from app_private.login_throttle where last_failed_at < now() - interval '1 day'`)).rows[0].n);
      const before = await staleLeft();
      expect(before).toBeGreaterThanOrEqual(30);
      for (let i = 0; i < 3; i++) await login('192.0.2.41', `${unique('nobody')}@example.com`, 'wrong');
      expect(await staleLeft()).toBe(Math.max(0, before - 30));
    });
  });

  test('the visitor can neither read nor change the throttle', async () => {
    for (const sql of ['select * from app_private.login_throttle', `delete from app_private.login_throttle`, `select app_private.login_delay(10)`]) {
      expect((await pgError(asClient('192.0.2.50', sql, []))).code).toBe('42501');
    }
  });
});
