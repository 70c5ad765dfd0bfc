// tenant_invoicing: one organization's scheduled invoices, inside that organization (row-level
// security on): every period of its schedules due up to `day` gets its invoice, each exactly once,
// sent at once where the schedule says so (app_private.generate_scheduled_invoices,
// sql/functions/invoice_schedules.sql). Payload: { organization_id, day }. Idempotent: a retry or
// a second job for the same day creates nothing more.
import type { Task } from 'graphile-worker';
import { dayOf } from '../days.ts';
import { organizationOf, withTenant } from '../tenant.ts';

export const tenant_invoicing: Task = async (payload, helpers) => {
  const organizationId = organizationOf(payload);
  const day = dayOf(payload, 'tenant_invoicing');
  const created = await withTenant(helpers, { organizationId }, async (client) => {
    const { rows } = await client.query<{ n: number }>('select app_private.generate_scheduled_invoices($1) as n', [day]);
    return rows[0].n;
  });
  helpers.logger.info('scheduled invoices generated', { organizationId, day, created });
};
