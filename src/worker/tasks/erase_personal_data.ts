// erase_personal_data: runs one erasure (eraseContact) in its organization, in one transaction:
// live rows, the activity log, webhook deliveries, email records and queued jobs lose the
// person's data (app_private.run_erasure, sql/functions/erasure.sql). Payload:
// { organization_id, erasure_id, actor_id } (ids only: the person's data never enters a job).
// Idempotent: a done erasure is left alone. The log line has counts per table, never values.
import type { Task } from 'graphile-worker';
import { organizationOf, withTenant } from '../tenant.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const erase_personal_data: Task = async (payload, helpers) => {
  const organizationId = organizationOf(payload);
  const { erasure_id: erasureId, actor_id: actorId } = payload as { erasure_id?: unknown; actor_id?: unknown };
  if (typeof erasureId !== 'string' || !UUID.test(erasureId)) throw new Error('erase_personal_data: the payload names no erasure_id');
  const redacted = await withTenant(helpers, { organizationId, actorId: typeof actorId === 'string' && UUID.test(actorId) ? actorId : null }, async (client) => {
    const { rows } = await client.query<{ redacted: Record<string, number> | null }>('select app_private.run_erasure($1) as redacted', [erasureId]);
    return rows[0].redacted;
  });
  helpers.logger.info(redacted ? 'erasure done' : 'erasure already done', { organizationId, erasureId, redacted });
};
