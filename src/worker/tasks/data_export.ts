// data_export { organization_id, export_id }: makes an export (docs/EXPORT_AND_IMPORT.md) of any
// kind: an organization, a contact, a user. Queued by app_private.request_data_export
// (sql/functions/data_exports.sql: requestOrganizationExport, exportContact, exportUser,
// deleteOrganization) in the transaction that adds the row. Only workers given a file store take
// it (src/worker/index.ts). The payload carries ids only; what the export holds is the database's
// answer (app_private.export_sources).
//   1. app_private.start_data_export: requested → running (nothing to do if it is neither: a
//      retry after it finished, or it was removed);
//   2. reads the export's rows in one read-only snapshot on the worker's connection, inside
//      the organization (row-level security, as every task reads), into a zip in a temporary file
//      (src/export/writer.ts: pages through cursors, bounded memory);
//   3. stores the zip under the row's storage_key (exports/<organization>/<export>.zip, made by
//      the database);
//   4. checks it still holds the job, then app_private.finish_data_export: ready, expires_at, the
//      email to the requester and the expiry job.
// A failure is retried; the last attempt marks the export failed with the reason
// (app_private.fail_data_export) and deletes what it stored.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobHelpers, Task } from 'graphile-worker';
import type { PoolClient } from 'pg';
import type { ExportKind } from '../../export/format.ts';
import { writeExport } from '../../export/writer.ts';
import type { FileStorage } from '../../storage/index.ts';
import { assertOwnership } from '../fencing.ts';
import { failPermanently } from '../permanent.ts';
import { inTenantTransaction, organizationOf, withTenant } from '../tenant.ts';

export interface DataExportTaskOptions {
  storage: FileStorage;
  /** Where the zip is written before it is stored (default: the OS's temporary folder). */
  tmpDir?: string;
  /** Rows read per round trip (default PAGE_ROWS of src/export/writer.ts; tests use a few). */
  pageRows?: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function exportOf(payload: unknown, helpers: JobHelpers): Promise<{ organizationId: string; exportId: string }> {
  const organizationId = organizationOf(payload);
  const exportId = (payload as { export_id?: unknown }).export_id;
  if (typeof exportId !== 'string' || !UUID.test(exportId)) return failPermanently(helpers, 'job payload must carry export_id (a uuid)');
  return { organizationId, exportId };
}

interface StartedExport {
  id: string;
  kind: ExportKind;
  subject_id: string | null;
  storage_key: string;
}

export function dataExport(options: DataExportTaskOptions): Task {
  return async (payload, helpers) => {
    const { organizationId, exportId } = await exportOf(payload, helpers);
    const started = await withTenant(helpers, { organizationId }, async (client) =>
      (await client.query<StartedExport>('select id, kind, subject_id, storage_key from app_private.start_data_export($1)', [exportId])).rows[0]);
    if (!started) return;
    const dir = fs.mkdtempSync(path.join(options.tmpDir ?? os.tmpdir(), 'atrium-export-'));
    const file = path.join(dir, 'export.zip');
    let stored = false;
    try {
      const written = await helpers.withPgClient((client) =>
        inTenantTransaction(client as PoolClient, { organizationId }, () =>
          writeExport(client as PoolClient, { organizationId, exportId, kind: started.kind, subjectId: started.subject_id, file, pageRows: options.pageRows }), { snapshot: true }));
      await options.storage.putFile(started.storage_key, file, 'application/zip');
      stored = true;
      await assertOwnership(helpers);
      const rowCounts = Object.fromEntries(written.manifest.tables.map((t) => [t.name, t.rows]));
      await withTenant(helpers, { organizationId }, (client) =>
        client.query('select app_private.finish_data_export($1, $2, $3)', [exportId, written.byteSize, JSON.stringify(rowCounts)]));
      helpers.logger.info('export ready', { organizationId, exportId, kind: started.kind, byteSize: written.byteSize });
    } catch (error) {
      if (helpers.job.attempts >= helpers.job.max_attempts) {
        // The last attempt: the export failed for good (the reason is ours, never a row's values).
        await withTenant(helpers, { organizationId }, (client) =>
          client.query('select app_private.fail_data_export($1, $2)', [exportId, (error as Error).message]));
        if (stored) await options.storage.delete(started.storage_key).catch(() => undefined);
      }
      throw error;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}
