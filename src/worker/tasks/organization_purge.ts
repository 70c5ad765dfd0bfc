// organization_purge: deletes an organization whose deletion is due (deleteOrganization, after its
// grace period) and every row it owns, its activity log included, in one transaction
// (app_private.purge_organization, sql/functions/organization_deletion.sql). Payload:
// { organization_id }. Queued to run when the grace period ends; a cancelled deletion leaves
// nothing to do. The log line has counts per table.
import type { Task } from 'graphile-worker';
import { organizationOf, withTenant } from '../tenant.ts';

export const organization_purge: Task = async (payload, helpers) => {
  const organizationId = organizationOf(payload);
  const deleted = await withTenant(helpers, { organizationId }, async (client) =>
    (await client.query<{ deleted: Record<string, number> | null }>('select app_private.purge_organization() as deleted')).rows[0].deleted);
  helpers.logger.info(deleted ? 'organization deleted' : 'organization deletion not due (cancelled or later)', { organizationId, deleted });
};
