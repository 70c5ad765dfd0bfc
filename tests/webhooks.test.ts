// Webhooks end to end: endpoints registered through the API, domain events POSTed by the worker
// to a real local HTTP receiver, signed (HMAC-SHA256 with a timestamp), retried with backoff,
// logged per delivery, and endpoints disabled after repeated failures.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { setTimeout as sleep } from 'node:timers/promises';
import { isPrivateAddress, postWebhook } from '../src/webhooks/deliver.ts';
import { signWebhook, verifyWebhookSignature } from '../src/webhooks/signature.ts';
import { startWorker, type WorkerHandle } from '../src/worker/index.ts';
import { gql, registerAndConfirm, startTestApp } from './support/app.ts';
import { asVisitor, asWorker, closePools, pgError, pool, sessionOf, unique, urlFor } from './support/db.ts';
import { commitAs, oneTenant, type Tenant } from './support/fixtures.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { testLogger } from './support/log.ts';

let t: Tenant;
let other: Tenant;
let receiver: Receiver;
let worker: WorkerHandle;

beforeAll(async () => {
  [t, other, receiver] = await Promise.all([oneTenant('hooks-a'), oneTenant('hooks-b'), startReceiver()]);
  worker = await startWorker({
    connectionString: urlFor('worker'),
    concurrency: 4,
    log: testLogger('test-worker'),
    webhooks: { timeoutMs: 1500, allowPrivateNetworks: true },
    crontab: false,
  });
}, 120_000);
afterAll(async () => {
  await worker?.stop();
  await receiver?.close();
  await closePools();
});

const admin = (tenant = t) => sessionOf(tenant.admin, tenant.orgId);

async function createEndpoint(path: string, eventTypes: string[], tenant = t): Promise<{ id: string; secret: string }> {
  return commitAs(admin(tenant), async (c) => {
    const { rows } = await c.query('select * from app_public.create_webhook_endpoint($1, $2)', [receiver.url(path), eventTypes]);
    return { id: rows[0].endpoint_id, secret: rows[0].secret };
  });
}

/** Pays the rest of the fixture's sent invoice: one payment.recorded and one invoice.paid. */
async function payInFull(tenant = t, invoiceId = tenant.invoiceId): Promise<void> {
  await commitAs(admin(tenant), async (c) => {
    const { rows } = await c.query('select balance from app_public.invoices where id = $1', [invoiceId]);
    await c.query('select app_public.record_payment($1, $2)', [invoiceId, rows[0].balance]);
  });
}

/** A fresh sent invoice of the tenant's engagement (draft → one line → sent). */
async function sentInvoice(tenant = t): Promise<string> {
  return commitAs(admin(tenant), async (c) => {
    const { rows } = await c.query(
      `insert into app_public.invoices (client_company_id, engagement_id, due_on) values ($1, $2, current_date + 30) returning id`,
      [tenant.clientId, tenant.engagementId],
    );
    await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Work', 1, 100)`, [rows[0].id]);
    await c.query('select app_public.send_invoice($1)', [rows[0].id]);
    return rows[0].id as string;
  });
}

const deliveries = async (endpointId: string) =>
  (await pool('owner').query('select * from app_public.webhook_deliveries where endpoint_id = $1 order by created_at, event_type', [endpointId])).rows;

async function waitUntil<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Runs the delivery's pending retry now instead of after graphile-worker's backoff: once the
 * failed attempt has released its job (the delivery row records the attempt before the worker
 * schedules the retry, and that schedule would overwrite an earlier run_at).
 */
async function retryNow(deliveryId: string, maxAttempts?: number): Promise<void> {
  await waitUntil('the failed attempt released its job', async () => {
    const { rowCount } = await pool('worker').query(
      `update graphile_worker._private_jobs set run_at = now()${maxAttempts ? `, max_attempts = ${maxAttempts}` : ''}
        where key = $1 and locked_at is null and attempts > 0`,
      [`deliver_webhook:${deliveryId}`],
    );
    return rowCount === 1;
  });
}

describe('signatures', () => {
  test('a signature verifies with the secret and body it was made with, and nothing else', () => {
    const now = Math.floor(Date.now() / 1000);
    const header = signWebhook('whsec_a', '{"x":1}', now);
    expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature('whsec_a', header, '{"x":1}')).toBe(true);
    expect(verifyWebhookSignature('whsec_b', header, '{"x":1}')).toBe(false);
    expect(verifyWebhookSignature('whsec_a', header, '{"x":2}')).toBe(false);
    expect(verifyWebhookSignature('whsec_a', undefined, '{"x":1}')).toBe(false);
    // A replay of an old delivery is refused (timestamp outside the tolerance).
    expect(verifyWebhookSignature('whsec_a', signWebhook('whsec_a', '{"x":1}', now - 3600), '{"x":1}')).toBe(false);
  });

  test('private, loopback and link-local addresses are recognised (every form: tests/webhook-destinations.test.ts)', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '::1', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1', '0.0.0.0']) {
      expect({ a, private: isPrivateAddress(a) }).toEqual({ a, private: true });
    }
    for (const a of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '172.32.0.1']) expect({ a, private: isPrivateAddress(a) }).toEqual({ a, private: false });
  });

  test('unless allowed, a delivery to this machine is refused before connecting', async () => {
    const result = await postWebhook(receiver.url('/never'), 'whsec_x', '{}', {}, { timeoutMs: 1000, allowPrivateNetworks: false });
    expect(result.ok).toBe(false);
    expect(result.error).toMatch(/webhooks reach only public addresses/);
    const byName = await postWebhook(receiver.url('/never').replace('127.0.0.1', 'localhost'), 'whsec_x', '{}', {}, { timeoutMs: 1000, allowPrivateNetworks: false });
    expect(byName.error).toMatch(/webhooks reach only public addresses/);
    expect(receiver.requests('/never')).toEqual([]);
  });
});

describe('endpoints', () => {
  test('only owners and admins register endpoints; the secret is shown once and is nowhere in app_public or the log', async () => {
    const err = await pgError(asVisitor(sessionOf(t.member, t.orgId), (c) => c.query('select * from app_public.create_webhook_endpoint($1, $2)', [receiver.url('/x'), ['invoice.paid']])));
    expect(err.code).toBe('AT403');
    const { id, secret } = await createEndpoint('/secret-check', ['invoice.paid']);
    expect(secret).toMatch(/^whsec_[A-Za-z0-9_-]{40,}$/);
    // The viewer sees the endpoint, not the secret.
    const seen = await asVisitor(sessionOf(t.viewer, t.orgId), (c) => c.query('select * from app_public.webhook_endpoints where id = $1', [id]));
    expect(seen.rows).toHaveLength(1);
    expect(JSON.stringify(seen.rows[0])).not.toContain(secret);
    const logged = await pool('owner').query(`select 1 from app_public.activity_events where organization_id = $1 and (old_values::text like $2 or new_values::text like $2)`, [t.orgId, `%${secret}%`]);
    expect(logged.rows).toEqual([]);
    // Another organization does not see it.
    const theirs = await asVisitor(admin(other), (c) => c.query('select 1 from app_public.webhook_endpoints where id = $1', [id]));
    expect(theirs.rows).toEqual([]);
  });

  test('unknown event types are refused with INVALID_EVENT_TYPE; * subscribes to everything', async () => {
    const err = await pgError(asVisitor(admin(), (c) => c.query('select * from app_public.create_webhook_endpoint($1, $2)', [receiver.url('/x'), ['invoice.paid', 'invoice.exploded']])));
    expect(err.code).toBe('AT470');
    expect(err.message).toContain('invoice.exploded');
    await asVisitor(admin(), (c) => c.query('select * from app_public.create_webhook_endpoint($1, $2)', [receiver.url('/x'), ['*']]));
    const types = await asVisitor(admin(), async (c) => (await c.query('select event_type from app_public.webhook_event_types()')).rows.map((r) => r.event_type));
    expect(types).toEqual(expect.arrayContaining(['deal.won', 'proposal.accepted', 'invoice.sent', 'invoice.paid', 'payment.recorded']));
  });

  test('a URL must be http(s)', async () => {
    const err = await pgError(asVisitor(admin(), (c) => c.query('select * from app_public.create_webhook_endpoint($1, $2)', ['ftp://example.com/x', ['invoice.paid']])));
    expect(err.code).toBe('23514');
  });
});

describe('delivery', () => {
  test('a payment that settles an invoice is POSTed as payment.recorded and invoice.paid, signed, and logged as succeeded', async () => {
    const { id, secret } = await createEndpoint('/paid', ['invoice.paid', 'payment.recorded']);
    const ignored = await createEndpoint('/only-deals', ['deal.won']);
    const theirs = await createEndpoint('/theirs', ['*'], other);
    await payInFull();
    const received = await receiver.waitFor('/paid', 2);
    await sleep(300);
    expect(receiver.requests('/paid')).toHaveLength(2); // the fixture's earlier payment is not sent: it predates the endpoint
    const types = received.map((r) => r.json.type).sort();
    expect(types).toEqual(['invoice.paid', 'payment.recorded']);
    for (const r of received) {
      expect(r.headers['content-type']).toBe('application/json');
      expect(verifyWebhookSignature(secret, r.headers['atrium-signature'] as string, r.body)).toBe(true);
      expect(r.headers['atrium-event']).toBe(r.json.type);
      expect(r.headers['atrium-webhook-id']).toBe(r.json.id);
      expect(r.json.organization_id).toBe(t.orgId);
    }
    const paid = received.find((r) => r.json.type === 'invoice.paid')!.json;
    expect(paid.data).toMatchObject({ table: 'invoices', id: t.invoiceId, object: { id: t.invoiceId, status: 'paid' } });
    expect(['sent', 'viewed', 'overdue']).toContain(paid.data.previous.status);

    const log = await waitUntil('deliveries recorded', async () => {
      const rows = await deliveries(id);
      return rows.length === 2 && rows.every((d) => d.status === 'succeeded') && rows;
    });
    for (const d of log) expect(d).toMatchObject({ attempts: 1, response_code: 200, last_error: null });
    expect(log.map((d) => d.id).sort()).toEqual(received.map((r) => r.json.id).sort());
    // Not subscribed, or another organization's endpoint: nothing.
    await sleep(300);
    expect(receiver.requests('/only-deals')).toEqual([]);
    expect(receiver.requests('/theirs')).toEqual([]);
    expect(await deliveries(ignored.id)).toEqual([]);
    expect(await deliveries(theirs.id)).toEqual([]);
  });

  test('the delivery log is readable by the organization (viewers included), not by another one', async () => {
    const mine = await asVisitor(sessionOf(t.viewer, t.orgId), (c) => c.query('select status, attempts, response_code, last_error from app_public.webhook_deliveries'));
    expect(mine.rows.length).toBeGreaterThan(0);
    const theirs = await asVisitor(admin(other), (c) => c.query('select 1 from app_public.webhook_deliveries where organization_id = $1', [t.orgId]));
    expect(theirs.rows).toEqual([]);
    const write = await pgError(asVisitor(admin(), (c) => c.query(`update app_public.webhook_deliveries set status = 'succeeded'`)));
    expect(write.code).toBe('42501');
  });

  test('queueing a transaction\'s deliveries twice creates them once (idempotent dispatch)', async () => {
    await createEndpoint('/twice', ['invoice.sent']);
    const invoiceId = await sentInvoice();
    await receiver.waitFor('/twice', 1);
    const { rows } = await pool('owner').query(
      `select transaction_id from app_public.activity_events where organization_id = $1 and table_name = 'invoices' and record_id = $2 and new_values ->> 'status' = 'sent'`,
      [t.orgId, invoiceId],
    );
    const again = await asWorker(t.orgId, (c) => c.query('select app_private.queue_webhook_deliveries($1) as n', [rows[0].transaction_id]));
    expect(again.rows[0].n).toBe(0);
    const direct = await pgError(asVisitor(admin(), (c) => c.query('select app_private.queue_webhook_deliveries($1)', [rows[0].transaction_id])));
    expect(direct.code).toBe('42501');
  });

  test('a failed attempt is retried (with backoff) until the endpoint answers; the log keeps the error and code', async () => {
    receiver.answer('/flaky', 503);
    const { id } = await createEndpoint('/flaky', ['invoice.sent']);
    await sentInvoice();
    await receiver.waitFor('/flaky', 1);
    const [first] = await waitUntil('the failed attempt recorded', async () => {
      const rows = await deliveries(id);
      return rows.length === 1 && rows[0].attempts === 1 && rows;
    });
    expect(first).toMatchObject({ status: 'pending', response_code: 503 });
    expect(first.last_error).toContain('503');
    // graphile-worker scheduled the retry with its exponential backoff (e^attempts seconds).
    // (Once graphile-worker has recorded the failure: the job is unlocked again.) In the same
    // statement the retry is put off by an hour, so that on a slow machine it cannot run on its
    // own (and fail again) before the test makes the endpoint answer and retries it itself.
    const job = await waitUntil('the job failure recorded', async () => {
      const { rows } = await pool('worker').query(
        `with job as (
           select id, attempts, run_at > created_at + interval '2 seconds' as later, locked_at
           from graphile_worker._private_jobs where key = $1 for update
         )
         update graphile_worker._private_jobs j set run_at = now() + interval '1 hour'
         from job where j.id = job.id and job.locked_at is null
         returning job.attempts, job.later, job.locked_at`,
        [`deliver_webhook:${first.id}`],
      );
      return rows[0]?.locked_at === null && rows[0];
    });
    expect(job).toMatchObject({ attempts: 1, later: true });
    receiver.answer('/flaky', 200);
    await retryNow(first.id);
    const received = await receiver.waitFor('/flaky', 2);
    expect(received[1].json.id).toBe(received[0].json.id); // the same delivery, so receivers can ignore repeats
    await waitUntil('success recorded', async () => (await deliveries(id))[0].status === 'succeeded');
    expect((await deliveries(id))[0]).toMatchObject({ attempts: 2, response_code: 200, last_error: null });
    const endpoint = await pool('owner').query('select consecutive_failures, enabled from app_public.webhook_endpoints where id = $1', [id]);
    expect(endpoint.rows[0]).toEqual({ consecutive_failures: 0, enabled: true });
  });

  test('after the last attempt the delivery is failed (and so is its job); an admin retries it', async () => {
    receiver.answer('/down', 500);
    const { id } = await createEndpoint('/down', ['invoice.sent']);
    await sentInvoice();
    await receiver.waitFor('/down', 1);
    const [delivery] = await waitUntil('first attempt', async () => {
      const rows = await deliveries(id);
      return rows.length === 1 && rows[0].attempts === 1 && rows;
    });
    await retryNow(delivery.id, 2); // make the next attempt the last
    await receiver.waitFor('/down', 2);
    await waitUntil('delivery failed', async () => (await deliveries(id))[0].status === 'failed');
    expect((await deliveries(id))[0]).toMatchObject({ attempts: 2, response_code: 500 });
    const job = await waitUntil('job failed permanently', async () => {
      const { rows } = await pool('worker').query(`select attempts, max_attempts, last_error, locked_at from graphile_worker._private_jobs where key = $1`, [`deliver_webhook:${delivery.id}`]);
      return rows[0]?.locked_at === null && rows[0]?.attempts === 2 && rows[0];
    });
    expect(job.last_error).toContain('failed after 2 attempts');

    const member = await pgError(asVisitor(sessionOf(t.member, t.orgId), (c) => c.query('select app_public.retry_webhook_delivery($1)', [delivery.id])));
    expect(member.code).toBe('AT403');
    receiver.answer('/down', 200);
    await commitAs(admin(), (c) => c.query('select app_public.retry_webhook_delivery($1)', [delivery.id]));
    await receiver.waitFor('/down', 3);
    await waitUntil('retried delivery succeeded', async () => (await deliveries(id))[0].status === 'succeeded');
    const again = await pgError(asVisitor(admin(), (c) => c.query('select app_public.retry_webhook_delivery($1)', [delivery.id])));
    expect(again.code).toBe('AT471');
  });

  test('an endpoint failing `disable_after_failures` times in a row is disabled, and its pending deliveries cancelled', async () => {
    receiver.answer('/broken', 500);
    const { id } = await createEndpoint('/broken', ['invoice.sent']);
    await commitAs(admin(), (c) => c.query('update app_public.webhook_endpoints set disable_after_failures = 2 where id = $1', [id]));
    await sentInvoice();
    await sentInvoice();
    await receiver.waitFor('/broken', 2);
    const endpoint = await waitUntil('endpoint disabled', async () => {
      const { rows } = await pool('owner').query('select * from app_public.webhook_endpoints where id = $1', [id]);
      return !rows[0].enabled && rows[0];
    });
    expect(endpoint.disabled_reason).toMatch(/2 delivery attempts failed in a row/);
    expect(endpoint.disabled_at).not.toBeNull();
    const log = await waitUntil('no delivery pending', async () => {
      const rows = await deliveries(id);
      return rows.every((d) => d.status !== 'pending') && rows;
    });
    // The attempt that reached the limit failed; the other delivery, still waiting to retry, was cancelled.
    expect(log.map((d) => d.status).sort()).toEqual(['cancelled', 'failed']);
    // Disabled: new events are not queued for it.
    await sentInvoice();
    await sleep(500);
    expect(await deliveries(id)).toHaveLength(2);
    // Enabling it again clears the failure record; new events flow again.
    receiver.answer('/broken', 200);
    await commitAs(admin(), (c) => c.query('update app_public.webhook_endpoints set enabled = true where id = $1', [id]));
    const cleared = await pool('owner').query('select consecutive_failures, disabled_at, disabled_reason from app_public.webhook_endpoints where id = $1', [id]);
    expect(cleared.rows[0]).toEqual({ consecutive_failures: 0, disabled_at: null, disabled_reason: null });
    await sentInvoice();
    await waitUntil('delivered after re-enabling', async () => (await deliveries(id)).some((d) => d.status === 'succeeded'));
  });

  test('an endpoint answering 410 Gone is disabled at once', async () => {
    receiver.answer('/gone', 410);
    const { id } = await createEndpoint('/gone', ['invoice.sent']);
    await sentInvoice();
    const endpoint = await waitUntil('endpoint disabled', async () => {
      const { rows } = await pool('owner').query('select enabled, disabled_reason from app_public.webhook_endpoints where id = $1', [id]);
      return !rows[0].enabled && rows[0];
    });
    expect(endpoint.disabled_reason).toContain('410');
    expect(receiver.requests('/gone')).toHaveLength(1);
  });

  test('a deleted endpoint\'s pending delivery is cancelled, not sent', async () => {
    receiver.answer('/deleted', 'hang');
    const { id } = await createEndpoint('/deleted', ['invoice.sent']);
    await sentInvoice();
    await receiver.waitFor('/deleted', 1); // the first attempt times out (1.5 s) and will be retried
    await waitUntil('first attempt recorded', async () => (await deliveries(id))[0]?.attempts === 1);
    await commitAs(admin(), (c) => c.query('select app_public.soft_delete_webhook_endpoint($1)', [id]));
    const [delivery] = await deliveries(id);
    expect(delivery.last_error).toMatch(/no answer within 1500 ms/);
    await retryNow(delivery.id);
    await waitUntil('cancelled', async () => (await deliveries(id))[0].status === 'cancelled');
    expect(receiver.requests('/deleted')).toHaveLength(1);
  });

  test('rotating the secret signs the next deliveries with the new one', async () => {
    const { id, secret } = await createEndpoint('/rotate', ['invoice.sent']);
    const rotated = await commitAs(admin(), async (c) => (await c.query('select * from app_public.rotate_webhook_secret($1)', [id])).rows[0]);
    expect(rotated.secret).not.toBe(secret);
    await sentInvoice();
    const [r] = await receiver.waitFor('/rotate', 1);
    expect(verifyWebhookSignature(rotated.secret, r.headers['atrium-signature'] as string, r.body)).toBe(true);
    expect(verifyWebhookSignature(secret, r.headers['atrium-signature'] as string, r.body)).toBe(false);
  });
});

describe('over the GraphQL API', () => {
  test('an admin registers an endpoint, sends a test ping and reads the delivery log', async () => {
    const app = await startTestApp();
    try {
      const url = app.url!;
      const email = `${unique('hooks')}@example.com`;
      let token = (await registerAndConfirm(url, { email, name: 'Hook Owner' })).accessToken;
      const orgId = (await gql<any>(url, 'mutation { createOrganization(input: { name: "Hook Studio" }) { organization { rowId } } }', {}, token)).data.createOrganization.organization.rowId;
      token = (await gql<any>(url, 'mutation($o: UUID) { switchOrganization(input: { organizationId: $o }) { accessToken } }', { o: orgId }, token)).data.switchOrganization.accessToken;

      const created = await gql<any>(
        url,
        'mutation($u: String!, $e: [String]!) { createWebhookEndpoint(input: { url: $u, eventTypes: $e }) { webhookEndpointSecret { endpointId secret } } }',
        { u: receiver.url('/graphql-ping'), e: ['invoice.paid'] },
        token,
      );
      expect(created.errors).toBeUndefined();
      const { endpointId, secret } = created.data.createWebhookEndpoint.webhookEndpointSecret;
      const bad = await gql<any>(url, 'mutation($u: String!) { createWebhookEndpoint(input: { url: $u, eventTypes: ["nope.nope"] }) { clientMutationId } }', { u: receiver.url('/x') }, token);
      expect(bad.errors?.[0]?.extensions?.code).toBe('INVALID_EVENT_TYPE');

      const ping = await gql<any>(url, 'mutation($e: UUID!) { sendTestWebhook(input: { endpointId: $e }) { webhookDelivery { rowId eventType status } } }', { e: endpointId }, token);
      expect(ping.errors).toBeUndefined();
      expect(ping.data.sendTestWebhook.webhookDelivery).toMatchObject({ eventType: 'ping', status: 'pending' });
      const [r] = await receiver.waitFor('/graphql-ping', 1);
      expect(r.json).toMatchObject({ type: 'ping', organization_id: orgId, data: { endpoint_id: endpointId } });
      expect(verifyWebhookSignature(secret, r.headers['atrium-signature'] as string, r.body)).toBe(true);

      const log = await waitUntil('ping logged', async () => {
        const res = await gql<any>(url, '{ webhookDeliveries(orderBy: CREATED_AT_DESC) { nodes { eventType status attempts responseCode } } }', {}, token);
        const node = res.data?.webhookDeliveries?.nodes?.[0];
        return node?.status === 'succeeded' && res.data.webhookDeliveries.nodes;
      });
      expect(log).toEqual([{ eventType: 'ping', status: 'succeeded', attempts: 1, responseCode: 200 }]);
      const endpoints = await gql<any>(url, '{ webhookEndpoints { nodes { rowId url enabled eventTypes } } }', {}, token);
      expect(endpoints.data.webhookEndpoints.nodes).toEqual([{ rowId: endpointId, url: receiver.url('/graphql-ping'), enabled: true, eventTypes: ['invoice.paid'] }]);
    } finally {
      await app.stop();
    }
  });
});

// Last in the file: its deliveries must not share the worker with the timing of the retry tests.
describe('events of the firm\'s money', () => {
  test('a credit note, its refund and a week submitted, rejected, submitted again and approved are each POSTed once', async () => {
    const { id } = await createEndpoint('/money', ['credit_note.issued', 'refund.recorded', 'timesheet.submitted', 'timesheet.approved', 'timesheet.rejected']);
    const invoiceId = await sentInvoice();
    const creditNoteId = await commitAs(admin(), async (c) => {
      await c.query('select app_public.record_payment($1, 100)', [invoiceId]);
      const note = (await c.query(`select id from app_public.issue_credit_note($1, 40, 'Discount agreed')`, [invoiceId])).rows[0].id as string;
      await c.query('select app_public.record_refund($1, 40)', [invoiceId]);
      return note;
    });
    const member = sessionOf(t.member, t.orgId);
    const sheetId = await commitAs(member, async (c) => (await c.query(`select id from app_public.submit_timesheet('2026-03-02')`)).rows[0].id as string);
    await commitAs(admin(), (c) => c.query(`select app_public.reject_timesheet($1, 'Friday is missing')`, [sheetId]));
    await commitAs(member, (c) => c.query(`select app_public.submit_timesheet('2026-03-02')`));
    await commitAs(admin(), (c) => c.query('select app_public.approve_timesheet($1)', [sheetId]));

    const received = await receiver.waitFor('/money', 6);
    await sleep(300);
    expect(receiver.requests('/money')).toHaveLength(6);
    const byType = (type: string) => received.filter((r) => r.json.type === type).map((r) => r.json.data);
    expect(byType('credit_note.issued')).toMatchObject([{ table: 'credit_notes', id: creditNoteId, object: { invoice_id: invoiceId, kind: 'credit', subtotal: 40 } }]);
    expect(byType('refund.recorded')).toMatchObject([{ table: 'refunds', object: { invoice_id: invoiceId, amount: 40 } }]);
    expect(byType('timesheet.submitted')).toHaveLength(2);
    expect(byType('timesheet.rejected')).toMatchObject([{ table: 'timesheets', id: sheetId, object: { status: 'rejected', rejection_reason: 'Friday is missing' } }]);
    expect(byType('timesheet.approved')).toMatchObject([{ table: 'timesheets', id: sheetId, object: { status: 'approved' }, previous: { status: 'submitted' } }]);
    await waitUntil('deliveries recorded', async () => {
      const rows = await deliveries(id);
      return rows.length === 6 && rows.every((d) => d.status === 'succeeded');
    });
  });
});
