// send_email: renders an email template and sends it through the configured transport
// (src/email/). Enqueued by SQL in the same transaction as the change it is about
// (sql/functions/email.sql). Payload:
//   { organization_id?, template, to, data, message_key?, has_secrets? }
// organization_id: the organization the email is about (none for account emails such as
// password reset); the log row is written inside it. message_key: the idempotency key (defaults
// to the job key, then the job id). has_secrets: the message has one-time secrets (the token of
// an invitation, password-reset or sign-up link). They are never in the payload — so never in
// graphile-worker's job row, its log lines or a job's last_error — but in
// app_private.email_secrets, read here inside the transaction that claims the message; when they
// are gone (the link was replaced, revoked, used or expired) nothing is sent.
//
// At most once per key, as far as the database can know: under a session advisory lock on the
// key (so two jobs for one key never overlap), the task
//   1. claims the key in app_private.email_messages, reads its secrets and renders the message
//      (committed: attempt n) — or stops there if the key is already recorded as sent (a retried
//      or duplicate job sends nothing), or its secrets are gone (nothing recorded);
//   2. checks that this worker still holds the job (a worker declared dead while paused sends
//      nothing: src/worker/fencing.ts) and hands the message to the transport;
//   3. records it as sent, which deletes its secrets (committed).
// A crash between 2 and 3 leaves the key claimed but not sent: the retry sends again (the one
// at-least-once window), with the same Message-ID and the same link, and logs that an earlier
// attempt's outcome is unknown. Bad payloads and template errors fail the job permanently (no
// retries, nothing recorded).
import type { JobHelpers, Task } from 'graphile-worker';
import type { PoolClient } from 'pg';
import { emailService, type EmailService } from '../../email/service.ts';
import { renderTemplate, TemplateError, type RenderedEmail } from '../../email/templates.ts';
import { messageIdFor } from '../../email/transport.ts';
import { assertOwnership } from '../fencing.ts';
import { failPermanently } from '../permanent.ts';
import { inTenantTransaction } from '../tenant.ts';

export interface SendEmailPayload {
  organization_id?: string;
  template: string;
  to: string;
  data: Record<string, unknown>;
  message_key?: string;
  /** The message's one-time secrets wait in app_private.email_secrets. */
  has_secrets?: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const EMAIL = /^[^@\s<>,;"]+@[^@\s<>,;"]+\.[^@\s<>,;"]+$/;

/** The payload's problems, if any (an empty list means valid). */
export function payloadProblems(payload: unknown): string[] {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return ['the payload must be an object'];
  const p = payload as Record<string, unknown>;
  const problems: string[] = [];
  if (p.organization_id !== undefined && (typeof p.organization_id !== 'string' || !UUID.test(p.organization_id))) problems.push('organization_id must be a uuid');
  if (typeof p.template !== 'string' || !/^[a-z][a-z0-9_]{0,62}$/.test(p.template)) problems.push('template must be a template name (templates/email/<name>.*)');
  if (typeof p.to !== 'string' || p.to.length > 320 || !EMAIL.test(p.to)) problems.push('to must be one email address');
  if (p.data !== undefined && (typeof p.data !== 'object' || p.data === null || Array.isArray(p.data))) problems.push('data must be an object');
  if (p.message_key !== undefined && (typeof p.message_key !== 'string' || p.message_key.length < 1 || p.message_key.length > 300)) problems.push('message_key must be a string of 1 to 300 characters');
  if (p.has_secrets !== undefined && typeof p.has_secrets !== 'boolean') problems.push('has_secrets must be a boolean');
  return problems;
}

/** Thrown inside the claiming transaction to roll it back: the message's secrets are gone. */
class SecretsGone extends Error {}

export function makeSendEmail(service: () => EmailService = emailService): Task {
  return async (rawPayload, helpers: JobHelpers) => {
    const problems = payloadProblems(rawPayload);
    // (The problems only, not the payload: the error is logged and kept on the job.)
    if (problems.length > 0) return failPermanently(helpers, `send_email payload: ${problems.join('; ')}`);
    const payload = rawPayload as SendEmailPayload;
    const email = service();
    const messageKey = payload.message_key ?? helpers.job.key ?? `job:${helpers.job.id}`;
    const organizationId = payload.organization_id;
    const messageId = messageIdFor(messageKey, email.from);
    const context = { template: payload.template, to: payload.to, messageKey, messageId, organizationId: organizationId ?? null, jobId: helpers.job.id };

    // A template error, found while holding this connection, fails the job once it is released.
    const templateError = await helpers.withPgClient(async (pgClient): Promise<TemplateError | undefined> => {
      const client = pgClient as PoolClient;
      await client.query('select pg_advisory_lock(hashtextextended($1, 0))', [`send_email:${messageKey}`]);
      try {
        let claimed: { attempt: number; rendered: RenderedEmail } | null;
        try {
          claimed = await inTenantTransaction(client, { organizationId: organizationId ?? '' }, async () => {
            const { rows } = await client.query<{ attempt: number | null }>('select app_private.claim_email($1, $2, $3) as attempt', [messageKey, payload.template, payload.to]);
            if (rows[0].attempt === null) return null;
            let secrets: Record<string, unknown> = {};
            if (payload.has_secrets) {
              const found = await client.query<{ secrets: Record<string, unknown> | null }>('select app_private.email_secret($1) as secrets', [messageKey]);
              if (found.rows[0].secrets === null) throw new SecretsGone();
              secrets = found.rows[0].secrets;
            }
            // A template error rolls the claim back (nothing recorded) and fails the job for good.
            const rendered = await renderTemplate(payload.template, { ...payload.data, ...secrets, app_url: email.appUrl });
            return { attempt: rows[0].attempt, rendered };
          });
        } catch (error) {
          if (error instanceof SecretsGone) {
            helpers.logger.info('email not sent: its link was replaced, revoked, used or has expired', context);
            return;
          }
          if (error instanceof TemplateError) return error;
          throw error;
        }
        if (claimed === null) {
          helpers.logger.info('email already sent: nothing to do', context);
          return;
        }
        const { attempt, rendered } = claimed;
        if (attempt > 1) helpers.logger.warn('email: an earlier attempt did not record its outcome; sending (again)', { ...context, attempt });
        await assertOwnership(helpers);
        const delivery = await email.transport.send({
          to: payload.to,
          subject: rendered.subject,
          text: rendered.text,
          html: rendered.html,
          messageId,
          headers: { 'X-Atrium-Template': payload.template },
        });
        await inTenantTransaction(client, { organizationId: organizationId ?? '' }, () =>
          client.query('select app_private.record_email_sent($1, $2, $3, $4)', [messageKey, delivery.messageId, delivery.transport, delivery.detail]),
        );
        helpers.logger.info('email sent', { ...context, attempt, transport: delivery.transport, detail: delivery.detail });
      } finally {
        await client.query('select pg_advisory_unlock(hashtextextended($1, 0))', [`send_email:${messageKey}`]);
      }
    });
    if (templateError) await failPermanently(helpers, templateError.message);
  };
}

export const send_email: Task = makeSendEmail();
