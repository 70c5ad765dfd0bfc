// The s3 driver: any S3-compatible store (AWS S3, MinIO, R2, …) through presigned SigV4 URLs
// (docs/FILES.md). The browser talks to the store directly; the API only signs and checks.
//
// What a URL binds is what the signature covers: the method, the bucket and key (the path), the
// expiry, and for uploads the Content-Type and Content-Length headers (signed explicitly: the
// presigner leaves Content-Type out by default), so the store itself refuses another key, size or
// type. Checksums are computed only when an operation requires one: a presigned PUT with a
// checksum parameter would demand a checksum header no browser sends.
//
// S3_PUBLIC_ENDPOINT: the host is part of the signature, so URLs for browsers are signed by a
// second client whose endpoint is the public one (http://localhost:9000), while the API itself
// reaches the store at S3_ENDPOINT (http://minio:9000 inside docker compose).
import fs from 'node:fs';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { FilesConfig } from '../config.ts';
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

/**
 * A store that does not answer fails in seconds, not after the SDK's default of no timeout and
 * three attempts: head and delete run inside API requests and jobs, and readiness checks.
 */
const CONNECT_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 5_000;
const MAX_ATTEMPTS = 2;
/**
 * A completion copies the upload within the store, which takes time in proportion to its size
 * (up to 5 GiB): its own timeout, not REQUEST_TIMEOUT_MS. No lock is held meanwhile
 * (src/http/files.ts).
 */
const COPY_TIMEOUT_MS = 10 * 60_000;

/** The headers a presigned upload is bound to (lower case, as SigV4 canonicalises them). */
const UPLOAD_SIGNED_HEADERS = new Set(['content-type', 'content-length']);

interface SdkError {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function isNotFound(error: unknown): boolean {
  // By name, not by status: a missing bucket is a 404 too (NoSuchBucket), and must not pass for
  // "no such object" (a delete would then succeed without deleting anything). A HEAD answer has
  // no body, so HeadObject's 404 is only ever NotFound: check() is what finds a missing bucket.
  const e = error as SdkError;
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey';
}

export async function createS3Storage(config: FilesConfig['s3']): Promise<FileStorage> {
  const QUIET_SDK_LOGGER = { trace: () => {}, debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
  const clientConfig = (endpoint: string | undefined): S3ClientConfig => ({
    region: config.region,
    endpoint,
    forcePathStyle: config.forcePathStyle,
    // Undefined: the SDK's default chain (AWS_* variables, shared config, instance and task roles).
    credentials: config.accessKeyId !== undefined && config.secretAccessKey !== undefined
      ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey }
      : undefined,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: MAX_ATTEMPTS,
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, throwOnRequestTimeout: true },
    // The SDK logs nothing by default, except that a failed streamed upload (putFile), which it
    // cannot retry, falls back to console.warn; the caller gets the failure as
    // StorageUnavailableError (and the data_export job is retried).
    logger: QUIET_SDK_LOGGER,
  });
  const client = new S3Client(clientConfig(config.endpoint));
  // Presigning makes no request: this client only ever signs.
  const presigner = config.publicEndpoint !== undefined && config.publicEndpoint !== config.endpoint
    ? new S3Client(clientConfig(config.publicEndpoint))
    : client;
  const bucket = config.bucket;

  // The SDK's messages name the operation and the store's answer, never the credentials; the
  // bucket and key are ours and safe to name.
  const unavailable = (what: string, error: unknown): StorageUnavailableError => {
    const e = error as SdkError;
    const status = e?.$metadata?.httpStatusCode;
    const detail = [e?.name, status === undefined ? undefined : `HTTP ${status}`, e?.message].filter((part) => part !== undefined && part !== '').join(', ');
    return new StorageUnavailableError(`s3 file store: ${what} failed (${detail || 'no answer'})`, { cause: error });
  };

  /** Signs at a known second, so that expiresAt is exactly when the store starts refusing the URL. */
  const presign = async (command: PutObjectCommand | GetObjectCommand, expiresInSeconds: number, signableHeaders?: Set<string>) => {
    const signingDate = new Date(Math.floor(Date.now() / 1000) * 1000);
    const url = await getSignedUrl(presigner, command, { expiresIn: expiresInSeconds, signingDate, signableHeaders });
    return { url, expiresAt: new Date(signingDate.getTime() + expiresInSeconds * 1000) };
  };

  const storage: FileStorage = {
    driver: 's3',

    async presignUpload(request: UploadRequest): Promise<PresignedUpload> {
      const command = new PutObjectCommand({ Bucket: bucket, Key: request.key, ContentType: request.contentType, ContentLength: request.size });
      const { url, expiresAt } = await presign(command, request.expiresInSeconds, UPLOAD_SIGNED_HEADERS);
      // Content-Length is signed too, but browsers set it themselves (and refuse to be told).
      return { url, method: 'PUT', headers: { 'content-type': request.contentType }, expiresAt };
    },

    async presignDownload(request: DownloadRequest): Promise<PresignedDownload> {
      const command = new GetObjectCommand({
        Bucket: bucket,
        Key: request.key,
        ResponseContentDisposition: contentDisposition(request.fileName),
        ResponseContentType: request.contentType,
      });
      return presign(command, request.expiresInSeconds);
    },

    async head(key: string): Promise<StoredObject | null> {
      try {
        const answer = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return { size: answer.ContentLength ?? 0, contentType: answer.ContentType };
      } catch (error) {
        if (isNotFound(error)) return null;
        throw unavailable(`HeadObject of ${key}`, error);
      }
    },

    async promote(from: string, to: string): Promise<StoredObject | null> {
      try {
        // A copy inside the store (up to 5 GiB in one call), the type with it, then the source goes.
        await client.send(new CopyObjectCommand({
          Bucket: bucket,
          Key: to,
          CopySource: `${bucket}/${from.split('/').map(encodeURIComponent).join('/')}`,
          MetadataDirective: 'COPY',
        }), { requestTimeout: COPY_TIMEOUT_MS });
      } catch (error) {
        if (isNotFound(error) || (error as SdkError)?.name === 'NoSuchKey') return null;
        throw unavailable(`CopyObject of ${from} to ${to}`, error);
      }
      await storage.delete(from);
      return storage.head(to);
    },

    async put(key: string, bytes: Buffer, contentType: string): Promise<void> {
      try {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes, ContentType: contentType, ContentLength: bytes.length }));
      } catch (error) {
        throw unavailable(`PutObject of ${key}`, error);
      }
    },

    async putFile(key: string, file: string, contentType: string): Promise<void> {
      try {
        const { size } = await fs.promises.stat(file);
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: fs.createReadStream(file), ContentType: contentType, ContentLength: size }));
      } catch (error) {
        throw unavailable(`PutObject of ${key}`, error);
      }
    },

    async delete(key: string): Promise<void> {
      try {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      } catch (error) {
        // S3 answers 204 for a key that is not there; some compatible stores answer 404.
        if (isNotFound(error)) return;
        throw unavailable(`DeleteObject of ${key}`, error);
      }
    },

    async check(): Promise<void> {
      try {
        await client.send(new HeadBucketCommand({ Bucket: bucket }));
      } catch (error) {
        throw unavailable(`HeadBucket of ${bucket}`, error);
      }
    },

    async close(): Promise<void> {
      client.destroy();
      if (presigner !== client) presigner.destroy();
    },
  };
  return storage;
}
