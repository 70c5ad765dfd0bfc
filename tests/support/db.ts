// Helpers for tests that talk to the run's database (provisioned by global-setup.ts).
// Every test creates its own users and organizations with unique names, so test files are
// independent of each other and of their order.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loadConfig, type Config } from '../../src/config.ts';
import { withCredentials } from '../../src/db/bootstrap.ts';

export type Role = 'owner' | 'authenticator' | 'visitor' | 'worker' | 'producer';

export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({ ...process.env, PORT: '0', ...overrides });
}

export const roleName = (role: Role): string => process.env[`DATABASE_${role.toUpperCase()}`]!;

/** Connection string for a login role (owner, authenticator, worker) or the superuser. */
export function urlFor(role: Exclude<Role, 'visitor' | 'producer'> | 'superuser'): string {
  const url = process.env.DATABASE_URL!;
  if (role === 'superuser') return url;
  return withCredentials(url, roleName(role), process.env[`DATABASE_${role.toUpperCase()}_PASSWORD`]);
}

const pools = new Map<string, pg.Pool>();

export function pool(role: Exclude<Role, 'visitor' | 'producer'> | 'superuser'): pg.Pool {
  let p = pools.get(role);
  if (!p) {
    p = new pg.Pool({ connectionString: urlFor(role), max: 4 });
    p.on('error', () => undefined);
    // A connection lost while checked out between queries (a server restart) is not a crash.
    p.on('connect', (client) => client.on('error', () => undefined));
    pools.set(role, p);
  }
  return p;
}

export async function closePools(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  await Promise.all(all.map((p) => p.end()));
}

export const unique = (label: string): string => `${label}-${randomBytes(4).toString('hex')}`;

export interface Session {
  userId?: string;
  sessionId?: string;
  orgId?: string;
}

/** Runs `fn` in a transaction on `role`'s connection whose settings are `settings` (set LOCAL). */
export async function inTransaction<T>(role: 'authenticator' | 'worker' | 'superuser', settings: Record<string, string>, fn: (client: pg.PoolClient) => Promise<T>, commit: boolean): Promise<T> {
  const client = await pool(role).connect();
  try {
    await client.query('begin');
    await client.query('select set_config(key, value, true) from json_each_text($1)', [JSON.stringify(settings)]);
    const result = await fn(client);
    await client.query(commit ? 'commit' : 'rollback');
    return result;
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/**
 * Runs `fn` exactly as an API request would: on the authenticator's connection, inside a
 * transaction, as the visitor role with the session settings. Rolled back unless `commit`.
 */
export function asVisitor<T>(session: Session, fn: (client: pg.PoolClient) => Promise<T>, options: { commit?: boolean } = {}): Promise<T> {
  const settings = { role: roleName('visitor'), 'app.user_id': session.userId ?? '', 'app.session_id': session.sessionId ?? '', 'app.org_id': session.orgId ?? '' };
  return inTransaction('authenticator', settings, fn, options.commit ?? false);
}

/** Runs `fn` on the worker's connection inside one organization (as a task does); rolled back. */
export function asWorker<T>(orgId: string | null, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction('worker', { 'app.org_id': orgId ?? '' }, fn, false);
}

export interface User {
  userId: string;
  sessionId: string;
  email: string;
  name: string;
}

export async function signUp(label = 'user', email = `${unique(label)}@example.com`): Promise<User> {
  const name = `Test ${label}`;
  // Directly (the owner's app_private.create_account): the API's sign-up confirms by email.
  const { rows } = await pool('owner').query('select user_id, session_id from app_private.create_account($1, $2, $3)', [email, 'correct horse battery', name]);
  return { userId: rows[0].user_id, sessionId: rows[0].session_id, email, name };
}

export const sessionOf = (user: User, orgId?: string): Session => ({ userId: user.userId, sessionId: user.sessionId, orgId });

export async function createOrganization(owner: User, label = 'org'): Promise<string> {
  // A deadlock with another test file's transaction (40P01: DEADLOCK, "retry it" in docs/ERRORS.md)
  // is retried, as a client does.
  for (let attempt = 1; ; attempt++) {
    try {
      const { rows } = await asVisitor(sessionOf(owner), (c) => c.query('select id from app_public.create_organization($1)', [unique(label)]), { commit: true });
      return rows[0].id;
    } catch (error) {
      if ((error as { code?: string }).code !== '40P01' || attempt === 3) throw error;
    }
  }
}

/** Invites a new user to `orgId` with `role` (by `inviter`, an owner or admin) and accepts. */
export async function addMember(orgId: string, inviter: User, role: 'owner' | 'admin' | 'member' | 'viewer', label: string = role): Promise<User> {
  const user = await signUp(label);
  const { rows } = await asVisitor(sessionOf(inviter, orgId), (c) => c.query('select token from app_public.invite_member($1, $2)', [user.email, role]), { commit: true });
  await asVisitor(sessionOf(user), (c) => c.query('select app_public.accept_invitation($1)', [rows[0].token]), { commit: true });
  return user;
}

/** Expects `promise` to reject with PostgreSQL error `code` (SQLSTATE); returns the error. */
export async function pgError(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    return error as { code: string; message: string };
  }
  throw new Error('expected a database error, but the statement succeeded');
}

/**
 * Runs `fn` while holding the advisory lock named `name`, on a connection of its own: tests of
 * different files that sweep or count the same shared rows (the sign-in throttle's rows over a
 * day old, which the daily retention removes) take turns instead of seeing each other's locks.
 */
export async function takingTurns<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const client = await pool('owner').connect();
  try {
    await client.query('select pg_advisory_lock(hashtext($1))', [name]);
    return await fn();
  } finally {
    await client.query('select pg_advisory_unlock(hashtext($1))', [name]).catch(() => undefined);
    client.release();
  }
}

/** The generated columns of `app_public.<table>` (an insert may not name them: 428C9). */
export async function generatedColumns(table: string): Promise<string[]> {
  const { rows } = await pool('owner').query<{ name: string }>(
    `select attname as name from pg_attribute where attrelid = $1::regclass and attnum > 0 and not attisdropped and attgenerated <> ''`,
    [`app_public.${table}`],
  );
  return rows.map((r) => r.name);
}

/** The SQLSTATE `sql` fails with (null if it succeeds), in a savepoint so the transaction goes on. */
export async function attempt(c: pg.PoolClient, sql: string, params: unknown[] = []): Promise<string | null> {
  await c.query('savepoint attempt');
  try {
    await c.query(sql, params);
    await c.query('release savepoint attempt');
    return null;
  } catch (error) {
    await c.query('rollback to savepoint attempt');
    return (error as { code: string }).code;
  }
}
