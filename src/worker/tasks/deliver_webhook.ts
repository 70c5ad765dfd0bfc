// deliver_webhook: one delivery of a domain event to a webhook endpoint (sql/functions/webhooks.sql).
// Payload: { organization_id, delivery_id }; the job key is per delivery, so it is queued once.
//   1. read the delivery, its endpoint and signing secret, inside the organization;
//   2. POST the delivery's payload, signed (src/webhooks/), outside any transaction;
//   3. record the attempt (app_private.record_webhook_attempt): a 2xx answer ends it; anything
//      else throws, and graphile-worker retries with exponential backoff until the job's last
//      attempt, which marks the delivery failed. An endpoint failing too often is disabled.
// A delivery already finished (a retried job after a crash) is not sent again; receivers get the
// same `id` (the delivery's, also in the Atrium-Webhook-Id header) on every attempt to ignore the
// rare repeat of an unrecorded success. Right before the POST the worker checks that it still
// holds the job (assertOwnership, src/worker/fencing.ts): a worker declared dead while paused
// sends nothing when it resumes.
import type { Task } from 'graphile-worker';
import { postWebhook, type DeliveryOptions } from '../../webhooks/deliver.ts';
import { assertOwnership } from '../fencing.ts';
import { organizationOf, withTenant } from '../tenant.ts';

interface Target {
  status: string;
  attempts: number;
  url: string;
  endpoint_live: boolean;
  secret: string;
  event_type: string;
  payload: unknown;
}

export class WebhookDeliveryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookDeliveryError';
  }
}

export function deliverWebhook(options: DeliveryOptions): Task {
  return async (payload, helpers) => {
    const organizationId = organizationOf(payload);
    const deliveryId = (payload as { delivery_id?: unknown }).delivery_id;
    if (typeof deliveryId !== 'string') throw new Error('deliver_webhook payload must carry delivery_id (a uuid)');
    const scope = { organizationId };
    const record = (outcome: string, result: { status?: number; error?: string } = {}, gone = false) =>
      withTenant(helpers, scope, async (client) => {
        const final = helpers.job.attempts >= helpers.job.max_attempts;
        const { rows } = await client.query<{ status: string }>(
          'select app_private.record_webhook_attempt($1, $2, $3, $4, $5, $6) as status',
          [deliveryId, outcome, result.status ?? null, result.error ?? null, final, gone],
        );
        return rows[0]!.status;
      });

    const target = await withTenant(helpers, scope, async (client) => {
      const { rows } = await client.query<Target>('select * from app_private.webhook_delivery_target($1)', [deliveryId]);
      return rows[0];
    });
    if (!target) {
      helpers.logger.warn('webhook delivery not found; nothing to do', { organizationId, deliveryId });
      return;
    }
    if (target.status !== 'pending') {
      helpers.logger.info('webhook delivery already finished', { organizationId, deliveryId, status: target.status });
      return;
    }
    if (!target.endpoint_live) {
      await record('cancelled');
      helpers.logger.info('webhook delivery cancelled: endpoint disabled or deleted', { organizationId, deliveryId });
      return;
    }

    const body = JSON.stringify(target.payload);
    const started = Date.now();
    const result = await postWebhook(target.url, target.secret, body, { 'Atrium-Webhook-Id': deliveryId, 'Atrium-Event': target.event_type }, options, () => assertOwnership(helpers));
    const status = await record(result.ok ? 'succeeded' : 'failed', result, result.status === 410);
    const facts = { organizationId, deliveryId, event: target.event_type, address: result.address, responseStatus: result.status, ms: Date.now() - started, deliveryStatus: status };
    if (result.ok) {
      helpers.logger.info('webhook delivered', facts);
      return;
    }
    if (status === 'pending') {
      // Let graphile-worker retry it with its backoff.
      throw new WebhookDeliveryError(`webhook delivery ${deliveryId} failed: ${result.error}`);
    }
    helpers.logger.warn(`webhook delivery ${status}: ${result.error}`, facts);
    if (status === 'failed' && helpers.job.attempts >= helpers.job.max_attempts) {
      // The last attempt: end the job in the failed state too, so it is visible with the failed jobs.
      throw new WebhookDeliveryError(`webhook delivery ${deliveryId} failed after ${helpers.job.attempts} attempts: ${result.error}`);
    }
  };
}
