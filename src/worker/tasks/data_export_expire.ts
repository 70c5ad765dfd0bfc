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
// deleted (its organization was deleted: sql/functions/organization_deletion.sql) goes too. The key
// is made from the ids, never read from the payload, so the job can delete nothing else.
export function dataExportDeleteObject(options: DataExportTaskOptions): Task {
  return async (payload, helpers) => {
    const { organizationId, exportId } = await exportOf(payload, helpers);
    await options.storage.delete(`exports/${organizationId}/${exportId}.zip`);
    helpers.logger.info('deleted export: its zip is deleted', { organizationId, exportId });
  };
}
