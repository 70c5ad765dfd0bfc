// Files in GraphQL (docs/FILES.md): the object-storage half of the upload flow. The rules are in
// SQL (sql/functions/files.sql); this plugin signs URLs and asks the store.
//   requestFileUpload   generated from app_public.request_file_upload (adds the pending row)
//   FileObject.uploadUrl   a presigned PUT for exactly its key, size and content type, valid until
//                       the row's upload window closes; only for its uploader while it is pending
//                       (app_private.file_objects_uploadable)
//   completeFileUpload  HEADs the object: none → FILE_NOT_UPLOADED; another size or content type →
//                       the object is deleted, FILE_UPLOAD_MISMATCH; else the row becomes
//                       available (app_private.complete_file_upload, which queues the scan)
//   FileObject.downloadUrl a presigned GET, only where app_private.file_objects_downloadable allows
// Row-level security decides first: a file you cannot read has no URL, and no one can name a key.
import { access, lambda, SafeError, type Step } from 'postgraphile/grafast';
import { PgSelectSingleStep, pgSelectSingleFromRecord, sideEffectWithPgClient, TYPES } from 'postgraphile/@dataplan/pg';
import { sql } from 'postgraphile/pg-sql2';
import { extendSchema, gql } from 'postgraphile/utils';
import type { FilesConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import { type FileStorage, StorageUnavailableError } from '../storage/index.ts';
import { stagingKeyOf, type StoredObject } from '../storage/types.ts';
import type { ErrorCatalog } from './errors.ts';

/** Seconds a client waits before retrying when the store did not answer. */
export const STORAGE_RETRY_AFTER_SECONDS = 2;

interface PgClientLike {
  query<T>(opts: { text: string; values?: unknown[] }): Promise<{ rows: T[] }>;
}

interface PendingFile {
  organization_id: string;
  id: string;
  storage_key: string;
  size_bytes: string;
  content_type: string;
  status: string;
}

export function makeFilesPlugin(storage: FileStorage, files: FilesConfig, errors: ErrorCatalog, log: Logger) {
  const storageUnavailable = (error: unknown): SafeError => {
    log.warn({ error: (error as Error).message, driver: storage.driver }, 'file store unavailable: answered STORAGE_UNAVAILABLE');
    const { code, httpStatus, description } = errors.byCode('STORAGE_UNAVAILABLE');
    return new SafeError(description, { code, httpStatus, retryAfterSeconds: STORAGE_RETRY_AFTER_SECONDS });
  };
  // Store errors that are not "unavailable" are bugs: logged, answered INTERNAL by the error mask.
  const guard = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof StorageUnavailableError) throw storageUnavailable(error);
      throw error;
    }
  };

  return extendSchema((build) => {
    const executor = build.input.pgRegistry.pgExecutors.main;
    const fileObjects = build.input.pgRegistry.pgResources.file_objects;
    if (!fileObjects) throw new Error('files: the file_objects resource is missing from the schema');
    // A FileObject comes from a query (a select) or a mutation's payload (an insert, update or
    // delete step): the rule is selected from the row, like PostGraphile's own computed columns.
    const rowOf = ($in: Step): PgSelectSingleStep => {
      const $file = $in as PgSelectSingleStep & { record(): Step };
      return $file instanceof PgSelectSingleStep && $file.getClassStep().mode !== 'mutation' ? $file : pgSelectSingleFromRecord(fileObjects, $file.record());
    };
    const ruleOf = ($file: PgSelectSingleStep, fn: string) =>
      $file.select(sql`${sql.identifier('app_private', fn)}(${$file.getClassStep().alias})`, TYPES.boolean);

    return {
      typeDefs: gql`
        "A header an upload must carry, with exactly this value."
        type HttpHeader {
          name: String!
          value: String!
        }
        """
        Where to send a file's bytes: \`method\` (PUT) to \`url\` with exactly these \`headers\` and a body of
        exactly the file's sizeBytes, before \`expiresAt\`. Then call completeFileUpload.
        """
        type FileUpload {
          url: String!
          method: String!
          headers: [HttpHeader!]!
          expiresAt: Datetime!
        }
        extend type FileObject {
          "Where to upload the bytes: while the file is pending, for whoever requested it (else null)."
          uploadUrl: FileUpload
          """
          A link that downloads the file (it expires after FILE_DOWNLOAD_URL_TTL_SECONDS, 5 minutes by default:
          ask again rather than keep it). Null while the file is pending, if it was found infected, and for
          client-portal users until it was scanned clean.
          """
          downloadUrl: String
        }
        input CompleteFileUploadInput {
          "The file from requestFileUpload."
          id: UUID!
        }
        type CompleteFileUploadPayload {
          fileObject: FileObject
        }
        extend type Mutation {
          """
          Confirm an upload: checks the object has the declared size and content type, then makes the file
          available (and queues its scan). Calling it again for an available file changes nothing.
          """
          completeFileUpload(input: CompleteFileUploadInput!): CompleteFileUploadPayload!
        }
      `,
      objects: {
        FileObject: {
          plans: {
            uploadUrl($in: Step) {
              const $file = rowOf($in);
              const $allowed = ruleOf($file, 'file_objects_uploadable');
              return lambda(
                [$allowed, $file.get('storage_key'), $file.get('size_bytes'), $file.get('content_type'), $file.get('upload_expires_at')],
                async ([allowed, key, size, contentType, expiresAt]) => {
                  if (!allowed) return null;
                  const seconds = Math.floor((new Date(expiresAt as string).getTime() - Date.now()) / 1000);
                  if (seconds < 1) return null;
                  const upload = await guard(() =>
                    // To the staging key: what the URL can write is never the checked bytes.
                    storage.presignUpload({ key: stagingKeyOf(key as string), size: Number(size), contentType: contentType as string, expiresInSeconds: seconds }),
                  );
                  return {
                    url: upload.url,
                    method: upload.method,
                    headers: Object.entries(upload.headers).map(([name, value]) => ({ name, value })),
                    expiresAt: upload.expiresAt.toISOString(),
                  };
                },
              );
            },
            downloadUrl($in: Step) {
              const $file = rowOf($in);
              const $allowed = ruleOf($file, 'file_objects_downloadable');
              return lambda(
                [$allowed, $file.get('storage_key'), $file.get('name'), $file.get('content_type')],
                async ([allowed, key, name, contentType]) => {
                  if (!allowed) return null;
                  const download = await guard(() =>
                    storage.presignDownload({ key: key as string, fileName: name as string, contentType: contentType as string, expiresInSeconds: files.downloadUrlTtlSeconds }),
                  );
                  return download.url;
                },
              );
            },
          },
        },
        FileUpload: {
          plans: {
            headers: ($upload: Step) => access($upload, 'headers'),
          },
        },
        Mutation: {
          plans: {
            completeFileUpload(_$root, fieldArgs) {
              const $done = sideEffectWithPgClient(executor, fieldArgs.getRaw(['input', 'id']) as Step<string>, async (pgClient, id) => {
                const client = pgClient as unknown as PgClientLike;
                const find = async () => (await client.query<PendingFile>({ text: 'select * from app_private.file_upload_to_complete($1)', values: [id] })).rows[0];
                let file = await find();
                if (file.status === 'pending') {
                  // One completion of a file at a time (a concurrent one answers RETRY), two per
                  // organization; then the file as it is now (completed meanwhile, or not).
                  await client.query({ text: 'select app_private.begin_file_completion($1)', values: [id] });
                  file = await find();
                }
                if (file.status === 'pending') {
                  // The upload moves from its staging key to the file's key, which no URL can
                  // write: a second PUT to the (still valid) upload URL after this cannot change
                  // the bytes that are checked here, scanned and downloaded.
                  let stored: StoredObject | null = await guard(() => storage.promote(stagingKeyOf(file.storage_key), file.storage_key));
                  // Nothing staged: moved already by a completion whose transaction did not commit.
                  stored ??= await guard(() => storage.head(file.storage_key));
                  if (!stored) throw errors.error('FILE_NOT_UPLOADED');
                  if (stored.size !== Number(file.size_bytes) || (stored.contentType !== undefined && stored.contentType !== file.content_type)) {
                    // The upload URL signed the size and type; a store that does not check them
                    // (or an object put there some other way) is caught here. It goes; the file
                    // stays pending, and its upload URL may be used again until it expires.
                    await guard(() => storage.delete(file.storage_key));
                    throw errors.error(
                      'FILE_UPLOAD_MISMATCH',
                      `The uploaded object has ${stored.size} bytes of ${stored.contentType ?? 'an unknown type'}; the file was declared as ${file.size_bytes} bytes of ${file.content_type}. The object was deleted; upload it again.`,
                    );
                  }
                  await client.query({ text: 'select app_private.complete_file_upload($1)', values: [id] });
                }
                return { organization_id: file.organization_id, id: file.id };
              });
              return $done;
            },
          },
        },
        CompleteFileUploadPayload: {
          plans: {
            fileObject($done: Step) {
              return fileObjects.get({ organization_id: access($done, 'organization_id'), id: access($done, 'id') });
            },
          },
        },
      },
    };
  }, 'AtriumFilesPlugin');
}
