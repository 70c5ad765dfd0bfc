// Sign-up by email (sql/functions/registration.sql; register and confirmRegistration in
// src/http/auth-mutations.ts): register answers the same for every address, after the same
// bcrypt work, and emails a confirmation link (new address) or a note to the account's owner
// (existing address); confirmRegistration, with the emailed token and the password given at
// sign-up, creates the account and signs in. Then the proof that none of login, register and
// requestPasswordReset tells over HTTP whether an address has an account.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Atrium } from '../src/index.ts';
import { AUTH_PAYLOAD_FIELDS, confirmationTokenIn, errorCode, gql, startTestApp, type GraphQLResponse } from './support/app.ts';
import { asVisitor, closePools, pgError, pool, signUp, unique } from './support/db.ts';
import { one } from './support/fixtures.ts';
import { emailsOf } from './support/outbox.ts';
import { parseMessage } from './support/smtp.ts';

afterAll(closePools);

const anonymous = {};
const PASSWORD = 'correct horse battery';

/** register in the database, as the API runs it; the emails it enqueues and what it stored (read as the owner inside the transaction). */
async function register(email: string, options: { password?: string; name?: string; commit?: boolean } = {}) {
  return emailsOf(
    anonymous,
    async (c) => {
      const { ok } = await one<{ ok: boolean }>(c, 'select app_private.request_registration($1, $2, $3) as ok', [email, options.password ?? PASSWORD, options.name ?? 'New Person']);
      await c.query('reset role');
      const { rows } = await c.query<{ id: string; email: string; name: string | null; password_hash: string | null; token_hash: Buffer | null; expires_at: Date; secrets: { token: string } | null }>(
        `select r.id, r.email, r.name, r.password_hash, r.token_hash, r.expires_at, s.secrets
         from app_private.registrations r left join app_private.email_secrets s on s.message_key = 'registration:' || r.id
         where r.email = lower(btrim($1)) order by r.created_at`,
        [email],
      );
      return { ok, rows };
    },
    { commit: options.commit },
  );
}

const confirm = (token: string, password = PASSWORD) =>
  asVisitor({}, (c) => one<{ user_id: string; session_id: string; refresh_token: string }>(c, 'select * from app_private.confirm_registration($1, $2)', [token, password]), { commit: true });

/** A committed sign-up request for a new address; its token (as the worker would read it). */
async function pending(label: string, password = PASSWORD) {
  const email = `${unique(label)}@example.com`;
  const { result } = await register(email, { password, commit: true });
  return { email, id: result.rows[0].id, token: result.rows[0].secrets!.token };
}

const usersWith = async (email: string) => (await pool('owner').query('select id from app_public.users where email = $1', [email])).rowCount;

describe('register (app_private.request_registration)', () => {
  test('a new address gets one confirmation email; only hashes are kept (bcrypt password, SHA-256 token); the job carries no token', async () => {
    const email = `${unique('new')}@example.com`;
    const { result, emails } = await register(`  ${email.toUpperCase()} `);
    expect(result.ok).toBe(true);
    expect(result.rows).toHaveLength(1);
    const [row] = result.rows;
    expect(row).toMatchObject({ email, name: 'New Person' });
    expect(row.password_hash).toMatch(/^\$2a\$10\$/);
    expect(row.password_hash).not.toContain(PASSWORD);
    const token = row.secrets!.token;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const expected = (await pool('owner').query<{ h: string }>(`select encode(public.digest($1, 'sha256'), 'hex') as h`, [token])).rows[0].h;
    expect(row.token_hash!.toString('hex')).toBe(expected);
    expect(row.expires_at.getTime() - Date.now()).toBeGreaterThan(23 * 3600_000);
    expect(emails).toHaveLength(1);
    expect(emails[0].payload).toEqual({ template: 'registration_confirm', to: email, data: { name: 'New Person', email, valid_for: '24 hours' }, message_key: `registration:${row.id}`, has_secrets: true });
    expect(JSON.stringify(emails)).not.toContain(token);
    expect(JSON.stringify(emails)).not.toContain(PASSWORD);
    expect(await usersWith(email)).toBe(0); // no account before the link is used
  });

  test('an address with an account gets a note to its owner instead: no token, no second account, the password untouched', async () => {
    const user = await signUp('existing');
    const { result, emails } = await register(user.email.toUpperCase(), { password: 'a different password', name: 'Impostor' });
    expect(result.ok).toBe(true);
    expect(result.rows).toEqual([expect.objectContaining({ email: user.email, name: null, password_hash: null, token_hash: null, secrets: null })]);
    expect(emails).toHaveLength(1);
    expect(emails[0].payload).toEqual({ template: 'registration_exists', to: user.email, data: { name: user.name, email: user.email }, message_key: `registration_exists:${result.rows[0].id}` });
    expect(await usersWith(user.email)).toBe(1);
  });

  test('an account and a new address take the same bcrypt work, so the time taken does not tell them apart', async () => {
    const user = await signUp('timing');
    const timed = async (email: string) => {
      const started = process.hrtime.bigint();
      await asVisitor({}, (c) => c.query('select app_private.request_registration($1, $2, $3)', [email, PASSWORD, 'Timing']));
      return Number(process.hrtime.bigint() - started) / 1e6;
    };
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 7; i++) {
      known.push(await timed(user.email));
      unknown.push(await timed(`${unique('timing-new')}@example.com`));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    // bcrypt (cost 10) dominates both; without it one branch would be some 50 times faster.
    const ratio = median(known) / median(unknown);
    expect({ ratio: Math.round(ratio * 100) / 100, inBounds: ratio > 1 / 3 && ratio < 3 }).toMatchObject({ inBounds: true });
  });

  test('bad input is refused before any account is looked at: the same codes for every address', async () => {
    const user = await signUp('bad-input');
    for (const email of [user.email, `${unique('fresh')}@example.com`]) {
      expect((await pgError(register(email, { password: 'short' }))).code).toBe('AT413'); // WEAK_PASSWORD
      expect((await pgError(register(email, { password: 'x'.repeat(73) }))).code).toBe('AT413');
      expect((await pgError(register(email, { name: ' ' }))).code).toBe('22023'); // INVALID_VALUE
      expect((await pgError(register(email, { name: 'n'.repeat(201) }))).code).toBe('22023');
    }
    expect((await pgError(register('not-an-email'))).code).toBe('AT414'); // INVALID_EMAIL
  });

  test('at most one email per address every 5 minutes; a newer request replaces the older one, whose link stops working', async () => {
    const first = await pending('rate');
    expect((await register(first.email, { commit: true })).emails).toEqual([]); // too soon: nothing new
    await pool('owner').query(`update app_private.registrations set created_at = now() - interval '6 minutes' where email = $1`, [first.email]);
    const again = await register(first.email, { password: 'the second password', commit: true });
    expect(again.emails).toHaveLength(1);
    expect(again.result.rows).toHaveLength(1); // the older request is gone, and its token with it
    expect((await pool('owner').query('select 1 from app_private.email_secrets where message_key = $1', [`registration:${first.id}`])).rowCount).toBe(0);
    expect((await pgError(confirm(first.token))).code).toBe('AT491');
    await confirm(again.result.rows[0].secrets!.token, 'the second password');
    expect(await usersWith(first.email)).toBe(1);
  });

  test('an address with an account also gets at most one note every 5 minutes', async () => {
    const user = await signUp('noted');
    expect((await register(user.email, { commit: true })).emails).toHaveLength(1);
    expect((await register(user.email, { commit: true })).emails).toEqual([]);
  });

  test('expired links\' secrets and old requests are purged daily (worker only); live ones stay', async () => {
    const live = await pending('purge-live');
    const old = await pending('purge-old');
    await pool('owner').query(`update app_private.email_secrets set expires_at = now() - interval '1 second' where message_key = $1`, [`registration:${old.id}`]);
    await pool('owner').query(`update app_private.registrations set expires_at = now() - interval '2 days' where id = $1`, [old.id]);
    expect((await pgError(asVisitor({}, (c) => c.query('select app_private.purge_expired_secrets()')))).code).toBe('42501');
    const purged = (await pool('worker').query<{ n: number }>('select app_private.purge_expired_secrets() as n')).rows[0].n;
    expect(purged).toBeGreaterThanOrEqual(2);
    const left = async (id: string) =>
      (await pool('owner').query(`select (select count(*) from app_private.registrations where id = $1)::int + (select count(*) from app_private.email_secrets where message_key = 'registration:' || $1)::int as n`, [id])).rows[0].n;
    expect(await left(old.id)).toBe(0);
    // The live request stays, and so does its secret — unless a worker of another test file sent
    // its email meanwhile (sending deletes the secret, sql/functions/email.sql): then it was sent.
    const sent = async (id: string) =>
      (await pool('owner').query(`select 1 from app_private.email_messages where message_key = 'registration:' || $1 and sent_at is not null`, [id])).rowCount === 1;
    const stayed = await left(live.id);
    expect(stayed === 2 || (stayed === 1 && (await sent(live.id)))).toBe(true);
  });

  test('the requests and their tokens are out of the visitor\'s reach, and the API cannot make an account without the email', async () => {
    expect((await pgError(asVisitor({}, (c) => c.query('select * from app_private.registrations')))).code).toBe('42501');
    expect((await pgError(asVisitor({}, (c) => c.query('select * from app_private.email_secrets')))).code).toBe('42501');
    expect((await pgError(asVisitor({}, (c) => c.query(`select app_private.create_account('x@example.com', 'long enough pw', 'X')`)))).code).toBe('42501');
  });
});

describe('confirmRegistration (app_private.confirm_registration)', () => {
  test('the token and the password given at sign-up create the account and sign in; the token works once', async () => {
    const { email, token } = await pending('confirm');
    const grant = await confirm(token);
    expect(grant.user_id).toEqual(expect.any(String));
    expect(grant.refresh_token).toEqual(expect.any(String));
    expect((await pool('owner').query('select email, name from app_public.users where id = $1', [grant.user_id])).rows).toEqual([{ email, name: 'New Person' }]);
    expect((await pool('owner').query('select 1 from app_private.registrations where email = $1', [email])).rowCount).toBe(0);
    // The password given at sign-up is the account's.
    const login = await asVisitor({}, (c) => one<{ user_id: string | null }>(c, 'select user_id from app_private.login($1, $2)', [email, PASSWORD]), { commit: true });
    expect(login.user_id).toBe(grant.user_id);
    expect((await pgError(confirm(token))).code).toBe('AT491'); // REGISTRATION_TOKEN_INVALID
  });

  test('a link alone does not make an account: without the password given at sign-up it is refused, and stays usable', async () => {
    // Someone signs up with another person's address; that person follows the link with their own password.
    const { email, token } = await pending('hijack', 'the stranger knows this');
    expect((await pgError(confirm(token, 'the owner of the address'))).code).toBe('AT410'); // INVALID_CREDENTIALS
    expect(await usersWith(email)).toBe(0);
    await confirm(token, 'the stranger knows this');
    expect(await usersWith(email)).toBe(1);
  });

  test('unknown and expired tokens are refused with stable codes', async () => {
    expect((await pgError(confirm('no-such-token'))).code).toBe('AT491');
    const { token, email } = await pending('expired');
    await pool('owner').query(`update app_private.registrations set expires_at = now() - interval '1 second' where email = $1`, [email]);
    expect((await pgError(confirm(token))).code).toBe('AT492'); // REGISTRATION_TOKEN_EXPIRED
  });

  test('an address that got an account meanwhile is refused with EMAIL_TAKEN (only its owner holds the token): no second account', async () => {
    const { email, token } = await pending('taken');
    await pool('owner').query(`select app_private.create_account($1, 'another password', 'First')`, [email]);
    expect((await pgError(confirm(token))).code).toBe('AT412');
    expect(await usersWith(email)).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------

describe('over HTTP, with the worker sending the emails', () => {
  let app: Atrium;
  let url: string;

  beforeAll(async () => {
    app = await startTestApp({ worker: true });
    url = app.url!;
  }, 60_000);
  afterAll(async () => {
    await app?.stop();
  });

  /** The newest email of `template` the worker sent to `email`, as written to its file. */
  async function emailTo(email: string, template: string) {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { rows } = await pool('owner').query<{ transport_detail: string }>(
        `select transport_detail from app_private.email_messages where recipient = $1 and template = $2 and sent_at is not null order by sent_at desc limit 1`,
        [email, template],
      );
      if (rows.length > 0) return parseMessage(fs.readFileSync(rows[0].transport_detail, 'utf8'));
      if (Date.now() > deadline) throw new Error(`no ${template} email to ${email} after 20 s`);
      await sleep(100);
    }
  }

  const registerOverHttp = (email: string, password = PASSWORD) =>
    gql(url, 'mutation($input: RegisterInput!) { register(input: $input) { requested } }', { input: { email, password, name: 'Newcomer' } });

  test('register → the confirmation email\'s link → confirmRegistration signs in; an existing account gets a note, not a link', async () => {
    const email = `${unique('newcomer')}@example.com`;
    expect(await registerOverHttp(email)).toEqual({ status: 200, data: { register: { requested: true } } });
    const message = await emailTo(email, 'registration_confirm');
    expect(message.headers.subject).toBe('Confirm your Atrium account');
    expect(message.text).toContain('Hello Newcomer,');
    const token = confirmationTokenIn(message.text);
    expect(message.text).toContain(`\n${token}\n`); // also on a line of its own, to copy
    expect(message.html).toContain(`/confirm-registration?token=${encodeURIComponent(token)}`);
    const confirmMutation = `mutation($input: ConfirmRegistrationInput!) { confirmRegistration(input: $input) { ${AUTH_PAYLOAD_FIELDS} } }`;
    const wrong = await gql(url, confirmMutation, { input: { token, password: 'not the password' } });
    expect(errorCode(wrong)).toBe('INVALID_CREDENTIALS');
    const confirmed = await gql<{ confirmRegistration: { accessToken: string; userId: string } }>(url, confirmMutation, { input: { token, password: PASSWORD } });
    expect(confirmed.errors).toBeUndefined();
    const me = await gql<{ viewer: { email: string; name: string } }>(url, '{ viewer { email name } }', {}, confirmed.data!.confirmRegistration.accessToken);
    expect(me.data?.viewer).toEqual({ email, name: 'Newcomer' });
    expect(errorCode(await gql(url, confirmMutation, { input: { token, password: PASSWORD } }))).toBe('REGISTRATION_TOKEN_INVALID');

    // The same address again: the same answer; its owner is told, and nothing else happens.
    expect(await registerOverHttp(email, 'someone else\'s password')).toEqual({ status: 200, data: { register: { requested: true } } });
    await pool('owner').query(`update app_private.registrations set created_at = now() - interval '6 minutes' where email = $1`, [email]);
    expect(await registerOverHttp(email, 'someone else\'s password')).toEqual({ status: 200, data: { register: { requested: true } } });
    const note = await emailTo(email, 'registration_exists');
    expect(note.headers.subject).toBe('Someone tried to sign up for Atrium with your address');
    expect(note.text).toContain('/reset-password');
    expect(note.text).not.toMatch(/token=/);
  });

  describe('no answer tells whether an address has an account', () => {
    /** The whole answer: HTTP status, data and errors (message, code, status, path), nothing left out. */
    const answer = (res: GraphQLResponse) => JSON.stringify(res);
    let known: string;
    beforeAll(async () => {
      known = (await signUp('oracle')).email;
    });
    const fresh = () => `${unique('nobody')}@example.com`;

    test('login: a wrong password for an account and any password for no account get the same answer', async () => {
      const mutation = `mutation($input: LoginInput!) { login(input: $input) { ${AUTH_PAYLOAD_FIELDS} } }`;
      const forAccount = await gql(url, mutation, { input: { email: known, password: 'wrong password' } });
      const forNobody = await gql(url, mutation, { input: { email: fresh(), password: 'wrong password' } });
      expect(errorCode(forAccount)).toBe('INVALID_CREDENTIALS');
      expect(answer(forAccount)).toBe(answer(forNobody));
    });

    test('register: an address with an account and one without get the same answer, for good and bad input alike', async () => {
      const mutation = 'mutation($input: RegisterInput!) { register(input: $input) { requested } }';
      for (const input of [{ password: PASSWORD, name: 'N' }, { password: 'short', name: 'N' }, { password: PASSWORD, name: '' }]) {
        const forAccount = await gql(url, mutation, { input: { ...input, email: known } });
        const forNobody = await gql(url, mutation, { input: { ...input, email: fresh() } });
        expect(answer(forAccount)).toBe(answer(forNobody));
      }
    });

    test('requestPasswordReset: an address with an account and one without get the same answer', async () => {
      const mutation = 'mutation($email: String!) { requestPasswordReset(input: { email: $email }) { requested } }';
      const forAccount = await gql(url, mutation, { email: known });
      const forNobody = await gql(url, mutation, { email: fresh() });
      expect(forAccount).toEqual({ status: 200, data: { requestPasswordReset: { requested: true } } });
      expect(answer(forAccount)).toBe(answer(forNobody));
    });
  });
});
