// tenant_retention_purge: one organization's purge, inside that organization (row-level security
// on): soft-deleted rows past its retention window are deleted for good, children first, rows
// still referenced by live ones kept, and one summary event records the counts
// (app_private.purge_deleted_records, sql/functions/retention.sql). Payload:
// { organization_id, day } (day: the crontab's, for the job key and the log; the window is
// counted from now, like restore). Idempotent: a second run finds nothing more to purge.
import type { Task } from 'graphile-worker';
import { dayOf } from '../days.ts';
import { organizationOf, withTenant } from '../tenant.ts';

interface PurgeSummary {
  retention_days: number;
  deleted_before: string;
  purged: Record<string, number>;
  kept: Record<string, number>;
}

export const tenant_retention_purge: Task = async (payload, helpers) => {
  const organizationId = organizationOf(payload);
  const day = dayOf(payload, 'tenant_retention_purge');
  const summary = await withTenant(helpers, { organizationId }, async (client) => {
    const { rows } = await client.query<{ summary: PurgeSummary }>('select app_private.purge_deleted_records() as summary');
    return rows[0].summary;
  });
  helpers.logger.info('retention purge done', { organizationId, day, ...summary });
};
