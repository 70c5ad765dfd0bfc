// The local driver: bytes under FILES_DIR, served by the API process itself at /files/<key>
// through URLs it signs the way S3 presigns its own: HMAC-SHA256 over the method, the key, the
// expiry and what the request must carry (the exact size and content type of an upload; the
// content type and file name of a download), so a URL for one key cannot touch another, and
// nothing about it can be changed without breaking the signature. The frontend code is the same
// as for S3: PUT the bytes with the given headers, GET the download URL.
//
// Uploads are written to a temporary file and renamed into place only when exactly the signed
// number of bytes arrived, so a failed or oversized upload never leaves a partial object. The
// content type is kept beside the object (`<key>.meta.json`). One machine only: several API
// processes on different machines need the s3 driver.
import { createHmac, hkdfSync, randomUUID, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { Request, Response } from 'express';
import {
  contentDisposition,
  type DownloadRequest,
  type FileStorage,
  type PresignedDownload,
  type PresignedUpload,
  type StoredObject,
  StorageUnavailableError,
  type UploadRequest,
} from './types.ts';

/** Where the API serves local files. */
export const LOCAL_FILES_PATH = '/files';

/** Keys are slash-separated segments of letters, digits, `-`, `_` and `.` (no `..`, nothing hidden). */
const KEY = /^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}\/){0,7}[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$/;

export interface LocalStorage extends FileStorage {
  readonly driver: 'local';
  /** Serves PUT, GET and HEAD of signed URLs under LOCAL_FILES_PATH (mounted by src/http/app.ts). */
  handle(req: Request, res: Response): Promise<void>;
}

/** The local driver's signing key: FILES_SIGNING_SECRET, or one derived from the JWT secret (never the JWT secret itself). */
export function localSigningKey(signingSecret: string | undefined, jwtSecret: string): Buffer {
  if (signingSecret !== undefined) return Buffer.from(signingSecret, 'utf8');
  return Buffer.from(hkdfSync('sha256', jwtSecret, 'atrium', 'atrium local file URLs v1', 32));
}

interface Signed {
  method: 'PUT' | 'GET';
  key: string;
  expires: number;
  /** PUT: the exact size. */
  size?: number;
  /** PUT: the required Content-Type; GET: the served one. */
  type: string;
  /** GET: the offered file name. */
  name?: string;
}

function fail(res: Response, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.status(status).set('Cache-Control', 'no-store').json({ error: { code, message } });
}

/**
 * The byte range a `Range` header asks for within `size` bytes: undefined for none (or one this
 * driver does not serve: several ranges, other units, nonsense: the whole file then, which HTTP
 * allows), 'unsatisfiable' when it starts past the end.
 */
export function byteRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  if (match[1] === '') {
    // The last n bytes.
    const n = Number(match[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size) return 'unsatisfiable';
  if (end < start) return undefined;
  return { start, end };
}

export function createLocalStorage(options: { dir: string; baseUrl: string | (() => string); signingKey: Buffer; now?: () => number }): LocalStorage {
  const dir = path.resolve(options.dir);
  const tmpDir = path.join(dir, '.tmp');
  const now = options.now ?? Date.now;
  // (A function when the port is known only once the API listens.)
  const baseUrl = (): string => (typeof options.baseUrl === 'function' ? options.baseUrl() : options.baseUrl).replace(/\/+$/, '');

  const sign = (s: Signed): string =>
    createHmac('sha256', options.signingKey)
      .update(['atrium-files-v1', s.method, s.key, String(s.expires), s.size === undefined ? '' : String(s.size), s.type, s.name ?? ''].join('\n'))
      .digest('base64url');

  const pathOf = (key: string): string => {
    if (!KEY.test(key)) throw new Error(`invalid storage key: ${JSON.stringify(key)}`);
    return path.join(dir, ...key.split('/'));
  };
  const metaOf = (file: string): string => `${file}.meta.json`;

  const urlFor = (s: Signed): string => {
    const query = new URLSearchParams({ expires: String(s.expires), type: s.type });
    if (s.size !== undefined) query.set('size', String(s.size));
    if (s.name !== undefined) query.set('name', s.name);
    query.set('signature', sign(s));
    return `${baseUrl()}${LOCAL_FILES_PATH}/${s.key.split('/').map(encodeURIComponent).join('/')}?${query}`;
  };

  /** Moves a complete temporary file into place, its content type beside it. */
  const place = async (tmp: string, file: string, contentType: string, size: number): Promise<void> => {
    await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await fsp.writeFile(metaOf(file), JSON.stringify({ contentType, size }), { mode: 0o600 });
    await fsp.rename(tmp, file);
  };

  const unavailable = (what: string, error: unknown) => new StorageUnavailableError(`local file store: ${what} failed (${(error as Error).message})`, { cause: error });

  const storage: LocalStorage = {
    driver: 'local',

    async presignUpload(request: UploadRequest): Promise<PresignedUpload> {
      pathOf(request.key);
      const expires = Math.floor(now() / 1000) + request.expiresInSeconds;
      return {
        url: urlFor({ method: 'PUT', key: request.key, expires, size: request.size, type: request.contentType }),
        method: 'PUT',
        headers: { 'content-type': request.contentType },
        expiresAt: new Date(expires * 1000),
      };
    },

    async presignDownload(request: DownloadRequest): Promise<PresignedDownload> {
      pathOf(request.key);
      const expires = Math.floor(now() / 1000) + request.expiresInSeconds;
      return { url: urlFor({ method: 'GET', key: request.key, expires, type: request.contentType, name: request.fileName }), expiresAt: new Date(expires * 1000) };
    },

    async head(key: string): Promise<StoredObject | null> {
      const file = pathOf(key);
      try {
        const stat = await fsp.stat(file);
        let contentType: string | undefined;
        try {
          contentType = (JSON.parse(await fsp.readFile(metaOf(file), 'utf8')) as { contentType?: string }).contentType;
        } catch {
          contentType = undefined;
        }
        return { size: stat.size, contentType };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw unavailable('stat', error);
      }
    },

    async promote(from: string, to: string): Promise<StoredObject | null> {
      const source = pathOf(from);
      const target = pathOf(to);
      try {
        await fsp.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
        // The type first: a rename of the bytes is atomic, and nothing reads `to` before this returns.
        await fsp.rename(metaOf(source), metaOf(target)).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error;
        });
        await fsp.rename(source, target);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw unavailable('move', error);
      }
      return storage.head(to);
    },

    async put(key: string, bytes: Buffer, contentType: string): Promise<void> {
      const file = pathOf(key);
      const tmp = path.join(tmpDir, randomUUID());
      try {
        await fsp.mkdir(tmpDir, { recursive: true, mode: 0o700 });
        await fsp.writeFile(tmp, bytes, { mode: 0o600 });
        await place(tmp, file, contentType, bytes.length);
      } catch (error) {
        await fsp.rm(tmp, { force: true }).catch(() => {});
        throw unavailable('write', error);
      }
    },

    async putFile(key: string, source: string, contentType: string): Promise<void> {
      const file = pathOf(key);
      const tmp = path.join(tmpDir, randomUUID());
      try {
        await fsp.mkdir(tmpDir, { recursive: true, mode: 0o700 });
        await fsp.copyFile(source, tmp);
        await fsp.chmod(tmp, 0o600);
        await place(tmp, file, contentType, (await fsp.stat(tmp)).size);
      } catch (error) {
        await fsp.rm(tmp, { force: true }).catch(() => {});
        throw unavailable('write', error);
      }
    },

    async delete(key: string): Promise<void> {
      const file = pathOf(key);
      try {
        await fsp.rm(file, { force: true });
        await fsp.rm(metaOf(file), { force: true });
      } catch (error) {
        throw unavailable('delete', error);
      }
    },

    async check(): Promise<void> {
      try {
        await fsp.mkdir(tmpDir, { recursive: true, mode: 0o700 });
        await fsp.access(dir, fs.constants.W_OK);
      } catch (error) {
        throw unavailable(`writing to ${dir}`, error);
      }
    },

    async close(): Promise<void> {},

    async handle(req: Request, res: Response): Promise<void> {
      const method = req.method === 'HEAD' ? 'GET' : req.method;
      if (method !== 'PUT' && method !== 'GET') {
        res.set('Allow', 'PUT, GET, HEAD');
        return fail(res, 405, 'METHOD_NOT_ALLOWED', 'Files are uploaded with PUT and downloaded with GET.');
      }
      let key: string;
      try {
        key = decodeURIComponent(req.path.replace(/^\/+/, ''))
          .split('/')
          .join('/');
      } catch {
        return fail(res, 400, 'INVALID_URL', 'The URL is not a file URL.');
      }
      const q = req.query as Record<string, unknown>;
      const text = (name: string): string | undefined => (typeof q[name] === 'string' ? (q[name] as string) : undefined);
      const expires = Number(text('expires'));
      const type = text('type');
      const signature = text('signature');
      const size = method === 'PUT' ? Number(text('size')) : undefined;
      const name = method === 'GET' ? text('name') : undefined;
      if (!KEY.test(key) || !Number.isSafeInteger(expires) || type === undefined || signature === undefined
        || (method === 'PUT' && !(Number.isSafeInteger(size) && size! >= 0)) || (method === 'GET' && name === undefined)) {
        return fail(res, 403, 'SIGNATURE_INVALID', 'The URL is not a valid signed file URL; ask the API for a new one.');
      }
      const expected = Buffer.from(sign({ method, key, expires, size, type, name }));
      const given = Buffer.from(signature);
      if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
        return fail(res, 403, 'SIGNATURE_INVALID', 'The URL is not a valid signed file URL; ask the API for a new one.');
      }
      if (expires * 1000 <= now()) return fail(res, 403, 'URL_EXPIRED', 'The URL has expired; ask the API for a new one.');
      const file = pathOf(key);

      if (method === 'GET') {
        let stat: fs.Stats;
        try {
          stat = await fsp.stat(file);
        } catch {
          return fail(res, 404, 'NOT_FOUND', 'No such file.');
        }
        // One byte range (`Range: bytes=a-b`, `a-`, `-n`), as S3 serves them: a video or audio
        // file plays and seeks from its link. Anything else is answered with the whole file.
        const range = byteRange(req.headers.range, stat.size);
        if (range === 'unsatisfiable') {
          res.setHeader('Content-Range', `bytes */${stat.size}`);
          return fail(res, 416, 'RANGE_NOT_SATISFIABLE', `The file has ${stat.size} bytes.`);
        }
        // (setHeader, not Express's set(): that would add a charset to the stored type.)
        res.statusCode = range ? 206 : 200;
        res.setHeader('Content-Type', type);
        res.setHeader('Accept-Ranges', 'bytes');
        res.setHeader('Content-Length', String(range ? range.end - range.start + 1 : stat.size));
        if (range) res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${stat.size}`);
        res.setHeader('Content-Disposition', contentDisposition(name!));
        res.setHeader('X-Content-Type-Options', 'nosniff');
        // Served from the API's origin: never run as a page there.
        res.setHeader('Content-Security-Policy', "default-src 'none'; sandbox");
        res.setHeader('Cache-Control', 'private, no-store');
        if (req.method === 'HEAD') {
          res.end();
          return;
        }
        await pipeline(fs.createReadStream(file, range ?? {}), res).catch(() => res.destroy());
        return;
      }

      // PUT: exactly `size` bytes of `type`.
      const contentType = req.headers['content-type'];
      if (contentType !== type) {
        return fail(res, 403, 'CONTENT_TYPE_MISMATCH', `The upload must be sent with Content-Type: ${type}, as requested.`);
      }
      const declared = req.headers['content-length'];
      if (declared === undefined) return fail(res, 411, 'LENGTH_REQUIRED', `Send Content-Length: ${size}.`);
      if (Number(declared) !== size) {
        return fail(res, 403, 'SIZE_MISMATCH', `The upload must be exactly ${size} bytes, as requested (Content-Length was ${declared}).`);
      }
      const tmp = path.join(tmpDir, randomUUID());
      let received = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          received += chunk.length;
          if (received > size!) callback(new Error('more bytes than signed'));
          else callback(null, chunk);
        },
      });
      try {
        await fsp.mkdir(tmpDir, { recursive: true, mode: 0o700 });
        await pipeline(req, counter, fs.createWriteStream(tmp, { mode: 0o600 }));
        if (received !== size) throw new Error('fewer bytes than signed');
        await place(tmp, file, type, size!);
      } catch (error) {
        await fsp.rm(tmp, { force: true }).catch(() => {});
        const truncated = /bytes than signed|aborted|premature/i.test((error as Error).message);
        return fail(res, truncated ? 400 : 500, truncated ? 'SIZE_MISMATCH' : 'STORAGE_ERROR',
          truncated ? `The upload must be exactly ${size} bytes, as requested.` : 'The file could not be stored; try again.');
      }
      res.status(200).set('Cache-Control', 'no-store').end();
    },
  };
  return storage;
}
