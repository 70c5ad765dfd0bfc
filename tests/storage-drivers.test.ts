// The object-storage drivers (src/storage/) keep one contract, checked here against both with
// the same cases and plain `fetch`, as a browser would use the URLs: the local driver served by
// a bare HTTP server, and the s3 driver against s3rver behind a SigV4-verifying front
// (tests/support/s3.ts says why the front). A presigned upload is bound to one key, one size and
// one content type and expires; a download is bound to one key and names the file; nothing about
// either URL can be changed; a store that cannot answer is StorageUnavailableError, not "absent".
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { byteRange, createLocalStorage, LOCAL_FILES_PATH, type LocalStorage } from '../src/storage/local.ts';
import { createS3Storage } from '../src/storage/s3.ts';
import { type FileStorage, StorageUnavailableError } from '../src/storage/types.ts';
import { startS3Harness, type S3Harness } from './support/s3.ts';

interface Running {
  storage: FileStorage;
  stop(): Promise<void>;
}

interface Target {
  driver: 'local' | 's3';
  start(): Promise<Running>;
  /** A driver whose store cannot answer. */
  dead(): Promise<FileStorage>;
}

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-storage-test-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

function listen(server: http.Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

async function startLocal(dir: string): Promise<Running> {
  let storage: LocalStorage | undefined;
  const app = express();
  app.use(LOCAL_FILES_PATH, (req, res) => storage!.handle(req, res));
  const server = http.createServer(app);
  const baseUrl = await listen(server);
  storage = createLocalStorage({ dir, baseUrl, signingKey: Buffer.from('a test signing key of thirty-two bytes!') });
  return {
    storage,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const s3Storage = (h: Pick<S3Harness, 'bucket' | 'region' | 'accessKeyId' | 'secretAccessKey'>, endpoint: string) =>
  createS3Storage({ endpoint, publicEndpoint: undefined, bucket: h.bucket, region: h.region, accessKeyId: h.accessKeyId, secretAccessKey: h.secretAccessKey, forcePathStyle: true });

const targets: Target[] = [
  {
    driver: 'local',
    start: () => startLocal(fs.mkdtempSync(path.join(tmpRoot, 'files-'))),
    // A folder that cannot exist (its parent is a file): every operation fails, even as root.
    async dead() {
      const file = path.join(tmpRoot, `not-a-folder-${randomUUID()}`);
      fs.writeFileSync(file, '');
      return createLocalStorage({ dir: path.join(file, 'files'), baseUrl: 'http://127.0.0.1:9', signingKey: Buffer.from('a test signing key of thirty-two bytes!') });
    },
  },
  {
    driver: 's3',
    async start() {
      const harness = await startS3Harness();
      const storage = await s3Storage(harness, harness.endpoint);
      return {
        storage,
        async stop() {
          await storage.close();
          await harness.stop();
        },
      };
    },
    // A store that was there and stopped: nothing listens at its address any more.
    async dead() {
      const harness = await startS3Harness();
      await harness.stop();
      return s3Storage(harness, harness.endpoint);
    },
  },
];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Waits until `at` has passed by a margin (the stores count whole seconds). */
const waitPast = (at: Date) => sleep(Math.max(0, at.getTime() - Date.now()) + 1_100);

/** Keys as the database makes them: org/<organization id>/<file id>. */
const keyOf = (org = randomUUID()) => `org/${org}/${randomUUID()}`;

const put = (url: string, headers: Record<string, string>, body: Uint8Array | string) => fetch(url, { method: 'PUT', headers, body });

/** Replaces the signature parameter (local: `signature`, s3: `X-Amz-Signature`) with one of the same form. */
function tamper(url: string): string {
  const u = new URL(url);
  const name = ['X-Amz-Signature', 'signature'].find((n) => u.searchParams.has(n))!;
  const value = u.searchParams.get(name)!;
  u.searchParams.set(name, `${value[0] === 'a' ? 'b' : 'a'}${value.slice(1)}`);
  return u.toString();
}

describe.each(targets)('$driver driver', (target) => {
  let running: Running;
  let storage: FileStorage;
  beforeAll(async () => {
    running = await target.start();
    storage = running.storage;
  });
  afterAll(() => running?.stop());

  const body = Buffer.from('%PDF-1.7 not really a PDF, but 52 bytes of one\n\u0000\u00ff', 'latin1');
  const upload = (key: string, overrides: { size?: number; contentType?: string; expiresInSeconds?: number } = {}) =>
    storage.presignUpload({ key, size: body.length, contentType: 'application/pdf', expiresInSeconds: 300, ...overrides });
  const stored = async (key: string) => {
    const presigned = await upload(key);
    const res = await put(presigned.url, presigned.headers, body);
    expect(res.status).toBe(200);
  };

  test('an upload through the presigned URL with its headers is stored with its size and type', async () => {
    const key = keyOf();
    const presigned = await upload(key);
    expect(presigned.method).toBe('PUT');
    expect(presigned.headers).toEqual({ 'content-type': 'application/pdf' });
    expect(presigned.expiresAt.getTime()).toBeGreaterThan(Date.now() + 290_000);
    const res = await put(presigned.url, presigned.headers, body);
    expect(res.status).toBe(200);
    expect(await storage.head(key)).toEqual({ size: body.length, contentType: 'application/pdf' });
  });

  test('a download returns the same bytes, the content type and the file name (non-ASCII too)', async () => {
    const key = keyOf();
    await stored(key);
    const presigned = await storage.presignDownload({ key, fileName: 'Überweisung März "2026".pdf', contentType: 'application/pdf', expiresInSeconds: 300 });
    const res = await fetch(presigned.url);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer())).toEqual(body);
    expect(res.headers.get('content-type')).toBe('application/pdf');
    expect(res.headers.get('content-disposition')).toBe(
      `attachment; filename="_berweisung M_rz _2026_.pdf"; filename*=UTF-8''%C3%9Cberweisung%20M%C3%A4rz%20%222026%22.pdf`,
    );
  });

  test('a download serves one byte range (a video seeks), and refuses one past the end', async () => {
    const key = keyOf();
    await stored(key);
    const { url } = await storage.presignDownload({ key, fileName: 'a.pdf', contentType: 'application/pdf', expiresInSeconds: 300 });
    const ranges: Array<[string, number, number]> = [['bytes=0-9', 0, 9], ['bytes=40-', 40, body.length - 1]];
    // The last n bytes: s3rver 3.7.1 serves `bytes=-5` as bytes 0-5 (AWS S3 and MinIO serve the
    // last five), so that form is checked on the local driver only.
    if (target.driver === 'local') ranges.push(['bytes=-5', body.length - 5, body.length - 1]);
    for (const [range, start, end] of ranges) {
      const res = await fetch(url, { headers: { range } });
      expect({ range, status: res.status, contentRange: res.headers.get('content-range') }).toEqual({ range, status: 206, contentRange: `bytes ${start}-${end}/${body.length}` });
      expect(Buffer.from(await res.arrayBuffer())).toEqual(body.subarray(start, end + 1));
    }
    const past = await fetch(url, { headers: { range: `bytes=${body.length}-` } });
    expect(past.status).toBe(416);
    await past.arrayBuffer();
  });

  test('expired upload and download URLs are refused', async () => {
    const key = keyOf();
    await stored(key);
    const other = keyOf();
    const [uploadUrl, downloadUrl] = await Promise.all([
      upload(other, { expiresInSeconds: 1 }),
      storage.presignDownload({ key, fileName: 'a.pdf', contentType: 'application/pdf', expiresInSeconds: 1 }),
    ]);
    await waitPast(uploadUrl.expiresAt > downloadUrl.expiresAt ? uploadUrl.expiresAt : downloadUrl.expiresAt);
    expect((await put(uploadUrl.url, uploadUrl.headers, body)).status).toBe(403);
    expect(await storage.head(other)).toBeNull();
    expect((await fetch(downloadUrl.url)).status).toBe(403);
  });

  test.each([
    ['one byte more', Buffer.concat([body, Buffer.from('!')])],
    ['one byte less', body.subarray(1)],
    ['nothing', Buffer.alloc(0)],
  ])('a body of another size than signed (%s) is refused and leaves no object', async (_, wrong) => {
    const key = keyOf();
    const presigned = await upload(key);
    expect((await put(presigned.url, presigned.headers, wrong)).status).toBe(403);
    expect(await storage.head(key)).toBeNull();
  });

  test('an upload with another Content-Type than signed is refused', async () => {
    const key = keyOf();
    const presigned = await upload(key);
    expect((await put(presigned.url, { 'content-type': 'text/html' }, body)).status).toBe(403);
    expect(await storage.head(key)).toBeNull();
  });

  test("a URL minted for one key cannot write another organization's key", async () => {
    const mine = keyOf();
    const theirs = keyOf();
    const presigned = await upload(mine);
    const url = new URL(presigned.url);
    expect(url.pathname.endsWith(`/${mine}`)).toBe(true);
    url.pathname = url.pathname.replace(mine, theirs);
    expect((await put(url.toString(), presigned.headers, body)).status).toBe(403);
    expect(await storage.head(theirs)).toBeNull();
    expect(await storage.head(mine)).toBeNull();
  });

  test("a download URL for one key cannot read another's", async () => {
    const [mine, theirs] = [keyOf(), keyOf()];
    await stored(theirs);
    const presigned = await storage.presignDownload({ key: mine, fileName: 'a.pdf', contentType: 'application/pdf', expiresInSeconds: 300 });
    const url = new URL(presigned.url);
    url.pathname = url.pathname.replace(mine, theirs);
    expect((await fetch(url)).status).toBe(403);
  });

  test('a tampered signature is refused, for uploads and downloads', async () => {
    const key = keyOf();
    const presigned = await upload(key);
    expect((await put(tamper(presigned.url), presigned.headers, body)).status).toBe(403);
    expect(await storage.head(key)).toBeNull();
    await stored(key);
    const download = await storage.presignDownload({ key, fileName: 'a.pdf', contentType: 'application/pdf', expiresInSeconds: 300 });
    expect((await fetch(tamper(download.url))).status).toBe(403);
  });

  test('delete removes the object, and deleting it again succeeds', async () => {
    const key = keyOf();
    await stored(key);
    await storage.delete(key);
    expect(await storage.head(key)).toBeNull();
    await expect(storage.delete(key)).resolves.toBeUndefined();
  });

  test('promote moves an object to another key with its type (replacing what is there), and put stores bytes from the server', async () => {
    const from = keyOf();
    const to = keyOf();
    await storage.put(to, Buffer.from('old'), 'text/plain');
    expect(await storage.head(to)).toEqual({ size: 3, contentType: 'text/plain' });
    await stored(from);
    expect(await storage.promote(from, to)).toEqual({ size: body.length, contentType: 'application/pdf' });
    expect(await storage.head(from)).toBeNull();
    const download = await storage.presignDownload({ key: to, fileName: 'a.pdf', contentType: 'application/pdf', expiresInSeconds: 300 });
    expect(Buffer.from(await (await fetch(download.url)).arrayBuffer()).equals(body)).toBe(true);
    // Nothing under the source: null, and the target is left as it is.
    expect(await storage.promote(keyOf(), to)).toBeNull();
    expect(await storage.head(to)).toEqual({ size: body.length, contentType: 'application/pdf' });
  });

  test('putFile streams a file of this machine into the store (data exports), and a download returns its bytes', async () => {
    const key = keyOf();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-putfile-'));
    try {
      const file = path.join(dir, 'export.zip');
      const bytes = Buffer.concat([body, Buffer.alloc(256 * 1024, 7)]);
      fs.writeFileSync(file, bytes);
      await storage.putFile(key, file, 'application/zip');
      expect(await storage.head(key)).toEqual({ size: bytes.length, contentType: 'application/zip' });
      const download = await storage.presignDownload({ key, fileName: 'export.zip', contentType: 'application/zip', expiresInSeconds: 300 });
      expect(Buffer.from(await (await fetch(download.url)).arrayBuffer()).equals(bytes)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('head of a key never written is null; check passes on a live store', async () => {
    expect(await storage.head(keyOf())).toBeNull();
    await expect(storage.check()).resolves.toBeUndefined();
  });

  test('a store that cannot answer is StorageUnavailableError for head, delete and check, not "absent"', async () => {
    const dead = await target.dead();
    try {
      const key = keyOf();
      await expect(dead.head(key)).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(dead.check()).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(dead.delete(key)).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(dead.promote(key, keyOf())).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(dead.put(key, Buffer.from('x'), 'text/plain')).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(dead.putFile(key, fileURLToPath(import.meta.url), 'text/plain')).rejects.toBeInstanceOf(StorageUnavailableError);
    } finally {
      await dead.close();
    }
  });
});

describe('s3 driver: S3_PUBLIC_ENDPOINT', () => {
  let harness: S3Harness;
  beforeAll(async () => {
    harness = await startS3Harness();
  });
  afterAll(() => harness?.stop());

  test('URLs are signed for the public endpoint (the host is signed) while head and delete use the internal one', async () => {
    // Internal: s3rver directly (as http://minio:9000 inside compose); public: the verifying front.
    const storage = await createS3Storage({
      endpoint: harness.unverifiedEndpoint,
      publicEndpoint: harness.endpoint,
      bucket: harness.bucket,
      region: harness.region,
      accessKeyId: harness.accessKeyId,
      secretAccessKey: harness.secretAccessKey,
      forcePathStyle: true,
    });
    try {
      const key = keyOf();
      const presigned = await storage.presignUpload({ key, size: 3, contentType: 'text/plain', expiresInSeconds: 300 });
      expect(presigned.url.startsWith(`${harness.endpoint}/${harness.bucket}/${key}?`)).toBe(true);
      expect((await put(presigned.url, presigned.headers, 'abc')).status).toBe(200);
      const download = await storage.presignDownload({ key, fileName: 'a.txt', contentType: 'text/plain', expiresInSeconds: 300 });
      expect(download.url.startsWith(`${harness.endpoint}/`)).toBe(true);
      expect(await (await fetch(download.url)).text()).toBe('abc');
      expect(await storage.head(key)).toEqual({ size: 3, contentType: 'text/plain' });
      await storage.delete(key);
      expect(await storage.head(key)).toBeNull();
    } finally {
      await storage.close();
    }
  });
});

test('byte ranges the local driver reads from a Range header', () => {
  expect(byteRange(undefined, 10)).toBeUndefined();
  expect(byteRange('bytes=2-4', 10)).toEqual({ start: 2, end: 4 });
  expect(byteRange('bytes=8-', 10)).toEqual({ start: 8, end: 9 });
  expect(byteRange('bytes=5-100', 10)).toEqual({ start: 5, end: 9 });
  expect(byteRange('bytes=-3', 10)).toEqual({ start: 7, end: 9 });
  expect(byteRange('bytes=-30', 10)).toEqual({ start: 0, end: 9 });
  expect(byteRange('bytes=10-', 10)).toBe('unsatisfiable');
  expect(byteRange('bytes=-0', 10)).toBe('unsatisfiable');
  // An empty file has no byte to serve.
  expect(byteRange('bytes=-5', 0)).toBe('unsatisfiable');
  expect(byteRange('bytes=0-', 0)).toBe('unsatisfiable');
  // What this driver does not serve is answered with the whole file.
  expect(byteRange('bytes=0-1,4-5', 10)).toBeUndefined();
  expect(byteRange('items=0-1', 10)).toBeUndefined();
  expect(byteRange('bytes=5-2', 10)).toBeUndefined();
});
