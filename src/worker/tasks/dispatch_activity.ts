// dispatch_activity: the outbox consumer. The audit trigger (sql/functions/triggers.sql) enqueues
// it in the same transaction as every change, one job per organization and transaction:
//   { organization_id, transaction_id, occurred_at }
// (occurred_at, the transaction's time, lets the reads look in that month of the log only; a job
// queued without it reads every month).
// It reads that transaction's activity events (as the organization, under row-level security)
// and records the dispatch once; a retry after a crash finds the record and does nothing twice.
// It also turns the transaction's domain events into webhook deliveries (docs/DATA_FLOWS.md), and
// records the budget thresholds its changes crossed (alerts: emails, webhooks).
import type { Task } from 'graphile-worker';
import { organizationOf, withTenant } from '../tenant.ts';

export const dispatch_activity: Task = async (payload, helpers) => {
  const organizationId = organizationOf(payload);
  const transactionId = (payload as { transaction_id?: unknown }).transaction_id;
  if (typeof transactionId !== 'number' || !Number.isSafeInteger(transactionId)) {
    throw new Error(`dispatch_activity payload must carry transaction_id (an integer), got ${JSON.stringify(transactionId) ?? 'none'}`);
  }
  const at = (payload as { occurred_at?: unknown }).occurred_at;
  const occurredAt = typeof at === 'string' && !Number.isNaN(Date.parse(at)) ? at : null;
  const result = await withTenant(helpers, { organizationId }, async (client) => {
    const { rows } = await client.query<{ table_name: string; action: string; n: number }>(
      `select table_name, action, count(*)::int as n
       from app_private.transaction_events($1, $2)
       group by table_name, action
       order by table_name, action`,
      [transactionId, occurredAt],
    );
    const eventCount = rows.reduce((sum, r) => sum + r.n, 0);
    const inserted = await client.query(
      `insert into app_private.activity_dispatches (organization_id, transaction_id, event_count)
       values ($1, $2, $3) on conflict do nothing`,
      [organizationId, transactionId, eventCount],
    );
    // The transaction's domain events become webhook deliveries, each with its job, in this same
    // transaction (a retry finds them there and queues nothing twice).
    const webhooks = await client.query<{ n: number }>('select app_private.queue_webhook_deliveries($1, $2) as n', [transactionId, occurredAt]);
    // Budgets its changes moved past a threshold: an alert each, once (sql/functions/budgets.sql).
    const budgets = await client.query<{ n: number }>('select app_private.check_budgets_of_transaction($1, $2) as n', [transactionId, occurredAt]);
    return { eventCount, firstTime: inserted.rowCount === 1, summary: rows, webhookDeliveries: webhooks.rows[0]!.n, budgetAlerts: budgets.rows[0]!.n };
  });
  helpers.logger.info(result.firstTime ? 'dispatched activity' : 'activity already dispatched', {
    organizationId,
    transactionId,
    eventCount: result.eventCount,
    webhookDeliveries: result.webhookDeliveries,
    budgetAlerts: result.budgetAlerts,
    summary: result.summary,
  });
};
