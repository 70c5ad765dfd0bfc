// The file jobs (docs/FILES.md, sql/functions/files.sql). Payloads carry ids and the storage key,
// never a URL: URLs are signed when the job runs.
//   file_uploaded       { organization_id, file_id }: the scanning hook. Without FILE_SCAN_URL the
//                       file is marked clean; with it, the scanner gets the file's details and a
//                       download URL and answers {"verdict": "clean" | "infected"}. A scanner that
//                       fails or does not answer is asked again (the job is retried).
//   file_upload_expire  { organization_id, file_id }: deletes a file still pending after its
//                       upload window (which queues the deletion of whatever was uploaded), and
//                       whatever its URL staged after a completion.
//   file_delete_object  { organization_id, file_id, storage_key }: deletes the bytes of a deleted
//                       file (and its staging object) from the store; retried until the store
//                       confirms.
import type { JobHelpers, Task } from 'graphile-worker';
import type { FileStorage } from '../../storage/index.ts';
import { stagingKeyOf } from '../../storage/types.ts';
import { failPermanently } from '../permanent.ts';
import { organizationOf, withTenant } from '../tenant.ts';

export interface FileTaskOptions {
  storage: FileStorage;
  /** FILE_SCAN_URL; undefined: every upload is marked clean. */
  scanUrl?: string;
  /** How long the scanner's download URL is valid. */
  scanDownloadTtlSeconds?: number;
  /** How long the scanner may take to answer (ms). */
  scanTimeoutMs?: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function fileOf(payload: unknown, helpers: JobHelpers): Promise<{ organizationId: string; fileId: string }> {
  const organizationId = organizationOf(payload);
  const fileId = (payload as { file_id?: unknown }).file_id;
  if (typeof fileId !== 'string' || !UUID.test(fileId)) return failPermanently(helpers, 'job payload must carry file_id (a uuid)');
  return { organizationId, fileId };
}

interface FileToScan {
  id: string;
  storage_key: string;
  name: string;
  content_type: string;
  size_bytes: string;
  scan_status: string;
}

export function fileUploaded(options: FileTaskOptions): Task {
  return async (payload, helpers) => {
    const { organizationId, fileId } = await fileOf(payload, helpers);
    const file = await withTenant(helpers, { organizationId }, async (client) =>
      (await client.query<FileToScan>('select * from app_private.file_to_scan($1)', [fileId])).rows[0]);
    // Deleted meanwhile, or already scanned (a retry after the verdict was recorded).
    if (!file || file.scan_status !== 'pending') return;
    let verdict = 'clean';
    if (options.scanUrl) {
      const download = await options.storage.presignDownload({
        key: file.storage_key,
        fileName: file.name,
        contentType: file.content_type,
        expiresInSeconds: options.scanDownloadTtlSeconds ?? 15 * 60,
      });
      const response = await fetch(options.scanUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ organizationId, fileId, name: file.name, contentType: file.content_type, sizeBytes: Number(file.size_bytes), downloadUrl: download.url }),
        signal: AbortSignal.timeout(options.scanTimeoutMs ?? 120_000),
      });
      if (!response.ok) throw new Error(`the file scanner answered HTTP ${response.status}`);
      const answer = (await response.json().catch(() => undefined)) as { verdict?: unknown } | undefined;
      if (answer?.verdict !== 'clean' && answer?.verdict !== 'infected') throw new Error('the file scanner must answer {"verdict": "clean"} or {"verdict": "infected"}');
      verdict = answer.verdict;
    }
    await withTenant(helpers, { organizationId }, (client) => client.query('select app_private.record_file_scan($1, $2)', [fileId, verdict]));
    if (verdict === 'infected') helpers.logger.warn('uploaded file is infected: it cannot be downloaded', { organizationId, fileId });
  };
}

export function fileUploadExpire(options: FileTaskOptions): Task {
  return async (payload, helpers) => {
    const { organizationId, fileId } = await fileOf(payload, helpers);
    const expired = await withTenant(helpers, { organizationId }, async (client) =>
      (await client.query<{ expired: boolean }>('select app_private.expire_file_upload($1) as expired', [fileId])).rows[0].expired);
    if (expired) helpers.logger.info('pending upload expired: file deleted', { organizationId, fileId });
    // The window is closed, its URL dead: whatever it staged after the completion goes.
    await options.storage.delete(stagingKeyOf(`org/${organizationId}/${fileId}`));
  };
}

export function fileDeleteObject(options: FileTaskOptions): Task {
  return async (payload, helpers) => {
    const { organizationId, fileId } = await fileOf(payload, helpers);
    const key = (payload as { storage_key?: unknown }).storage_key;
    // Only the key the database makes for this file (sql/functions/files.sql): a payload cannot
    // point the job at another organization's object.
    if (key !== `org/${organizationId}/${fileId}`) return failPermanently(helpers, 'job payload storage_key must be org/<organization_id>/<file_id>');
    const exists = await withTenant(helpers, { organizationId }, async (client) =>
      (await client.query<{ exists: boolean }>('select app_private.file_object_exists($1) as exists', [fileId])).rows[0].exists);
    if (exists) {
      helpers.logger.warn('file still exists: its object is kept', { organizationId, fileId });
      return;
    }
    await options.storage.delete(key);
    await options.storage.delete(stagingKeyOf(key));
    helpers.logger.info('file object deleted from the store', { organizationId, fileId });
  };
}
