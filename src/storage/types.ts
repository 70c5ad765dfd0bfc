// Object storage behind one small interface (docs/FILES.md). Two drivers:
//   * local (src/storage/local.ts): files under FILES_DIR, served by the API process itself
//     through URLs it signs (HMAC-SHA256, expiring), the embedded default;
//   * s3 (src/storage/s3.ts): any S3-compatible store (AWS S3, MinIO, R2, …), presigned SigV4 URLs.
// Keys are made by the server (`org/<organization_id>/<file id>`, a generated column of
// app_public.file_objects); the client never supplies one. Both drivers hand out the same kind of
// URL: a PUT bound to one key, one exact size and one content type, and a GET bound to one key,
// both expiring, so frontend code is the same for both.

/** A presigned upload: send exactly these headers with a PUT of exactly `size` bytes to `url`. */
export interface PresignedUpload {
  url: string;
  method: 'PUT';
  /** Headers the request must carry, with these exact values (they are part of the signature). */
  headers: Record<string, string>;
  expiresAt: Date;
}

export interface PresignedDownload {
  url: string;
  expiresAt: Date;
}

/** What the store holds under a key. */
export interface StoredObject {
  size: number;
  /** The Content-Type it was stored with (undefined if the store does not say). */
  contentType: string | undefined;
}

export interface UploadRequest {
  key: string;
  /** The exact size in bytes the upload must have. */
  size: number;
  /** The exact Content-Type header the upload must carry. */
  contentType: string;
  expiresInSeconds: number;
}

export interface DownloadRequest {
  key: string;
  /** Offered as the file name (Content-Disposition: attachment). */
  fileName: string;
  /** Served as Content-Type. */
  contentType: string;
  expiresInSeconds: number;
}

export interface FileStorage {
  readonly driver: 'local' | 's3';
  presignUpload(request: UploadRequest): Promise<PresignedUpload>;
  presignDownload(request: DownloadRequest): Promise<PresignedDownload>;
  /** The object under `key`, or null if there is none. Throws StorageUnavailableError if the store cannot answer. */
  head(key: string): Promise<StoredObject | null>;
  /**
   * Moves the object under `from` to `to` (replacing what is there) and returns what `to` then
   * holds; null if there was nothing under `from`. Uploads land under a staging key; completing
   * one moves it to the file's key, which no URL can write (src/http/files.ts).
   */
  promote(from: string, to: string): Promise<StoredObject | null>;
  /** Stores `bytes` under `key` from the server itself (the demo data; uploads go through presignUpload). */
  put(key: string, bytes: Buffer, contentType: string): Promise<void>;
  /** Stores the file at `file` (a path on this machine) under `key`, streamed: data exports (src/worker/tasks/data_export.ts). */
  putFile(key: string, file: string, contentType: string): Promise<void>;
  /** Deletes the object under `key`; succeeds if there is none. Throws StorageUnavailableError if the store cannot answer. */
  delete(key: string): Promise<void>;
  /** Resolves when the store answers (the bucket exists, the folder is writable); for readiness checks. */
  check(): Promise<void>;
  close(): Promise<void>;
}

/** The store did not answer, or answered with an error (not "no such object"). */
export class StorageUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StorageUnavailableError';
  }
}

/**
 * Where a file's upload lands: beside its key, never the key itself. A signed upload URL stays
 * valid until it expires, also after the upload was completed; what it can still write is this
 * staging object, never the bytes that were checked, scanned and are downloaded.
 */
export const stagingKeyOf = (key: string): string => `${key}.upload`;

/** `attachment` with the name in both forms (RFC 6266): a plain ASCII fallback and UTF-8. */
export function contentDisposition(fileName: string): string {
  const fallback = fileName.replace(/[^\x20-\x7e]|["\\]/g, '_');
  const encoded = encodeURIComponent(fileName).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}
