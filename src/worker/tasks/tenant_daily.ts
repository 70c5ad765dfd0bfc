// tenant_daily: one organization's daily upkeep, inside that organization (row-level security
// on): invoices past their due date become overdue, proposals past their validity expire
// (sql/functions/maintenance.sql). Payload: { organization_id, day }. Idempotent.
import type { Task } from 'graphile-worker';
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
    return rows[0];
  });
  helpers.logger.info('daily maintenance done', { organizationId, day, ...counts });
};
