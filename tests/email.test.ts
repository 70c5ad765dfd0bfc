// Transactional email: templates (src/email/templates.ts), transports (src/email/transport.ts:
// SMTP for real against a local receiver, or .eml files), the send_email task's idempotency
// (src/worker/tasks/send_email.ts, app_private.email_messages), and the producers that enqueue
// it in the same transaction as their change (sql/functions/email.sql, auth.sql).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobHelpers } from 'graphile-worker';
import type pg from 'pg';
import { ConfigError, loadConfig, type EmailConfig } from '../src/config.ts';
import { makeEmailService, type EmailService } from '../src/email/service.ts';
import { fill, renderTemplate, TemplateError, templateNames } from '../src/email/templates.ts';
import { createEmailTransport, messageIdFor } from '../src/email/transport.ts';
import { createLogger } from '../src/log.ts';
import { PermanentJobError } from '../src/worker/permanent.ts';
import { makeSendEmail, payloadProblems } from '../src/worker/tasks/send_email.ts';
import { asVisitor, asWorker, closePools, createOrganization, pgError, pool, sessionOf, signUp, unique, type Session, type User } from './support/db.ts';
import { commitAs, one } from './support/fixtures.ts';
import { emailsOf, inRequest, jobsWithKey, type QueuedEmail } from './support/outbox.ts';
import { parseMessage, startSmtpServer, type SmtpServer } from './support/smtp.ts';

const log = createLogger('silent', 'test-email');
let tmp: string;
let smtp: SmtpServer;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-email-test-'));
  smtp = await startSmtpServer();
});
afterAll(async () => {
  await smtp?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
  await closePools();
});

const emailConfig = (overrides: Partial<EmailConfig> = {}): EmailConfig => ({
  smtpUrl: undefined,
  dir: fs.mkdtempSync(path.join(tmp, 'out-')),
  from: 'Atrium Test <no-reply@atrium.test>',
  appUrl: 'https://app.example.test',
  ...overrides,
});
const emlFiles = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.eml')) : []);

describe('templates', () => {
  const data = { inviter_name: 'Ada', organization_name: 'Northwind', email: 'new@example.com', role: 'member', token: 'tok-123', expires_on: 'March 1, 2030', app_url: 'https://app.example.test' };

  test('every template in templates/email has its three parts: the eight emails exist', async () => {
    expect(await templateNames()).toEqual(['budget_threshold', 'data_export_ready', 'invitation', 'invoice_sent', 'password_reset', 'proposal_sent', 'registration_confirm', 'registration_exists']);
  });

  test('renders subject, text and HTML from the files, with links on APP_URL', async () => {
    const email = await renderTemplate('invitation', data);
    expect(email.subject).toBe('Ada invited you to Northwind on Atrium');
    expect(email.text).toContain('https://app.example.test/invitations/accept?token=tok-123');
    expect(email.html).toContain('href="https://app.example.test/invitations/accept?token=tok-123"');
  });

  test('a missing variable is an error naming it, never a blank', async () => {
    const { token: _omitted, ...rest } = data;
    await expect(renderTemplate('invitation', rest)).rejects.toThrow(TemplateError);
    await expect(renderTemplate('invitation', rest)).rejects.toThrow(/\{\{token\}\}/);
    await expect(renderTemplate('invitation', { ...data, token: null })).rejects.toThrow(/no value for \{\{token\}\}/);
    expect(() => fill('Hi {{name}}', 'text', { name: { first: 'x' } })).toThrow(/must be a string, number or boolean/);
  });

  test('values are HTML-escaped in the HTML part only, URL-encoded with |url, one line in the subject', async () => {
    const hostile = { ...data, organization_name: '<script>alert("x")</script> & Co', token: 'a b&c' };
    const email = await renderTemplate('invitation', hostile);
    expect(email.html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co');
    expect(email.html).not.toContain('<script>');
    expect(email.text).toContain('<script>alert("x")</script> & Co');
    expect(email.html).toContain('token=a%20b%26c"');
    expect(email.text).toContain('token=a%20b%26c');
    expect(fill("{{v}}", 'html', { v: `'"` })).toBe('&#39;&quot;');
    expect(fill('Re: {{v}}', 'subject', { v: 'two\r\nlines' })).toBe('Re: two lines');
  });

  test('an unknown template and a malformed placeholder are errors', async () => {
    await expect(renderTemplate('no_such_email', data)).rejects.toThrow(/unknown email template "no_such_email"/);
    await expect(renderTemplate('../etc/passwd', data)).rejects.toThrow(/not a template name/);
    expect(() => fill('Hello {{ first name }}', 'text', { first: 'x' })).toThrow(/is not a placeholder/);
  });
});

describe('configuration', () => {
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig(env);
      return [];
    } catch (error) {
      return (error as ConfigError).problems;
    }
  };

  test('defaults: no SMTP, files in .data/email, a From address, links on localhost:<port>', () => {
    const config = loadConfig({ PORT: '4000' }, '/srv/atrium');
    expect(config.email).toEqual({ smtpUrl: undefined, dir: '/srv/atrium/.data/email', from: 'Atrium <no-reply@localhost>', appUrl: 'http://localhost:4000' });
    expect(loadConfig({ APP_URL: 'https://app.example.com/', EMAIL_DIR: '/tmp/mail', EMAIL_FROM: 'billing@example.com' }).email).toMatchObject({ appUrl: 'https://app.example.com', dir: '/tmp/mail', from: 'billing@example.com' });
  });

  test('bad values name their variable, and SMTP_URL is never echoed (it holds a password)', () => {
    const found = problems({ SMTP_URL: 'http://user:hunter2@mail.example.com', EMAIL_FROM: 'not an address', APP_URL: 'ftp://x' });
    expect(found).toHaveLength(3);
    expect(found.join('\n')).toMatch(/SMTP_URL must start with smtp:\/\/ or smtps:\/\//);
    expect(found.join('\n')).not.toContain('hunter2');
    expect(found.join('\n')).toMatch(/EMAIL_FROM="not an address"/);
    expect(found.join('\n')).toMatch(/APP_URL="ftp:\/\/x" must start with http/);
    expect(problems({ SMTP_URL: 'smtp://user:hunter2@[bad' }).join()).toMatch(/^SMTP_URL is not a valid URL/);
  });

  test('production needs SMTP_URL and APP_URL', () => {
    const found = problems({ NODE_ENV: 'production', DATABASE_URL: 'postgres://u:p@db/atrium', JWT_SECRET: 'x'.repeat(40) });
    expect(found).toEqual([
      'SMTP_URL is required when NODE_ENV=production (without it emails are only written to EMAIL_DIR)',
      'APP_URL is required when NODE_ENV=production (the links in emails point at it)',
    ]);
  });
});

const message = (to = 'client@example.com') => ({
  to,
  subject: 'Invoice 7 from Northwind',
  text: 'Hello,\nyour invoice is ready: https://app.example.test/portal/invoices/1\n',
  html: '<p>Hello, your <b>invoice</b> is ready.</p>',
  messageId: messageIdFor('invoice_sent:test', 'no-reply@atrium.test'),
  headers: { 'X-Atrium-Template': 'invoice_sent' },
});

describe('transports', () => {
  test('without SMTP_URL each message is a readable .eml file in EMAIL_DIR', async () => {
    const config = emailConfig({ dir: path.join(tmp, 'created-on-demand') });
    const transport = createEmailTransport(config, log);
    expect(transport.kind).toBe('folder');
    const delivery = await transport.send(message());
    expect(delivery.transport).toBe('folder');
    expect(path.dirname(delivery.detail)).toBe(config.dir);
    expect(emlFiles(config.dir)).toEqual([path.basename(delivery.detail)]);
    expect(path.basename(delivery.detail)).toMatch(/invoice_sent-client@example\.com-[0-9a-f]{6}\.eml$/);
    const parsed = parseMessage(fs.readFileSync(delivery.detail, 'utf8'));
    expect(parsed.headers).toMatchObject({
      from: 'Atrium Test <no-reply@atrium.test>',
      to: 'client@example.com',
      subject: 'Invoice 7 from Northwind',
      'message-id': `<${message().messageId}>`,
      'auto-submitted': 'auto-generated',
      'x-atrium-template': 'invoice_sent',
    });
    expect(parsed.text).toContain('your invoice is ready: https://app.example.test/portal/invoices/1');
    expect(parsed.html).toContain('<b>invoice</b>');
  });

  test('with SMTP_URL messages go to the SMTP server, logging in with the URL\'s credentials', async () => {
    const transport = createEmailTransport(emailConfig({ smtpUrl: `smtp://mailer:s3cret@127.0.0.1:${smtp.port}` }), log);
    expect(transport).toMatchObject({ kind: 'smtp', target: `smtp://127.0.0.1:${smtp.port}` });
    const before = smtp.messages.length;
    const delivery = await transport.send(message('smtp-one@example.com'));
    expect(delivery.transport).toBe('smtp');
    expect(delivery.detail).toMatch(/^250 2\.0\.0 OK queued as test-\d+/);
    const received = smtp.messages.slice(before);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ auth: { user: 'mailer', pass: 's3cret' }, from: 'no-reply@atrium.test', to: ['smtp-one@example.com'] });
    const parsed = parseMessage(received[0].data);
    expect(parsed.headers.subject).toBe('Invoice 7 from Northwind');
    expect(parsed.text).toContain('your invoice is ready');
  });

  test('a recipient the SMTP server refuses is an error (the job is retried)', async () => {
    const transport = createEmailTransport(emailConfig({ smtpUrl: `smtp://127.0.0.1:${smtp.port}` }), log);
    await expect(transport.send(message('rejected@example.com'))).rejects.toThrow(/550|refused|rejected/i);
  });

  test('an unreachable SMTP server is an error, not a silent success', async () => {
    const closed = await startSmtpServer();
    await closed.close();
    const transport = createEmailTransport(emailConfig({ smtpUrl: `smtp://127.0.0.1:${closed.port}` }), log);
    await expect(transport.send(message())).rejects.toThrow(/ECONNREFUSED|connect/i);
  });
});

// ---------------------------------------------------------------------------------------------
// The task, run with real database connections (the worker role) and job helpers of our own, so
// that it uses this file's transport, not the one of whichever worker is running.

interface LogLine {
  level: string;
  message: string;
  meta?: Record<string, unknown>;
}

function helpersFor(job: { id?: string; key?: string | null } = {}): { helpers: JobHelpers; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const at = (level: string) => (msg: string, meta?: Record<string, unknown>) => void logs.push({ level, message: msg, meta });
  const helpers = {
    job: { id: job.id ?? String(-Math.floor(Math.random() * 1e12)), key: job.key ?? null, task_identifier: 'send_email', attempts: 1, max_attempts: 12 },
    logger: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') },
    withPgClient: async <T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
      const client = await pool('worker').connect();
      try {
        return await fn(client);
      } finally {
        client.release();
      }
    },
  } as unknown as JobHelpers;
  return { helpers, logs };
}

const sentRecord = async (key: string) =>
  (await pool('owner').query('select organization_id, template, recipient, attempts, sent_at, message_id, transport, transport_detail from app_private.email_messages where message_key = $1', [key])).rows[0];

describe('the send_email task', () => {
  let owner: User;
  let orgId: string;
  const invitation = (key: string, to = `${unique('invitee')}@example.com`) => ({
    organization_id: orgId,
    template: 'invitation',
    to,
    data: { inviter_name: 'Ada', organization_name: 'Northwind', email: to, role: 'member', token: 'tok-abc', expires_on: 'March 1, 2030' },
    message_key: key,
  });

  beforeAll(async () => {
    owner = await signUp('email-task');
    orgId = await createOrganization(owner, 'email-task');
  });

  test('sends once: a retried job finds the message recorded as sent and sends nothing', async () => {
    const config = emailConfig();
    const task = makeSendEmail(() => makeEmailService(config, log));
    const key = unique('invitation:retry');
    const payload = invitation(key);
    const first = helpersFor();
    await task(payload, first.helpers);
    expect(emlFiles(config.dir)).toHaveLength(1);
    const record = await sentRecord(key);
    expect(record).toMatchObject({ organization_id: orgId, template: 'invitation', recipient: payload.to, attempts: 1, transport: 'folder', message_id: messageIdFor(key, config.from) });
    expect(record.sent_at).toBeInstanceOf(Date);
    expect(fs.existsSync(record.transport_detail)).toBe(true);
    expect(first.logs.find((l) => l.message === 'email sent')?.meta).toMatchObject({ template: 'invitation', to: payload.to, messageKey: key, organizationId: orgId, transport: 'folder', attempt: 1 });

    const retry = helpersFor();
    await task(payload, retry.helpers);
    expect(emlFiles(config.dir)).toHaveLength(1);
    expect(await sentRecord(key)).toMatchObject({ attempts: 1 });
    expect(retry.logs.map((l) => l.message)).toEqual(['email already sent: nothing to do']);
  });

  test('two jobs for one key at the same time send one message (the key is locked while sending)', async () => {
    const config = emailConfig();
    const task = makeSendEmail(() => makeEmailService(config, log));
    const payload = invitation(unique('invitation:concurrent'));
    await Promise.all([task(payload, helpersFor().helpers), task(payload, helpersFor().helpers), task(payload, helpersFor().helpers)]);
    expect(emlFiles(config.dir)).toHaveLength(1);
  });

  test('a failed send is not recorded as sent: the retry sends it, and says an earlier attempt was made', async () => {
    const config = emailConfig();
    let calls = 0;
    const working = makeEmailService(config, log);
    const flaky: EmailService = {
      ...working,
      transport: {
        ...working.transport,
        send: async (m) => {
          calls += 1;
          if (calls === 1) throw new Error('connection reset by the SMTP server');
          return working.transport.send(m);
        },
      },
    };
    const task = makeSendEmail(() => flaky);
    const key = unique('invitation:flaky');
    await expect(task(invitation(key), helpersFor().helpers)).rejects.toThrow('connection reset');
    expect(await sentRecord(key)).toMatchObject({ attempts: 1, sent_at: null });
    expect(emlFiles(config.dir)).toHaveLength(0);
    const retry = helpersFor();
    await task(invitation(key), retry.helpers);
    expect(await sentRecord(key)).toMatchObject({ attempts: 2, transport: 'folder' });
    expect(emlFiles(config.dir)).toHaveLength(1);
    expect(retry.logs.find((l) => l.level === 'warn')?.message).toMatch(/earlier attempt did not record its outcome/);
  });

  test('through SMTP_URL end to end: the task renders the template and the SMTP server receives it', async () => {
    const task = makeSendEmail(() => makeEmailService(emailConfig({ smtpUrl: `smtp://127.0.0.1:${smtp.port}` }), log));
    const to = `${unique('smtp-task')}@example.com`;
    const key = unique('invitation:smtp');
    await task(invitation(key, to), helpersFor().helpers);
    const received = smtp.messages.filter((m) => m.to.includes(to));
    expect(received).toHaveLength(1);
    const parsed = parseMessage(received[0].data);
    expect(parsed.headers.subject).toBe('Ada invited you to Northwind on Atrium');
    expect(parsed.text).toContain('https://app.example.test/invitations/accept?token=tok-abc');
    expect(await sentRecord(key)).toMatchObject({ transport: 'smtp', attempts: 1 });
    expect((await sentRecord(key)).transport_detail).toMatch(/^250 /);
  });

  test('the message key defaults to the job key: a retried job of the same key sends once', async () => {
    const config = emailConfig();
    const task = makeSendEmail(() => makeEmailService(config, log));
    const { message_key: _none, ...payload } = invitation('unused');
    const jobKey = unique('send_email:by-job-key');
    await task(payload, helpersFor({ key: jobKey }).helpers);
    await task(payload, helpersFor({ key: jobKey }).helpers);
    expect(emlFiles(config.dir)).toHaveLength(1);
    expect(await sentRecord(jobKey)).toMatchObject({ attempts: 1 });
  });

  test('a bad payload or an unknown template fails permanently, before anything is sent or recorded', async () => {
    const config = emailConfig();
    const task = makeSendEmail(() => makeEmailService(config, log));
    expect(payloadProblems({ template: 'invitation', to: 'a@b.example', data: {} })).toEqual([]);
    expect(payloadProblems({ template: '../x', to: 'a@b.example, c@d.example', data: [], organization_id: 'nope', message_key: '' })).toHaveLength(5);
    expect(payloadProblems(null)).toEqual(['the payload must be an object']);
    const bad = helpersFor();
    await expect(task({ template: 'invitation', to: 'not-an-address', data: {} }, bad.helpers)).rejects.toThrow(PermanentJobError);
    expect(bad.logs.find((l) => l.level === 'error')?.message).toMatch(/to must be one email address/);
    const unknownKey = unique('unknown');
    await expect(task({ ...invitation(unknownKey), template: 'newsletter' }, helpersFor().helpers)).rejects.toThrow(/unknown email template "newsletter"/);
    const missingKey = unique('missing');
    await expect(task({ ...invitation(missingKey), data: { organization_name: 'x' } }, helpersFor().helpers)).rejects.toThrow(PermanentJobError);
    expect(emlFiles(config.dir)).toHaveLength(0);
    expect(await sentRecord(unknownKey)).toBeUndefined();
    expect(await sentRecord(missingKey)).toBeUndefined();
  });

  test('a permanent failure uses up the job\'s attempts: graphile-worker will not retry it', async () => {
    const task = makeSendEmail(() => makeEmailService(emailConfig(), log));
    // A job nobody runs (far in the future), failed by our task as if a worker had picked it up.
    const { rows } = await pool('worker').query<{ id: string }>(
      `select id from graphile_worker.add_job('send_email', '{"template": "newsletter", "to": "x@example.com"}'::json, run_at => now() + interval '10 years', max_attempts => 12)`,
    );
    await pool('worker').query('update graphile_worker._private_jobs set attempts = 1 where id = $1', [rows[0].id]);
    await expect(task({ template: 'newsletter', to: 'x@example.com', data: {} }, helpersFor({ id: rows[0].id }).helpers)).rejects.toThrow(PermanentJobError);
    const job = (await pool('worker').query('select attempts, max_attempts from graphile_worker._private_jobs where id = $1', [rows[0].id])).rows[0];
    expect(job).toEqual({ attempts: 1, max_attempts: 1 });
    await pool('worker').query('delete from graphile_worker._private_jobs where id = $1', [rows[0].id]);
  });

  describe('one-time secrets (has_secrets): read inside the task, never in the payload', () => {
    const withSecret = async (key: string, token: string, expiresIn = '1 hour') => {
      await pool('owner').query(`insert into app_private.email_secrets (message_key, organization_id, secrets, expires_at) values ($1, $2, $3, now() + $4::interval)`, [key, orgId, { token }, expiresIn]);
      const { data, ...rest } = invitation(key);
      const { token: _none, ...withoutToken } = data;
      return { ...rest, data: withoutToken, has_secrets: true };
    };

    test('the task reads the token inside its transaction, the email carries the link, and the secret is deleted once recorded sent', async () => {
      const config = emailConfig();
      const task = makeSendEmail(() => makeEmailService(config, log));
      const key = unique('invitation:secret');
      const token = unique('tok');
      const payload = await withSecret(key, token);
      expect(JSON.stringify(payload)).not.toContain(token);
      const run = helpersFor();
      await task(payload, run.helpers);
      const files = emlFiles(config.dir);
      expect(files).toHaveLength(1);
      expect(parseMessage(fs.readFileSync(path.join(config.dir, files[0]), 'utf8')).text).toContain(`/invitations/accept?token=${token}`);
      expect(await sentRecord(key)).toMatchObject({ attempts: 1, transport: 'folder' });
      expect(await secretRows(key)).toBe(0);
      expect(JSON.stringify(run.logs)).not.toContain(token);
    });

    test('a send that fails keeps the secret for the retry, which sends the same link', async () => {
      const config = emailConfig();
      const working = makeEmailService(config, log);
      let calls = 0;
      const flaky: EmailService = { ...working, transport: { ...working.transport, send: async (m) => (++calls === 1 ? Promise.reject(new Error('451 try again later')) : working.transport.send(m)) } };
      const task = makeSendEmail(() => flaky);
      const key = unique('invitation:secret-retry');
      const token = unique('tok');
      const payload = await withSecret(key, token);
      await expect(task(payload, helpersFor().helpers)).rejects.toThrow('451');
      expect(await secretRows(key)).toBe(1);
      await task(payload, helpersFor().helpers);
      expect(parseMessage(fs.readFileSync(path.join(config.dir, emlFiles(config.dir)[0]), 'utf8')).text).toContain(`token=${token}`);
      expect(await secretRows(key)).toBe(0);
    });

    test('a message whose secret is gone (replaced, revoked, used) or expired is not sent, and nothing is recorded', async () => {
      const config = emailConfig();
      const task = makeSendEmail(() => makeEmailService(config, log));
      const gone = unique('invitation:gone');
      const { has_secrets: _flag, ...base } = await withSecret(unique('invitation:unused'), 'x');
      const run = helpersFor();
      await task({ ...base, message_key: gone, has_secrets: true }, run.helpers);
      expect(run.logs.map((l) => l.message)).toEqual(['email not sent: its link was replaced, revoked, used or has expired']);
      const expired = unique('invitation:expired');
      await task(await withSecret(expired, 'y', '-1 second'), helpersFor().helpers);
      expect(emlFiles(config.dir)).toEqual([]);
      expect(await sentRecord(gone)).toBeUndefined();
      expect(await sentRecord(expired)).toBeUndefined();
    });

    test('only the worker reads secrets, and only those of its organization', async () => {
      const key = unique('invitation:scoped-secret');
      await withSecret(key, 'z');
      expect((await pgError(asVisitor(sessionOf(owner, orgId), (c) => c.query('select app_private.email_secret($1)', [key])))).code).toBe('42501');
      expect((await pgError(asVisitor(sessionOf(owner, orgId), (c) => c.query('select * from app_private.email_secrets')))).code).toBe('42501');
      const read = (org: string) => asWorker(org, async (c) => (await c.query('select app_private.email_secret($1) as s', [key])).rows[0].s);
      expect(await read(orgId)).toEqual({ token: 'z' });
      expect(await read(await createOrganization(await signUp('secret-other'), 'secret-other'))).toBeNull();
      expect((await pgError(asWorker(orgId, (c) => c.query('select * from app_private.email_secrets')))).code).toBe('42501');
    });
  });

  test('only the worker records emails, and a key stays in its organization', async () => {
    const session = sessionOf(owner, orgId);
    expect((await pgError(asVisitor(session, (c) => c.query(`select app_private.claim_email('k', 'invitation', 'a@b.example')`)))).code).toBe('42501');
    const key = unique('invitation:scoped');
    await makeSendEmail(() => makeEmailService(emailConfig(), log))(invitation(key), helpersFor().helpers);
    const other = await createOrganization(await signUp('email-other'), 'email-other');
    const worker = await pool('worker').connect();
    try {
      await worker.query('begin');
      await worker.query("select set_config('app.org_id', $1, true)", [other]);
      expect((await pgError(worker.query(`select app_private.claim_email($1, 'invitation', 'a@b.example')`, [key]))).code).toBe('AT403');
    } finally {
      await worker.query('rollback');
      worker.release();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Producers: run as an API request would, then, still inside that transaction, look at the
// send_email jobs it enqueued (tests/support/outbox.ts). Rolled back: the jobs go with it.

const secretRows = async (messageKey: string) => (await pool('owner').query('select 1 from app_private.email_secrets where message_key = $1', [messageKey])).rowCount ?? 0;
const renders = (email: QueuedEmail) => renderTemplate(email.payload.template, { ...email.payload.data, app_url: 'https://app.example.test' });

describe('producers enqueue send_email in the same transaction', () => {
  let owner: User;
  let orgId: string;
  let session: Session;

  beforeAll(async () => {
    owner = await signUp('email-producer');
    orgId = await createOrganization(owner, 'email-producer');
    session = sessionOf(owner, orgId);
  });

  test('inviteMember: one email to the invitee; the token waits in email_secrets until the invitation expires, never in the job', async () => {
    const invitee = `${unique('invitee')}@example.com`;
    const { result, emails } = await emailsOf(session, async (c) => {
      const invitation = await one<{ invitation_id: string; token: string; expires_at: Date }>(c, `select (i).* from (select app_public.invite_member($1, 'admin') as i) x`, [invitee]);
      await c.query('reset role'); // the owner, to look at the secret in this transaction
      const secret = await one<{ secrets: Record<string, unknown>; expires_at: Date; organization_id: string }>(c, 'select secrets, expires_at, organization_id from app_private.email_secrets where message_key = $1', [`invitation:${invitation.invitation_id}`]);
      return { ...invitation, secret };
    });
    expect(emails).toHaveLength(1);
    expect(emails[0].key).toBe(`send_email:invitation:${result.invitation_id}`);
    expect(emails[0].payload).toMatchObject({ organization_id: orgId, template: 'invitation', to: invitee, message_key: `invitation:${result.invitation_id}`, has_secrets: true });
    expect(emails[0].payload.data).toMatchObject({ role: 'admin', inviter_name: owner.name, email: invitee });
    expect(emails[0].payload.data.token).toBeUndefined();
    expect(JSON.stringify(emails[0])).not.toContain(result.token);
    expect(result.secret).toEqual({ secrets: { token: result.token }, expires_at: result.expires_at, organization_id: orgId });
    const email = await renderTemplate('invitation', { ...emails[0].payload.data, ...result.secret.secrets, app_url: 'https://app.example.test' });
    expect(email.text).toContain(`https://app.example.test/invitations/accept?token=${encodeURIComponent(result.token)}`);
    // Rolled back: the invitation, its email and its secret are gone together.
    expect(await jobsWithKey(emails[0].key)).toBe(0);
    expect(await secretRows(`invitation:${result.invitation_id}`)).toBe(0);
  });

  test('a secret-looking key in an email\'s data is refused: secrets go in `secrets`, never in the job', async () => {
    const err = await pgError(pool('owner').query(`select app_private.enqueue_email('invitation', 'a@b.example', '{"email": "a@b.example", "token": "x"}', $1)`, [unique('k')]));
    expect(err.code).toBe('AT500');
    expect(err.message).toMatch(/secrets go in `secrets`/);
    for (const key of ['Password', 'refresh_token', 'signing_secret']) {
      expect((await pgError(pool('owner').query(`select app_private.enqueue_email('invitation', 'a@b.example', jsonb_build_object($2::text, 'x'), $1)`, [unique('k'), key]))).code).toBe('AT500');
    }
  });

  test('a revoked or replaced invitation takes its queued email along, and its token', async () => {
    const invitee = `${unique('invitee')}@example.com`;
    const { result, emails } = await emailsOf(session, async (c) => {
      const first = await one<{ invitation_id: string }>(c, `select (i).* from (select app_public.invite_member($1) as i) x`, [invitee]);
      const second = await one<{ invitation_id: string }>(c, `select (i).* from (select app_public.invite_member($1, 'admin') as i) x`, [invitee]); // replaces the first
      const other = await one<{ invitation_id: string }>(c, `select (i).* from (select app_public.invite_member($1) as i) x`, [`${unique('revoked')}@example.com`]);
      await c.query('delete from app_public.invitations where id = $1', [other.invitation_id]); // revoked
      await c.query('reset role');
      const { rows } = await c.query<{ message_key: string }>('select message_key from app_private.email_secrets where message_key = any($1) order by 1', [[first, second, other].map((i) => `invitation:${i.invitation_id}`)]);
      return { first: first.invitation_id, second: second.invitation_id, secrets: rows.map((r) => r.message_key) };
    });
    expect(emails.map((e) => e.key)).toEqual([`send_email:invitation:${result.second}`]);
    expect(emails[0].payload.data.role).toBe('admin');
    expect(result.secrets).toEqual([`invitation:${result.second}`]);
  });

  test('an accepted invitation takes its still-queued email and its token along', async () => {
    const invitee = await signUp('accepting');
    const { result, emails } = await emailsOf(session, async (c) => {
      const invitation = await one<{ invitation_id: string; token: string }>(c, `select (i).* from (select app_public.invite_member($1) as i) x`, [invitee.email]);
      await c.query(`select set_config('app.user_id', $1, true), set_config('app.session_id', $2, true), set_config('app.org_id', '', true)`, [invitee.userId, invitee.sessionId]);
      await c.query('select app_public.accept_invitation($1)', [invitation.token]);
      await c.query('reset role');
      return { invitation, secrets: (await c.query('select 1 from app_private.email_secrets where message_key = $1', [`invitation:${invitation.invitation_id}`])).rowCount };
    });
    expect(result.secrets).toBe(0);
    expect(emails).toEqual([]);
  });

  test('inviteMember committed: its job is in the queue after commit', async () => {
    const { result, emails, done } = await inRequest(session, (c) => one<{ invitation_id: string }>(c, `select (i).* from (select app_public.invite_member($1) as i) x`, [`${unique('invitee')}@example.com`]));
    await done(true);
    expect(emails).toHaveLength(1);
    // Committed: the job exists (or a worker already sent it and recorded it).
    const queued = await jobsWithKey(`send_email:invitation:${result.invitation_id}`);
    const sent = (await pool('owner').query('select 1 from app_private.email_messages where message_key = $1', [`invitation:${result.invitation_id}`])).rowCount ?? 0;
    expect(queued + sent).toBeGreaterThanOrEqual(1);
  });

  describe('documents sent to a client email its primary contacts with an address', () => {
    let clientId: string;
    let primary: string;
    let bareClientId: string;

    beforeAll(async () => {
      primary = `${unique('primary')}@example.com`;
      ({ clientId, bareClientId } = await commitAs(session, async (c) => {
        const client = await one<{ id: string }>(c, `insert into app_public.client_companies (name) values ('Globex <Intl>') returning id`);
        await c.query(
          `insert into app_public.contacts (client_company_id, first_name, email, is_primary) values
             ($1, 'Pat', $2, true), ($1, 'Sam', $3, false), ($1, 'Lee', null, true)`,
          [client.id, primary, `${unique('secondary')}@example.com`],
        );
        const bare = await one<{ id: string }>(c, `insert into app_public.client_companies (name) values ('No Contacts Inc') returning id`);
        await c.query(`insert into app_public.contacts (client_company_id, first_name, email, is_primary) values ($1, 'Kim', $2, false)`, [bare.id, `${unique('kim')}@example.com`]);
        return { clientId: client.id, bareClientId: bare.id };
      }));
    });

    const draftProposal = (c: pg.PoolClient, client: string) =>
      one<{ id: string }>(c, `insert into app_public.proposals (client_company_id, title, valid_until) values ($1, 'Website & <SEO>', '2030-03-01') returning id`, [client]).then(async (p) => {
        await c.query(`insert into app_public.proposal_line_items (proposal_id, description, quantity, unit_price) values ($1, 'Design', 10, 123.45)`, [p.id]);
        return p.id;
      });
    const draftInvoice = (c: pg.PoolClient, client: string) =>
      one<{ id: string }>(c, `insert into app_public.invoices (client_company_id, tax_rate) values ($1, 10) returning id`, [client]).then(async (i) => {
        await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Hosting', 2, 500)`, [i.id]);
        return i.id;
      });

    test('sendProposal: one email, to the primary contact with an email address', async () => {
      const { result: proposalId, emails } = await emailsOf(session, async (c) => {
        const id = await draftProposal(c, clientId);
        await c.query('select app_public.send_proposal($1)', [id]);
        return id;
      });
      expect(emails).toHaveLength(1);
      expect(emails[0].payload).toMatchObject({ organization_id: orgId, template: 'proposal_sent', to: primary });
      expect(emails[0].payload.data).toMatchObject({ contact_name: 'Pat', proposal_id: proposalId, proposal_title: 'Website & <SEO>', total: '1,234.50 USD', validity: 'It is valid until March 1, 2030.', client_name: 'Globex <Intl>' });
      const email = await renders(emails[0]);
      expect(email.subject).toMatch(/^Proposal from .+: Website & <SEO>$/);
      expect(email.html).toContain('Website &amp; &lt;SEO&gt;');
      expect(email.text).toContain(`https://app.example.test/portal/proposals/${proposalId}`);
      expect(await jobsWithKey(emails[0].key)).toBe(0); // rolled back
    });

    test('sendInvoice: one email with the invoice number, amount and due date', async () => {
      const { result: invoice, emails } = await emailsOf(session, async (c) => {
        const id = await draftInvoice(c, clientId);
        return one<{ id: string; number: number; due_on: string }>(c, `select id, number, to_char(due_on, 'FMMonth FMDD, YYYY') as due_on from app_public.send_invoice($1)`, [id]);
      });
      expect(emails).toHaveLength(1);
      expect(emails[0].payload).toMatchObject({ template: 'invoice_sent', to: primary, message_key: expect.stringMatching(new RegExp(`^invoice_sent:${invoice.id}:`)) });
      expect(emails[0].payload.data).toMatchObject({ invoice_number: invoice.number, total: '1,100.00 USD', amount_due: '1,100.00 USD', due_on: invoice.due_on });
      const email = await renders(emails[0]);
      expect(email.subject).toBe(`Invoice ${invoice.number} from ${emails[0].payload.data.organization_name}: 1,100.00 USD due ${invoice.due_on}`);
    });

    test('an invoice in another currency than the organization\'s is emailed in its own', async () => {
      const { emails } = await emailsOf(session, async (c) => {
        const { id } = await one<{ id: string }>(c, `insert into app_public.invoices (client_company_id, tax_rate, currency) values ($1, 10, 'EUR') returning id`, [clientId]);
        await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Hosting', 2, 500)`, [id]);
        await c.query('select app_public.send_invoice($1)', [id]);
      });
      expect(emails).toHaveLength(1);
      expect(emails[0].payload.data).toMatchObject({ total: '1,100.00 EUR', amount_due: '1,100.00 EUR' });
    });

    test('a client without a primary contact with an address gets no email; the document is still sent', async () => {
      const { result, emails } = await emailsOf(session, async (c) => {
        const id = await draftProposal(c, bareClientId);
        return one<{ status: string }>(c, 'select status from app_public.send_proposal($1)', [id]);
      });
      expect(result.status).toBe('sent');
      expect(emails).toEqual([]);
    });

    test('other status changes and edits send nothing', async () => {
      const proposalId = await commitAs(session, async (c) => {
        const id = await draftProposal(c, clientId);
        await c.query('select app_public.send_proposal($1)', [id]);
        return id;
      });
      const { emails } = await emailsOf(session, async (c) => {
        await c.query('select app_public.mark_proposal_viewed($1)', [proposalId]);
        await c.query(`select app_public.reject_proposal($1, 'Pat')`, [proposalId]);
        const draft = await draftInvoice(c, clientId);
        await c.query(`update app_public.invoices set notes = 'n' where id = $1`, [draft]);
      });
      expect(emails).toEqual([]);
    });
  });
});
