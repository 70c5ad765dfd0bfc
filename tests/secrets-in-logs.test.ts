// No secret in a log line or a job row (src/log.ts; sql/functions/email.sql): pino's redaction
// list over the shapes the code logs, graphile-worker's own lines without job payloads, and, end
// to end with the API and a real worker logging at trace level, the sign-up, invitation and
// password-reset flows with every log line and every job row captured: none holds a token, a
// password or a session token, and the emails' links still work.
import { afterAll, beforeAll, describe, expect, jest, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { configureEmail } from '../src/email/service.ts';
import { startAtrium, type Atrium } from '../src/index.ts';
import { createLogger, graphileLogFactory, graphileMeta, REDACT_PATHS } from '../src/log.ts';
import { startWorker } from '../src/worker/index.ts';
import { AUTH_PAYLOAD_FIELDS, confirmationTokenIn, gql, type GraphQLResponse } from './support/app.ts';
import { closePools, createOrganization, pool, signUp, testConfig, unique, urlFor } from './support/db.ts';
import { parseMessage } from './support/smtp.ts';

afterAll(closePools);

/** A logger at `level` whose lines (JSON) go to `lines`, with Atrium's redaction list. */
function bufferLogger(level = 'trace') {
  const lines: string[] = [];
  return { lines, log: createLogger(level, 'test', { write: (line: string) => void lines.push(line) }) };
}

describe('the redaction list (pino redact, src/log.ts)', () => {
  const SECRET = 's3cret-value-do-not-log';

  test('secrets are redacted in every shape the code logs: the line itself, errors, headers, payloads, variables, child bindings', () => {
    const { lines, log } = bufferLogger();
    const pgLike = Object.assign(new Error('boom'), { code: 'XX000', token: SECRET, cause: Object.assign(new Error('inner'), { password: SECRET }) });
    log.info({ password: SECRET, newPassword: SECRET, refreshToken: SECRET, accessToken: SECRET, secret: SECRET, signingSecret: SECRET, connectionString: SECRET }, 'top level');
    log.error({ err: pgLike }, 'an error with secret-named fields');
    log.info({ req: { headers: { authorization: `Bearer ${SECRET}`, cookie: SECRET } }, headers: { Authorization: SECRET, 'set-cookie': SECRET } }, 'headers');
    log.info({ payload: { token: SECRET, data: { token: SECRET } }, data: { token: SECRET } }, 'a job payload');
    log.info({ variables: { input: { password: SECRET, token: SECRET, newPassword: SECRET } } }, 'GraphQL variables');
    log.child({ token: SECRET, webhookSecret: SECRET }).info('child bindings');
    expect(lines).toHaveLength(6);
    for (const line of lines) {
      expect(line).not.toContain(SECRET);
      expect(line).toContain('[REDACTED]');
    }
    // What is not a secret stays readable.
    log.info({ email: 'ada@example.com', template: 'password_reset', jobId: '42' }, 'facts');
    expect(JSON.parse(lines[6])).toMatchObject({ email: 'ada@example.com', template: 'password_reset', jobId: '42', msg: 'facts' });
  });

  test('the list names no path that starts with a wildcard (each would cost every line ~1.5 µs)', () => {
    expect(REDACT_PATHS.filter((p) => p.startsWith('*'))).toEqual([]);
    expect(REDACT_PATHS.length).toBeGreaterThan(100);
  });
});

describe('graphile-worker\'s own lines (graphileLogFactory)', () => {
  const job = (payload: unknown) => ({ id: '41', task_identifier: 'send_email', attempts: 1, max_attempts: 12, key: 'send_email:x', payload, run_at: new Date(), locked_by: 'w1' });
  const PAYLOAD_SECRET = 'payload-secret-value';

  test('a job becomes its facts (no payload); lists of jobs and failure specs their ids; errors under err; event payloads and options are left out', () => {
    const withSecret = { data: { link: `https://x/?t=${PAYLOAD_SECRET}` } };
    expect(graphileMeta({ job: job(withSecret), duration: 3.2, success: true })).toEqual({ job: { id: '41', task: 'send_email', attempts: 1, maxAttempts: 12 }, duration: 3.2, success: true });
    expect(graphileMeta({ jobs: [job(withSecret), job(withSecret)] })).toEqual({ jobs: ['41', '41'] });
    expect(graphileMeta({ specs: [{ job: job(withSecret), message: 'm', replacementPayload: withSecret }] })).toEqual({ jobs: ['41'] });
    const error = new Error('failed');
    expect(graphileMeta({ failure: true, job: job(withSecret), error })).toEqual({ failure: true, job: { id: '41', task: 'send_email', attempts: 1, maxAttempts: 12 }, err: error });
    expect(graphileMeta({ eventName: 'job:success', payload: { job: job(withSecret), ctx: {} }, options: { connectionString: 'postgres://u:p@h/d' }, parameters: [withSecret] })).toEqual({ eventName: 'job:success' });
  });

  test('the lines graphile-worker writes for a completed, failed and unreleasable job carry no payload, at the most verbose level', () => {
    const { lines, log } = bufferLogger();
    const write = graphileLogFactory(log)({ label: 'worker', workerId: 'w1' });
    write('info', 'Completed task 41 (send_email, 3.20ms) with success', { job: job({ secret: PAYLOAD_SECRET }), duration: 3.2, success: true });
    write('error', "Failed task 41 (send_email, 3.20ms, attempt 1 of 12) with error 'boom'", { failure: true, job: job({ secret: PAYLOAD_SECRET }), error: new Error('boom'), duration: 3.2 });
    write('error', "Failed to release job '41' after success; committing seppuku", { fatalError: new Error('gone'), job: job({ secret: PAYLOAD_SECRET }) });
    write('error', 'Emitting job:success raised an error', { error: new Error('x'), eventName: 'job:success', payload: { job: job({ secret: PAYLOAD_SECRET }) } });
    write('debug', 'Found task 41 (send_email)');
    expect(lines).toHaveLength(5);
    expect(lines.join('\n')).not.toContain(PAYLOAD_SECRET);
    expect(JSON.parse(lines[0])).toMatchObject({ label: 'worker', job: { id: '41', task: 'send_email' }, msg: expect.stringContaining('Completed task 41') });
  });

  test('with a real worker logging at trace, no line carries a job\'s payload: success, failure and permanent failure', async () => {
    const { lines, log } = bufferLogger();
    // Tasks only this worker has: the workers of other test files, sharing the queue, cannot take its jobs.
    const succeeds = unique('log_succeeds').replace(/-/g, '_');
    const fails = unique('log_fails').replace(/-/g, '_');
    const extraTasks = {
      [succeeds]: async () => undefined,
      [fails]: async () => {
        throw new Error('this task always fails');
      },
    };
    const worker = await startWorker({ connectionString: urlFor('worker'), concurrency: 2, log, crontab: false, extraTasks });
    try {
      const org = await createOrganization(await signUp('log-worker'), 'log-worker');
      const marker = unique('payload-marker');
      const { rows } = await pool('worker').query<{ id: string }>(
        `select (graphile_worker.add_job($3, json_build_object('organization_id', $1::uuid, 'note', $2::text))).id
         union all
         select (graphile_worker.add_job($4, json_build_object('organization_id', $1::uuid, 'note', $2::text), max_attempts => 1)).id`,
        [org, marker, succeeds, fails],
      );
      const deadline = Date.now() + 20_000;
      while ((await pool('worker').query('select 1 from graphile_worker._private_jobs where id = any($1) and (attempts = 0 or locked_at is not null)', [rows.map((r) => r.id)])).rowCount! > 0) {
        if (Date.now() > deadline) throw new Error('the jobs did not run');
        await sleep(50);
      }
      await pool('worker').query('delete from graphile_worker._private_jobs where id = any($1)', [rows.map((r) => r.id)]);
      const text = lines.join('\n');
      expect(text).toContain('Completed task'); // graphile-worker's own success line was written…
      expect(text).toContain('Failed task'); // …and its failure line
      expect(text).not.toContain(marker); // …and neither shows the payload
    } finally {
      await worker.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// End to end: the API and a real worker in this process, on a database of their own (so that
// worker takes no other test file's jobs, and theirs none of these), logging at trace into a
// buffer; console output and stdout/stderr writes captured too; every row graphile-worker's job
// table receives copied by a trigger. Then sign-up, invitation and password reset, as people do.

describe('end to end: no token, password or session token in any log line or job row', () => {
  let app: Atrium;
  let url: string;
  let emailDir: string;
  const { lines, log } = bufferLogger('trace');
  const databaseName = `atrium_logs_${randomBytes(4).toString('hex')}`;
  const db: Record<'owner' | 'worker' | 'superuser', pg.Pool> = {} as never;
  const restore: Array<() => void> = [];

  beforeAll(async () => {
    // Anything written around the logger (a library's console.error, a stray write).
    for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const) {
      const spy = jest.spyOn(console, method).mockImplementation((...args: unknown[]) => void lines.push(`console.${method}: ${args.map((a) => (a instanceof Error ? `${a.message}\n${a.stack}` : typeof a === 'string' ? a : JSON.stringify(a))).join(' ')}`));
      restore.push(() => spy.mockRestore());
    }
    for (const stream of [process.stdout, process.stderr]) {
      const original = stream.write.bind(stream);
      stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
        lines.push(`${stream === process.stdout ? 'stdout' : 'stderr'}: ${String(chunk)}`);
        return original(chunk as string, ...(rest as []));
      }) as typeof stream.write;
      restore.push(() => void (stream.write = original as typeof stream.write));
    }
    emailDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-log-test-'));
    const config = testConfig({ DATABASE_URL: urlFor('superuser'), LOG_LEVEL: 'trace', EMAIL_DIR: path.join(emailDir, 'mail'), APP_URL: 'https://app.example.test' });
    app = await startAtrium(config, log, { api: true, worker: true, databaseName });
    url = app.url!;
    db.owner = new pg.Pool({ connectionString: app.db.ownerUrl, max: 2 });
    db.worker = new pg.Pool({ connectionString: app.db.workerUrl, max: 2 });
    db.superuser = new pg.Pool({ connectionString: app.db.superuserUrl!, max: 1 });
    // An idle connection of these pools is ended by the database's drop at the end (not an error).
    for (const p of Object.values(db)) p.on('error', () => undefined);
    // Every row written to the job table, as it was written.
    await db.superuser.query(`
      create table public.job_rows (row text not null);
      create function public.capture_job_row() returns trigger language plpgsql security definer set search_path = pg_catalog as $f$
      begin insert into public.job_rows (row) values (to_jsonb(new)::text); return null; end $f$;
      create trigger capture_job_row after insert or update on graphile_worker._private_jobs for each row execute function public.capture_job_row();
    `);
  }, 120_000);

  afterAll(async () => {
    await app?.stop();
    for (const undo of restore.splice(0).reverse()) undo();
    await Promise.all(Object.values(db).map((p) => p.end()));
    await pool('superuser').query(`drop database if exists ${databaseName} with (force)`);
    // The email service is the process's: back to the run's (other files in this process use it).
    configureEmail(testConfig().email, createLogger('silent'));
    fs.rmSync(emailDir, { recursive: true, force: true });
  });

  const ok = async <T>(query: string, variables: Record<string, unknown> = {}, token?: string): Promise<T> => {
    const res: GraphQLResponse<T> = await gql<T>(url, query, variables, token);
    expect(res.errors).toBeUndefined();
    return res.data!;
  };

  /** The newest email of `template` sent to `to`, once the worker has sent it. */
  async function emailTo(to: string, template: string) {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { rows } = await db.owner.query<{ transport_detail: string }>(
        `select transport_detail from app_private.email_messages where recipient = $1 and template = $2 and sent_at is not null order by sent_at desc limit 1`,
        [to, template],
      );
      if (rows.length > 0) return parseMessage(fs.readFileSync(rows[0].transport_detail, 'utf8')).text;
      if (Date.now() > deadline) throw new Error(`no ${template} email to ${to}`);
      await sleep(100);
    }
  }
  const linkToken = (text: string, route: string) => decodeURIComponent(new RegExp(`/${route}\\?token=([A-Za-z0-9_%-]+)`).exec(text)![1]);

  test('sign-up (with a failed first send), invitation and password reset: the links work, and no secret reaches a log line or a job row', async () => {
    const secrets: Record<string, string> = {};
    const ownerEmail = `${unique('log-owner')}@example.com`;
    const inviteeEmail = `${unique('log-invitee')}@example.com`;
    secrets.ownerPassword = 'owner password, never logged';
    secrets.inviteePassword = 'invitee password, never logged';
    secrets.newPassword = 'the new password, never logged';

    // 1. Sign-up; the first attempt to send the confirmation fails (the email folder is a file),
    //    so graphile-worker's failure lines and the retry's warning are exercised too.
    fs.writeFileSync(path.join(emailDir, 'mail'), 'not a folder');
    await ok('mutation($input: RegisterInput!) { register(input: $input) { requested } }', { input: { email: ownerEmail, password: secrets.ownerPassword, name: 'Log Owner' } });
    const failedOnce = async () =>
      ((await db.owner.query(`select 1 from graphile_worker._private_jobs where key like 'send_email:registration:%' and payload->>'to' = $1 and last_error is not null`, [ownerEmail])).rowCount ?? 0) > 0;
    for (const deadline = Date.now() + 30_000; !(await failedOnce()); await sleep(100)) if (Date.now() > deadline) throw new Error('the first send did not fail');
    fs.rmSync(path.join(emailDir, 'mail'));
    await db.worker.query(`update graphile_worker._private_jobs set run_at = now() where key like 'send_email:registration:%' and payload->>'to' = $1`, [ownerEmail]);
    secrets.ownerConfirmation = confirmationTokenIn(await emailTo(ownerEmail, 'registration_confirm'));
    const owner = (await ok<{ confirmRegistration: Record<string, string> }>(`mutation($input: ConfirmRegistrationInput!) { confirmRegistration(input: $input) { ${AUTH_PAYLOAD_FIELDS} } }`, { input: { token: secrets.ownerConfirmation, password: secrets.ownerPassword } })).confirmRegistration;
    secrets.ownerRefresh = owner.refreshToken;
    const orgId = (await ok<any>('mutation { createOrganization(input: { name: "Log Studio" }) { organization { rowId } } }', {}, owner.accessToken)).createOrganization.organization.rowId;
    const scoped = (await ok<any>('mutation($o: UUID) { switchOrganization(input: { organizationId: $o }) { accessToken } }', { o: orgId }, owner.accessToken)).switchOrganization.accessToken;
    secrets.ownerAccess = scoped;

    // 2. Invitation: the invitee signs up, and accepts with the link from the invitation email.
    const invited = (await ok<any>('mutation($e: String!) { inviteMember(input: { email: $e, role: member }) { invitationToken { token } } }', { e: inviteeEmail }, scoped)).inviteMember.invitationToken.token;
    secrets.invitation = linkToken(await emailTo(inviteeEmail, 'invitation'), 'invitations/accept');
    expect(secrets.invitation).toBe(invited);
    await ok('mutation($input: RegisterInput!) { register(input: $input) { requested } }', { input: { email: inviteeEmail, password: secrets.inviteePassword, name: 'Log Invitee' } });
    secrets.inviteeConfirmation = confirmationTokenIn(await emailTo(inviteeEmail, 'registration_confirm'));
    const invitee = (await ok<{ confirmRegistration: Record<string, string> }>(`mutation($input: ConfirmRegistrationInput!) { confirmRegistration(input: $input) { ${AUTH_PAYLOAD_FIELDS} } }`, { input: { token: secrets.inviteeConfirmation, password: secrets.inviteePassword } })).confirmRegistration;
    secrets.inviteeAccess = invitee.accessToken;
    const accepted = await ok<any>('mutation($t: String!) { acceptInvitation(input: { token: $t }) { organizationMember { role organizationId } } }', { t: secrets.invitation }, invitee.accessToken);
    expect(accepted.acceptInvitation.organizationMember).toEqual({ role: 'member', organizationId: orgId });

    // 3. Password reset of the invitee, with the link from the reset email.
    await ok('mutation($e: String!) { requestPasswordReset(input: { email: $e }) { requested } }', { e: inviteeEmail });
    secrets.reset = linkToken(await emailTo(inviteeEmail, 'password_reset'), 'reset-password');
    const reset = (await ok<{ resetPassword: Record<string, string> }>(`mutation($t: String!, $p: String!) { resetPassword(input: { token: $t, newPassword: $p }) { ${AUTH_PAYLOAD_FIELDS} } }`, { t: secrets.reset, p: secrets.newPassword })).resetPassword;
    secrets.resetRefresh = reset.refreshToken;
    expect((await gql(url, 'mutation($e: String!, $p: String!) { login(input: { email: $e, password: $p }) { userId } }', { e: inviteeEmail, p: secrets.newPassword })).errors).toBeUndefined();

    // Let the worker finish what these flows queued, so its last lines are in the buffer.
    await sleep(500);
    const logged = lines.join('\n');
    const jobRows = (await db.superuser.query<{ row: string }>('select row from public.job_rows')).rows.map((r) => r.row).join('\n');

    // The capture is real: debug lines, graphile-worker's own lines, the failed send and its
    // retry, the emails, and the jobs' rows (each check names what it looked for, not the text).
    const expectedLines = ['"level":20', 'Completed task', 'Failed task', 'job failed; will retry', 'earlier attempt did not record its outcome', 'email sent'];
    expect(expectedLines.filter((s) => !logged.includes(s))).toEqual([]);
    const expectedRows = ['"template": "registration_confirm"', '"template": "invitation"', '"template": "password_reset"', 'password_reset_request', '"has_secrets": true'];
    expect(expectedRows.filter((s) => !jobRows.includes(s))).toEqual([]);

    const found = Object.entries(secrets).filter(([, value]) => logged.includes(value) || jobRows.includes(value)).map(([name]) => name);
    expect(found).toEqual([]);
  }, 120_000);
});
