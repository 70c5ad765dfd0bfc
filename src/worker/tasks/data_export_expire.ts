// data_export_expire { organization_id, export_id }: at an export's expires_at (queued by
// app_private.finish_data_export, sql/functions/data_exports.sql) the export becomes expired and
// its zip is deleted from the store; retried until the store confirms (a retry finds it expired
// and deletes again: deleting nothing succeeds). Only workers given a file store take it.
import type { Task } from 'graphile-worker';
import { withTenant } from '../tenant.ts';
import { exportOf, type DataExportTaskOptions } from './data_export.ts';

export function dataExportExpire(options: DataExportTaskOptions): Task {
  return async (payload, helpers) => {
    const { organizationId, exportId } = await exportOf(payload, helpers);
    const key = await withTenant(helpers, { organizationId }, async (client) =>
      (await client.query<{ key: string | null }>('select app_private.expire_data_export($1) as key', [exportId])).rows[0].key);
    if (key === null) return; // not ready, not yet due, or gone
    await options.storage.delete(key);
    helpers.logger.info('organization export expired: its zip is deleted', { organizationId, exportId });
  };
}

// data_export_delete_object { organization_id, export_id }: the zip of an export row that was
// deleted (its organization was deleted: sql/functions/organization_deletion.sql) goes too; the
// final export the purge kept goes when it expires (the job is queued for then; run earlier, it
// deletes nothing: app_private.release_kept_export), and its app_private.kept_exports row with it.
// The key is made from the ids, never read from the payload, so the job can delete nothing else.
export function dataExportDeleteObject(options: DataExportTaskOptions): Task {
  return async (payload, helpers) => {
    const { organizationId, exportId } = await exportOf(payload, helpers);
    const released = await helpers.withPgClient(async (client) =>
      (await client.query<{ released: boolean }>('select app_private.release_kept_export($1, $2) as released', [organizationId, exportId])).rows[0].released);
    if (!released) return; // kept for its owner until it expires
    await options.storage.delete(`exports/${organizationId}/${exportId}.zip`);
    helpers.logger.info('deleted export: its zip is deleted', { organizationId, exportId });
  };
}
