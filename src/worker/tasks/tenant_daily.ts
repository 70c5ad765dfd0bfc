// tenant_daily: one organization's daily upkeep, inside that organization (row-level security
// on): invoices past their due date become overdue, proposals past their validity expire
// (sql/functions/maintenance.sql); then the organization's retention rules, with its own windows
// (sql/functions/retention_growing.sql: webhook delivery payloads, the email send log, the activity
// log's expired events: sql/functions/activity_retention.sql), each in batches of their own
// transactions (../retention.ts); a run that deleted events leaves one event saying how many.
// Payload: { organization_id, day }. Idempotent.
import type { Task } from 'graphile-worker';
import { inBatches, retentionFacts, type RuleOutcome } from '../retention.ts';
import { organizationOf, withTenant } from '../tenant.ts';

export const tenant_daily: Task = async (payload, helpers) => {
  const organizationId = organizationOf(payload);
  const day = (payload as { day?: unknown }).day;
  if (typeof day !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(day)) {
    throw new Error(`tenant_daily payload must carry day (YYYY-MM-DD), got ${JSON.stringify(day) ?? 'none'}`);
  }
  const counts = await withTenant(helpers, { organizationId }, async (client) => {
    const { rows } = await client.query<{ overdue: number; expired: number }>(
      'select app_private.mark_overdue_invoices($1) as overdue, app_private.expire_proposals($1) as expired',
      [day],
    );
    return rows[0]!;
  });
  helpers.logger.info('daily maintenance done', { organizationId, day, ...counts });

  const rules = await withTenant(helpers, { organizationId }, async (client) =>
    (await client.query<{ rule: string }>('select app_private.tenant_retention_rules() as rule')).rows.map((r) => r.rule),
  );
  const outcomes: Record<string, RuleOutcome> = {};
  for (const rule of rules) {
    outcomes[rule] = await inBatches((batchSize) =>
      withTenant(helpers, { organizationId }, async (client) => (await client.query<{ n: number }>('select app_private.purge_tenant_rows($1, $2) as n', [rule, batchSize])).rows[0]!.n),
    );
  }
  const events = outcomes['activity_events']?.rows ?? 0;
  if (events > 0) {
    await withTenant(helpers, { organizationId }, (client) => client.query('select app_private.record_activity_retention($1)', [events]));
  }
  helpers.logger.info('retention applied', { organizationId, day, ...retentionFacts(outcomes) });
};
