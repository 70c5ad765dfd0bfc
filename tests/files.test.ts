// Files over real HTTP, as a frontend does it (docs/FILES.md): requestFileUpload → PUT the bytes
// to uploadUrl with plain fetch → completeFileUpload → downloadUrl → GET. Once with each driver:
// the local one (the default) and S3 against s3rver behind a SigV4-verifying front
// (tests/support/s3.ts). And what the flow refuses: another size or type, a file of another
// organization, a portal user outside their engagement, limits, an expired window; soft delete,
// purge and the scanning hook.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JobHelpers } from 'graphile-worker';
import type { Atrium } from '../src/index.ts';
import { fileDeleteObject, fileUploaded, fileUploadExpire } from '../src/worker/tasks/files.ts';
import { createStorage, type FileStorage } from '../src/storage/index.ts';
import { stagingKeyOf } from '../src/storage/types.ts';
import { closePools, pool, testConfig, unique } from './support/db.ts';
import { errorCode, gql, startTestApp, tokenFor } from './support/app.ts';
import { twoTenants, type Tenant } from './support/fixtures.ts';
import { startS3Harness, type S3Harness } from './support/s3.ts';

let a: Tenant;
let b: Tenant;
const tokens: Record<string, string> = {};
let s3: S3Harness;

beforeAll(async () => {
  [{ a, b }, s3] = await Promise.all([twoTenants(), startS3Harness()]);
  for (const [name, tenant] of [['a', a], ['b', b]] as const) {
    tokens[`${name}.owner`] = await tokenFor(tenant.owner, tenant.orgId);
    tokens[`${name}.member`] = await tokenFor(tenant.member, tenant.orgId);
    tokens[`${name}.viewer`] = await tokenFor(tenant.viewer, tenant.orgId);
    tokens[`${name}.portal`] = await tokenFor(tenant.portal, tenant.orgId);
  }
}, 120_000);
afterAll(async () => {
  await s3?.stop();
  await closePools();
});

const DRIVERS: Array<['local' | 's3', () => Record<string, string>]> = [
  ['local', () => ({})],
  ['s3', () => ({
    FILES_DRIVER: 's3', S3_ENDPOINT: s3.endpoint, S3_BUCKET: s3.bucket, S3_REGION: s3.region,
    S3_ACCESS_KEY_ID: s3.accessKeyId, S3_SECRET_ACCESS_KEY: s3.secretAccessKey, S3_FORCE_PATH_STYLE: 'true',
  })],
];

describe.each(DRIVERS)('with the %s driver', (driver, envOf) => {
  let app: Atrium;
  let url: string;
  /** The store the API uses (the same configuration): what the worker's file tasks get. */
  let store: FileStorage;

  beforeAll(async () => {
    const env = envOf();
    app = await startTestApp({ env });
    url = app.url!;
    store = await createStorage(testConfig(env).files, { publicUrl: url, jwtSecret: process.env.JWT_SECRET! });
  }, 120_000);
  afterAll(async () => {
    await store?.close();
    await app?.stop();
  });

  const FILE_FIELDS = 'rowId organizationId name contentType sizeBytes status scanStatus storageKey engagementId clientVisible uploadUrl { url method headers { name value } expiresAt } downloadUrl';

  interface Upload {
    url: string;
    method: string;
    headers: Array<{ name: string; value: string }>;
    expiresAt: string;
  }
  interface FileRow {
    rowId: string;
    organizationId: string;
    name: string;
    contentType: string;
    sizeBytes: string;
    status: string;
    scanStatus: string;
    storageKey: string;
    engagementId: string | null;
    clientVisible: boolean;
    uploadUrl: Upload | null;
    downloadUrl: string | null;
  }

  async function requestUpload(token: string, input: Record<string, unknown>) {
    return gql<{ requestFileUpload: { fileObject: FileRow } }>(url, `mutation($input: RequestFileUploadInput!) { requestFileUpload(input: $input) { fileObject { ${FILE_FIELDS} } } }`, { input }, token);
  }
  async function requested(token: string, input: Record<string, unknown>): Promise<FileRow> {
    const res = await requestUpload(token, input);
    expect(res.errors).toBeUndefined();
    return res.data!.requestFileUpload.fileObject;
  }
  async function complete(token: string, id: string) {
    return gql<{ completeFileUpload: { fileObject: FileRow } }>(url, `mutation($id: UUID!) { completeFileUpload(input: { id: $id }) { fileObject { ${FILE_FIELDS} } } }`, { id }, token);
  }
  async function fileById(token: string, orgId: string, id: string): Promise<FileRow | null> {
    const res = await gql<{ fileObject: FileRow | null }>(url, `query($o: UUID!, $id: UUID!) { fileObject(organizationId: $o, rowId: $id) { ${FILE_FIELDS} } }`, { o: orgId, id }, token);
    expect(res.errors).toBeUndefined();
    return res.data!.fileObject;
  }
  const put = (upload: Upload, body: Buffer, headers: Record<string, string> = Object.fromEntries(upload.headers.map((h) => [h.name, h.value]))) =>
    fetch(upload.url, { method: upload.method, body, headers });

  /** Request, upload and complete a file; returns the completed row. */
  async function uploaded(token: string, bytes: Buffer, input: Record<string, unknown>): Promise<FileRow> {
    const file = await requested(token, { sizeBytes: String(bytes.length), ...input });
    expect((await put(file.uploadUrl!, bytes)).status).toBe(200);
    const done = await complete(token, file.rowId);
    expect(done.errors).toBeUndefined();
    return done.data!.completeFileUpload.fileObject;
  }

  /** Runs a file task the way the worker does, on the worker's connection (the test's own job, not the queue's). */
  function helpersFor(jobId = '0'): JobHelpers {
    return {
      withPgClient: async (fn: (client: unknown) => Promise<unknown>) => {
        const client = await pool('worker').connect();
        try {
          return await fn(client);
        } finally {
          client.release();
        }
      },
      logger: { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined },
      job: { id: jobId, task_identifier: 'test' },
    } as unknown as JobHelpers;
  }
  const storage = () => store;
  const stored = async (key: string) => (await store.head(key)) !== null;
  /** The URL with one character of its signature changed. */
  const tampered = (signed: string) => signed.replace(/(signature=)(.)/i, (_m, name: string, c: string) => `${name}${c === 'a' ? 'b' : 'a'}`);

  describe('upload, complete, download (member)', () => {
    test('the whole flow with plain fetch, audited, the key made by the server', async () => {
      const bytes = randomBytes(64 * 1024 + 7);
      const file = await requested(tokens['a.member'], { name: 'Brief ü.pdf', contentType: 'application/pdf', sizeBytes: String(bytes.length), projectId: a.projectId });
      expect(file).toMatchObject({ status: 'pending', scanStatus: 'pending', organizationId: a.orgId, engagementId: a.engagementId, clientVisible: false, downloadUrl: null });
      expect(file.storageKey).toBe(`org/${a.orgId}/${file.rowId}`);
      expect(file.uploadUrl).toMatchObject({ method: 'PUT', headers: [{ name: 'content-type', value: 'application/pdf' }] });
      expect(new Date(file.uploadUrl!.expiresAt).getTime()).toBeGreaterThan(Date.now());

      // Completing before the bytes are there is refused.
      expect(errorCode(await complete(tokens['a.member'], file.rowId))).toBe('FILE_NOT_UPLOADED');

      expect((await put(file.uploadUrl!, bytes)).status).toBe(200);
      const done = (await complete(tokens['a.member'], file.rowId)).data!.completeFileUpload.fileObject;
      expect(done).toMatchObject({ status: 'available', uploadUrl: null });
      // A member may download before the scan; the link serves the same bytes, as an attachment.
      const response = await fetch(done.downloadUrl!);
      expect(response.status).toBe(200);
      expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);
      expect(response.headers.get('content-type')).toBe('application/pdf');
      expect(response.headers.get('content-disposition')).toContain("filename*=UTF-8''Brief%20%C3%BC.pdf");
      // Served from the API's own origin, a local file is never sniffed or run as a page there (an
      // S3 store serves from its own origin).
      if (driver === 'local') expect(response.headers.get('x-content-type-options')).toBe('nosniff');

      // A second completion changes nothing.
      const again = await complete(tokens['a.member'], file.rowId);
      expect(again.errors).toBeUndefined();
      expect(again.data!.completeFileUpload.fileObject.status).toBe('available');

      // Audited like every change: the insert and the completion.
      const { rows } = await pool('owner').query(
        `select action, new_values ->> 'status' as status from app_public.activity_events where table_name = 'file_objects' and record_id = $1 order by occurred_at, id`,
        [file.rowId],
      );
      expect(rows).toEqual([{ action: 'insert', status: 'pending' }, { action: 'update', status: 'available' }]);
    });

    test('the client cannot choose the key or the status: requestFileUpload takes neither, and there is no createFileObject', async () => {
      const res = await gql(url, 'mutation { createFileObject(input: { fileObject: { name: "x", sizeBytes: "1", storageKey: "org/x/y" } }) { clientMutationId } }', {}, tokens['a.member']);
      expect(res.errors?.[0].message).toMatch(/createFileObject/);
      const keyed = await requestUpload(tokens['a.member'], { name: 'x.pdf', contentType: 'application/pdf', sizeBytes: '1', storageKey: `org/${b.orgId}/x` });
      expect(keyed.errors?.[0].message).toMatch(/storageKey/);
    });

    test('an upload of another size or content type is refused by the URL, and one that got in anyway by completeFileUpload', async () => {
      const bytes = randomBytes(1000);
      const file = await requested(tokens['a.member'], { name: 'notes.txt', contentType: 'text/plain', sizeBytes: '1000', engagementId: a.engagementId });
      expect((await put(file.uploadUrl!, randomBytes(1001))).status).toBe(403);
      expect((await put(file.uploadUrl!, randomBytes(999))).status).toBe(403);
      expect((await put(file.uploadUrl!, bytes, { 'content-type': 'text/html' })).status).toBe(403);
      expect(await stored(stagingKeyOf(file.storageKey))).toBe(false);

      // An upload of another size anyway (by a store that does not check what its URLs signed):
      // completeFileUpload compares, deletes, refuses.
      const other = await store.presignUpload({ key: stagingKeyOf(file.storageKey), size: 5, contentType: 'text/plain', expiresInSeconds: 60 });
      expect((await fetch(other.url, { method: 'PUT', body: 'short', headers: other.headers })).status).toBe(200);
      const mismatch = await complete(tokens['a.member'], file.rowId);
      expect(errorCode(mismatch)).toBe('FILE_UPLOAD_MISMATCH');
      expect(await stored(file.storageKey)).toBe(false);
      expect(await stored(stagingKeyOf(file.storageKey))).toBe(false);
      // The window is still open: the right bytes can still be uploaded and completed.
      expect((await put(file.uploadUrl!, bytes)).status).toBe(200);
      const done = (await complete(tokens['a.member'], file.rowId)).data!.completeFileUpload.fileObject;
      expect(done.status).toBe('available');
      // Served as exactly the type it was stored with (no charset added on the way).
      const response = await fetch(done.downloadUrl!);
      expect(response.headers.get('content-type')).toBe('text/plain');
      expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);
    });

    test('limits per organization: size and content type (FILE_TOO_LARGE, FILE_TYPE_NOT_ALLOWED), changed by an admin', async () => {
      expect(errorCode(await requestUpload(tokens['a.member'], { name: 'huge.zip', contentType: 'application/zip', sizeBytes: String(100 * 1024 * 1024 + 1) }))).toBe('FILE_TOO_LARGE');
      expect(errorCode(await requestUpload(tokens['a.member'], { name: 'run.exe', contentType: 'application/x-msdownload', sizeBytes: '10' }))).toBe('FILE_TYPE_NOT_ALLOWED');
      expect(errorCode(await requestUpload(tokens['a.member'], { name: 'x', contentType: 'not a type', sizeBytes: '10' }))).toBe('INVALID_VALUE');
      // Families: image/* accepts any image.
      await requested(tokens['a.member'], { name: 'logo.webp', contentType: 'image/webp', sizeBytes: '10' });

      const update = (token: string, patch: Record<string, unknown>, orgId = a.orgId) =>
        gql(url, 'mutation($o: UUID!, $p: OrganizationPatch!) { updateOrganization(input: { rowId: $o, patch: $p }) { organization { fileMaxBytes fileContentTypes } } }', { o: orgId, p: patch }, token);
      const changed = await update(tokens['a.owner'], { fileMaxBytes: '2048', fileContentTypes: ['application/pdf', 'application/x-msdownload'] });
      expect(changed.errors).toBeUndefined();
      try {
        expect(errorCode(await requestUpload(tokens['a.member'], { name: 'a.pdf', contentType: 'application/pdf', sizeBytes: '2049' }))).toBe('FILE_TOO_LARGE');
        await requested(tokens['a.member'], { name: 'tool.exe', contentType: 'application/x-msdownload', sizeBytes: '2048' });
        expect(errorCode(await requestUpload(tokens['a.member'], { name: 'logo.webp', contentType: 'image/webp', sizeBytes: '10' }))).toBe('FILE_TYPE_NOT_ALLOWED');
        // Members cannot change the limits; nonsense is refused.
        expect((await update(tokens['a.member'], { fileMaxBytes: '10' })).errors).toBeDefined();
        expect((await update(tokens['a.owner'], { fileContentTypes: ['PDF'] })).errors).toBeDefined();
        expect((await update(tokens['a.owner'], { fileMaxBytes: String(6 * 1024 ** 3) })).errors).toBeDefined();
      } finally {
        await update(tokens['a.owner'], { fileMaxBytes: String(100 * 1024 * 1024), fileContentTypes: ['application/pdf', 'text/plain', 'text/csv', 'image/*'] });
      }
    });

    test('viewers cannot upload; attachments must agree with the engagement', async () => {
      expect(errorCode(await requestUpload(tokens['a.viewer'], { name: 'x.pdf', contentType: 'application/pdf', sizeBytes: '1' }))).toBe('FORBIDDEN');
      const other = await pool('owner').query(`select id from app_public.engagements where organization_id = $1 and id <> $2 limit 1`, [a.orgId, a.engagementId]);
      if (other.rows[0]) {
        expect(errorCode(await requestUpload(tokens['a.member'], { name: 'x.pdf', contentType: 'application/pdf', sizeBytes: '1', taskId: a.taskId, engagementId: other.rows[0].id }))).toBe('INVALID_VALUE');
      }
      expect(errorCode(await requestUpload(tokens['a.member'], { name: 'x.pdf', contentType: 'application/pdf', sizeBytes: '1', taskId: a.taskId, projectId: a.projectId }))).toBe('CONSTRAINT_VIOLATION');
    });
  });

  describe('isolation between organizations', () => {
    test("another organization's file answers exactly like a random id, and its URLs cannot be bent to another key", async () => {
      const bytes = randomBytes(300);
      const mine = await uploaded(tokens['b.member'], bytes, { name: 'b.pdf', contentType: 'application/pdf', engagementId: b.engagementId });
      const random = crypto.randomUUID();
      for (const id of [mine.rowId, random]) {
        expect(await fileById(tokens['a.owner'], b.orgId, id)).toBeNull();
        expect(await fileById(tokens['a.owner'], a.orgId, id)).toBeNull();
      }
      const theirs = await complete(tokens['a.owner'], mine.rowId);
      const none = await complete(tokens['a.owner'], random);
      expect(errorCode(theirs)).toBe('NOT_FOUND');
      expect(theirs.errors).toEqual(none.errors);

      // A's upload URL with B's key in its path: refused, B's object untouched.
      const pending = await requested(tokens['a.member'], { name: 'a.pdf', contentType: 'application/pdf', sizeBytes: '300' });
      const bent = pending.uploadUrl!.url.replace(encodeURIComponent(a.orgId), encodeURIComponent(b.orgId)).replace(pending.rowId, mine.rowId);
      expect(bent).not.toBe(pending.uploadUrl!.url);
      expect((await fetch(bent, { method: 'PUT', body: randomBytes(300), headers: { 'content-type': 'application/pdf' } })).status).toBe(403);
      expect(await stored(stagingKeyOf(mine.storageKey))).toBe(false);
      expect(Buffer.from(await (await fetch((await store.presignDownload({ key: mine.storageKey, fileName: 'b.pdf', contentType: 'application/pdf', expiresInSeconds: 60 })).url)).arrayBuffer()).equals(bytes)).toBe(true);
      // A's download URL bent to B's key: refused.
      const aFile = await uploaded(tokens['a.member'], randomBytes(300), { name: 'a2.pdf', contentType: 'application/pdf' });
      const bentDownload = aFile.downloadUrl!.replace(encodeURIComponent(a.orgId), encodeURIComponent(b.orgId)).replace(aFile.rowId, mine.rowId);
      expect((await fetch(bentDownload)).status).toBe(403);
      // A tampered signature is refused.
      expect(tampered(aFile.downloadUrl!)).not.toBe(aFile.downloadUrl);
      expect((await fetch(tampered(aFile.downloadUrl!))).status).toBe(403);
      expect((await fetch(aFile.downloadUrl!)).status).toBe(200);
    });

    test('only the uploader gets the upload URL; other members see the pending file without one', async () => {
      const file = await requested(tokens['a.member'], { name: 'draft.pdf', contentType: 'application/pdf', sizeBytes: '10' });
      expect((await fileById(tokens['a.owner'], a.orgId, file.rowId))!.uploadUrl).toBeNull();
      expect((await fileById(tokens['a.member'], a.orgId, file.rowId))!.uploadUrl).not.toBeNull();
    });
  });

  describe('client portal', () => {
    test('portal users upload client-visible files to their engagement only, and download only clean files', async () => {
      const bytes = randomBytes(2048);
      const file = await requested(tokens['a.portal'], { name: 'signed.pdf', contentType: 'application/pdf', sizeBytes: '2048', engagementId: a.engagementId });
      expect(file.clientVisible).toBe(true);
      expect((await put(file.uploadUrl!, bytes)).status).toBe(200);
      const done = (await complete(tokens['a.portal'], file.rowId)).data!.completeFileUpload.fileObject;
      expect(done.status).toBe('available');
      // Not scanned yet: no link for the portal user; the firm's members have one.
      expect(done.downloadUrl).toBeNull();
      expect((await fileById(tokens['a.member'], a.orgId, file.rowId))!.downloadUrl).not.toBeNull();

      // Outside their engagements (B's, or none): refused.
      expect(errorCode(await requestUpload(tokens['a.portal'], { name: 'x.pdf', contentType: 'application/pdf', sizeBytes: '1', engagementId: b.engagementId }))).toMatch(/FORBIDDEN|INVALID_REFERENCE/);
      expect(errorCode(await requestUpload(tokens['a.portal'], { name: 'x.pdf', contentType: 'application/pdf', sizeBytes: '1' }))).toBe('FORBIDDEN');
      expect(errorCode(await requestUpload(tokens['a.portal'], { name: 'x.pdf', contentType: 'application/pdf', sizeBytes: '1', engagementId: a.engagementId, clientVisible: false }))).toBe('FORBIDDEN');
      // Internal files of their engagement stay invisible.
      const internal = await uploaded(tokens['a.member'], randomBytes(10), { name: 'margins.pdf', contentType: 'application/pdf', engagementId: a.engagementId });
      expect(await fileById(tokens['a.portal'], a.orgId, internal.rowId)).toBeNull();
      expect(errorCode(await complete(tokens['a.portal'], internal.rowId))).toBe('NOT_FOUND');

      // Scanned clean (the default hook): now the portal user may download it.
      await fileUploaded({ storage: storage() })({ organization_id: a.orgId, file_id: file.rowId }, helpersFor());
      const clean = (await fileById(tokens['a.portal'], a.orgId, file.rowId))!;
      expect(clean.scanStatus).toBe('clean');
      const response = await fetch(clean.downloadUrl!);
      expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);
    });
  });

  describe('completions take turns', () => {
    /** Runs `fn` while another transaction holds `lock` (SQL over the owner's connection), then lets go. */
    async function whileLocked<T>(lock: string, params: unknown[], fn: () => Promise<T>): Promise<T> {
      const holder = await pool('owner').connect();
      try {
        await holder.query('begin');
        await holder.query(lock, params);
        return await fn();
      } finally {
        await holder.query('rollback');
        holder.release();
      }
    }

    test('a completion while another one of the same file runs answers RETRY; the expiry job waits for it', async () => {
      const file = await requested(tokens['a.member'], { name: 'busy.pdf', contentType: 'application/pdf', sizeBytes: '8' });
      expect((await put(file.uploadUrl!, Buffer.from('8 bytes!'))).status).toBe(200);
      const busy = await whileLocked('select pg_advisory_xact_lock(app_private.file_lock_key($1))', [file.rowId], () => complete(tokens['a.member'], file.rowId));
      expect(errorCode(busy)).toBe('RETRY');
      expect(busy.errors![0].message).toMatch(/being completed by another request/);
      // The expiry job, due while a completion holds the file, waits; then finds it available.
      const holder = await pool('authenticator').connect();
      try {
        await holder.query('begin');
        await holder.query(`select set_config('role', $1, true), set_config('app.user_id', $2, true), set_config('app.session_id', $3, true), set_config('app.org_id', $4, true)`, [
          process.env.DATABASE_VISITOR, a.member.userId, a.member.sessionId, a.orgId,
        ]);
        await holder.query('select app_private.begin_file_completion($1)', [file.rowId]);
        await pool('owner').query(`update app_public.file_objects set upload_expires_at = now() + interval '0.2 second' where organization_id = $1 and id = $2`, [a.orgId, file.rowId]);
        await holder.query('select app_private.complete_file_upload($1)', [file.rowId]);
        await new Promise((resolve) => setTimeout(resolve, 300));
        let expired = false;
        const expiry = Promise.resolve(fileUploadExpire({ storage: storage() })({ organization_id: a.orgId, file_id: file.rowId }, helpersFor())).then(() => (expired = true));
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(expired).toBe(false);
        await holder.query('commit');
        await expiry;
      } finally {
        await holder.query('rollback').catch(() => undefined);
        holder.release();
      }
      expect((await fileById(tokens['a.member'], a.orgId, file.rowId))!.status).toBe('available');
    });

    test('at most two completions of one organization run at once', async () => {
      const file = await requested(tokens['a.member'], { name: 'third.pdf', contentType: 'application/pdf', sizeBytes: '8' });
      expect((await put(file.uploadUrl!, Buffer.from('8 bytes!'))).status).toBe(200);
      const slots = `select pg_advisory_xact_lock(hashtext('file completions:' || $1), 1), pg_advisory_xact_lock(hashtext('file completions:' || $1), 2)`;
      const third = await whileLocked(slots, [a.orgId], () => complete(tokens['a.member'], file.rowId));
      expect(errorCode(third)).toBe('RETRY');
      // Another organization is not held up.
      const theirs = await requested(tokens['b.member'], { name: 'b.pdf', contentType: 'application/pdf', sizeBytes: '8' });
      expect((await put(theirs.uploadUrl!, Buffer.from('8 bytes!'))).status).toBe(200);
      const other = await whileLocked(slots, [a.orgId], () => complete(tokens['b.member'], theirs.rowId));
      expect(other.errors).toBeUndefined();
      expect((await complete(tokens['a.member'], file.rowId)).errors).toBeUndefined();
    });
  });

  describe('attachments', () => {
    test('a file attached to a record belongs to that record\'s engagement', async () => {
      const { rows: [e] } = await pool('owner').query(
        `select e.contract_id, c.proposal_id, (select id from app_public.messages m where m.organization_id = e.organization_id and m.thread_id = $3 limit 1) as message_id,
                (select id from app_public.bills b where b.organization_id = e.organization_id and b.engagement_id = e.id limit 1) as bill_id
         from app_public.engagements e join app_public.contracts c on c.organization_id = e.organization_id and c.id = e.contract_id
         where e.organization_id = $1 and e.id = $2`,
        [a.orgId, a.engagementId, a.clientThreadId],
      );
      const targets = { projectId: a.projectId, taskId: a.taskId, messageId: e.message_id, proposalId: e.proposal_id, contractId: e.contract_id, invoiceId: a.invoiceId, billId: e.bill_id };
      for (const [key, value] of Object.entries(targets)) {
        expect({ key, value: typeof value }).toEqual({ key, value: 'string' });
        const file = await requested(tokens['a.owner'], { name: `${key}.pdf`, contentType: 'application/pdf', sizeBytes: '1', [key]: value });
        expect({ key, engagementId: file.engagementId }).toEqual({ key, engagementId: a.engagementId });
      }
    });

    test("a client's file with an engagement of another client is refused", async () => {
      const { rows } = await pool('owner').query(`select id from app_public.client_companies where organization_id = $1 and id <> $2 limit 1`, [a.orgId, a.clientId]);
      expect(errorCode(await requestUpload(tokens['a.member'], { name: 'x.pdf', contentType: 'application/pdf', sizeBytes: '1', clientId: rows[0].id, engagementId: a.engagementId }))).toBe('INVALID_VALUE');
      const ok = await requested(tokens['a.member'], { name: 'x.pdf', contentType: 'application/pdf', sizeBytes: '1', clientId: a.clientId, engagementId: a.engagementId });
      expect(ok.engagementId).toBe(a.engagementId);
    });

    test('portal users attach to their engagement or a message they can read there, nothing internal', async () => {
      const { rows: [clientMessage] } = await pool('owner').query(`select id from app_public.messages where organization_id = $1 and thread_id = $2 limit 1`, [a.orgId, a.clientThreadId]);
      const { rows: [internalMessage] } = await pool('owner').query(`select id from app_public.messages where organization_id = $1 and thread_id = $2 limit 1`, [a.orgId, a.internalThreadId]);
      const input = { name: 'x.pdf', contentType: 'application/pdf', sizeBytes: '1' };
      if (clientMessage) expect((await requestUpload(tokens['a.portal'], { ...input, messageId: clientMessage.id })).errors).toBeUndefined();
      if (internalMessage) expect(errorCode(await requestUpload(tokens['a.portal'], { ...input, messageId: internalMessage.id }))).toBe('FORBIDDEN');
      expect(clientMessage ?? internalMessage).toBeDefined();
      for (const target of [{ taskId: a.taskId }, { projectId: a.projectId }, { invoiceId: a.invoiceId }, { clientId: a.clientId, engagementId: a.engagementId }]) {
        expect({ target, code: errorCode(await requestUpload(tokens['a.portal'], { ...input, ...target })) }).toEqual({ target, code: 'FORBIDDEN' });
      }
    });
  });

  describe('jobs: scanning, expiry, purge', () => {
    test('the scanning hook: the scanner gets a download URL; an infected file cannot be downloaded by anyone', async () => {
      const seen: Array<Record<string, unknown>> = [];
      let bytesSeen: Buffer | undefined;
      const scanner = http.createServer((req, res) => {
        let body = '';
        req.on('data', (c) => (body += c));
        req.on('end', async () => {
          const request = JSON.parse(body) as Record<string, unknown>;
          seen.push(request);
          bytesSeen = Buffer.from(await (await fetch(request.downloadUrl as string)).arrayBuffer());
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ verdict: 'infected' }));
        });
      });
      await new Promise<void>((resolve) => scanner.listen(0, '127.0.0.1', resolve));
      try {
        const bytes = Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*');
        const file = await uploaded(tokens['a.member'], bytes, { name: 'eicar.txt', contentType: 'text/plain', engagementId: a.engagementId, clientVisible: true });
        const scanUrl = `http://127.0.0.1:${(scanner.address() as AddressInfo).port}/scan`;
        await fileUploaded({ storage: storage(), scanUrl })({ organization_id: a.orgId, file_id: file.rowId }, helpersFor());
        expect(seen).toEqual([expect.objectContaining({ organizationId: a.orgId, fileId: file.rowId, name: 'eicar.txt', contentType: 'text/plain', sizeBytes: bytes.length })]);
        expect(bytesSeen!.equals(bytes)).toBe(true);
        const infected = (await fileById(tokens['a.owner'], a.orgId, file.rowId))!;
        expect(infected).toMatchObject({ scanStatus: 'infected', downloadUrl: null });
        expect(await fileById(tokens['a.portal'], a.orgId, file.rowId)).toMatchObject({ downloadUrl: null });
      } finally {
        await new Promise((resolve) => scanner.close(resolve));
      }
    });

    test('a scanner that fails makes the job fail (and be retried); the file stays unscanned', async () => {
      const file = await uploaded(tokens['a.member'], randomBytes(10), { name: 'x.pdf', contentType: 'application/pdf' });
      await expect(fileUploaded({ storage: storage(), scanUrl: 'http://127.0.0.1:9/scan', scanTimeoutMs: 5_000 })({ organization_id: a.orgId, file_id: file.rowId }, helpersFor())).rejects.toThrow();
      expect((await fileById(tokens['a.owner'], a.orgId, file.rowId))!.scanStatus).toBe('pending');
    });

    test('the upload URL, still valid after the completion, cannot change the completed bytes; the expiry job removes what it staged', async () => {
      const bytes = randomBytes(4096);
      const file = await requested(tokens['a.member'], { name: 'final.pdf', contentType: 'application/pdf', sizeBytes: '4096', engagementId: a.engagementId, clientVisible: true });
      expect((await put(file.uploadUrl!, bytes)).status).toBe(200);
      const done = (await complete(tokens['a.member'], file.rowId)).data!.completeFileUpload.fileObject;
      expect(done.status).toBe('available');
      // Scanned clean, then the same URL is used again with other bytes of the same size and type.
      await fileUploaded({ storage: storage() })({ organization_id: a.orgId, file_id: file.rowId }, helpersFor());
      const swapped = randomBytes(4096);
      expect((await put(file.uploadUrl!, swapped)).status).toBe(200);
      expect((await complete(tokens['a.member'], file.rowId)).errors).toBeUndefined();
      // What a portal user downloads is what was completed and scanned.
      const portalUrl = (await fileById(tokens['a.portal'], a.orgId, file.rowId))!.downloadUrl!;
      expect(Buffer.from(await (await fetch(portalUrl)).arrayBuffer()).equals(bytes)).toBe(true);
      // When the window has closed, the expiry job removes the staged leftover and keeps the file.
      expect(await stored(stagingKeyOf(file.storageKey))).toBe(true);
      await fileUploadExpire({ storage: storage() })({ organization_id: a.orgId, file_id: file.rowId }, helpersFor());
      expect(await stored(stagingKeyOf(file.storageKey))).toBe(false);
      expect(await stored(file.storageKey)).toBe(true);
      expect((await fileById(tokens['a.member'], a.orgId, file.rowId))!.status).toBe('available');
    });

    test('an upload never completed: refused after its window, then deleted with whatever was uploaded', async () => {
      const file = await requested(tokens['a.member'], { name: 'late.pdf', contentType: 'application/pdf', sizeBytes: '4' });
      expect((await put(file.uploadUrl!, Buffer.from('late'))).status).toBe(200);
      const { rows: jobs } = await pool('owner').query(`select run_at from graphile_worker._private_jobs where key = $1`, [`file_upload_expire:${file.rowId}`]);
      expect(jobs).toHaveLength(1);
      // Its window closes (as if FILE_UPLOAD_URL_TTL_SECONDS had passed).
      await pool('owner').query(`update app_public.file_objects set upload_expires_at = now() - interval '1 second' where organization_id = $1 and id = $2`, [a.orgId, file.rowId]);
      expect(errorCode(await complete(tokens['a.member'], file.rowId))).toBe('FILE_UPLOAD_EXPIRED');
      expect((await fileById(tokens['a.member'], a.orgId, file.rowId))!.uploadUrl).toBeNull();

      // (Here the row goes first; what was staged is left to the delete job below.)
      const keep: FileStorage = { ...store, delete: async () => undefined };
      await fileUploadExpire({ storage: keep })({ organization_id: a.orgId, file_id: file.rowId }, helpersFor());
      expect(await fileById(tokens['a.owner'], a.orgId, file.rowId)).toBeNull();
      // The deletion queued the removal of the object; the job removes it.
      const { rows } = await pool('owner').query(`select payload from graphile_worker._private_jobs where key = $1`, [`file_delete_object:${file.rowId}`]);
      expect(rows).toEqual([{ payload: { organization_id: a.orgId, file_id: file.rowId, storage_key: file.storageKey } }]);
      expect(await stored(stagingKeyOf(file.storageKey))).toBe(true);
      await fileDeleteObject({ storage: storage() })(rows[0].payload, helpersFor());
      expect(await stored(stagingKeyOf(file.storageKey))).toBe(false);
      expect(await stored(file.storageKey)).toBe(false);
    });

    test('soft delete hides the file (and its link); the retention purge deletes the row and then the object', async () => {
      const file = await uploaded(tokens['a.member'], randomBytes(500), { name: 'old.pdf', contentType: 'application/pdf', engagementId: a.engagementId });
      const del = await gql<{ softDeleteFileObject: { fileObject: FileRow } }>(url, 'mutation($id: UUID!) { softDeleteFileObject(input: { id: $id }) { fileObject { deletedAt downloadUrl } } }', { id: file.rowId }, tokens['a.member']);
      expect(del.errors).toBeUndefined();
      // No new link for a deleted file: not in the mutation's answer, not in the list of deleted files.
      expect(del.data!.softDeleteFileObject.fileObject).toMatchObject({ deletedAt: expect.any(String), downloadUrl: null });
      const deleted = await gql<{ deletedFileObjects: { nodes: Array<{ rowId: string; downloadUrl: string | null }> } }>(url, '{ deletedFileObjects { nodes { rowId downloadUrl } } }', {}, tokens['a.owner']);
      expect(deleted.errors).toBeUndefined();
      expect(deleted.data!.deletedFileObjects.nodes.find((n) => n.rowId === file.rowId)).toEqual({ rowId: file.rowId, downloadUrl: null });
      expect(await fileById(tokens['a.member'], a.orgId, file.rowId)).toBeNull();
      expect(await stored(file.storageKey)).toBe(true);

      // Past the retention window, the purge deletes the row …
      await pool('owner').query(`update app_public.file_objects set deleted_at = now() - interval '400 days' where organization_id = $1 and id = $2`, [a.orgId, file.rowId]);
      const client = await pool('worker').connect();
      try {
        await client.query('begin');
        await client.query(`select set_config('app.org_id', $1, true)`, [a.orgId]);
        await client.query('select app_private.purge_deleted_records()');
        await client.query('commit');
      } finally {
        client.release();
      }
      expect((await pool('owner').query('select 1 from app_public.file_objects where organization_id = $1 and id = $2', [a.orgId, file.rowId])).rowCount).toBe(0);
      // … and queues the object's deletion, which a store that does not answer makes fail (retried) …
      const { rows } = await pool('owner').query(`select payload, max_attempts from graphile_worker._private_jobs where key = $1`, [`file_delete_object:${file.rowId}`]);
      expect(rows).toHaveLength(1);
      const down: FileStorage = { ...store, delete: async () => { throw new Error('store down'); } };
      await expect(fileDeleteObject({ storage: down })(rows[0].payload, helpersFor())).rejects.toThrow('store down');
      expect(await stored(file.storageKey)).toBe(true);
      // … until it answers.
      await fileDeleteObject({ storage: storage() })(rows[0].payload, helpersFor());
      expect(await stored(file.storageKey)).toBe(false);
    });

    test('the delete job never deletes a live file\'s object, nor a key of another organization', async () => {
      const file = await uploaded(tokens['b.member'], randomBytes(100), { name: 'keep.pdf', contentType: 'application/pdf' });
      await fileDeleteObject({ storage: storage() })({ organization_id: b.orgId, file_id: file.rowId, storage_key: file.storageKey }, helpersFor());
      expect(await stored(file.storageKey)).toBe(true);
      await expect(
        fileDeleteObject({ storage: storage() })({ organization_id: a.orgId, file_id: file.rowId, storage_key: file.storageKey }, helpersFor()),
      ).rejects.toThrow(/storage_key/);
      expect(await stored(file.storageKey)).toBe(true);
    });
  });

  test('unique keys: two uploads never share an object', async () => {
    const [x, y] = await Promise.all([
      requested(tokens['a.member'], { name: unique('same'), contentType: 'text/plain', sizeBytes: '1' }),
      requested(tokens['a.member'], { name: unique('same'), contentType: 'text/plain', sizeBytes: '1' }),
    ]);
    expect(x.storageKey).not.toBe(y.storageKey);
  });
});
