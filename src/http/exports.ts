// Data exports in GraphQL (docs/EXPORT_AND_IMPORT.md). The rules are in SQL
// (sql/functions/data_exports.sql); this plugin only signs the link.
//   requestOrganizationExport  generated from app_public.request_organization_export
//   DataExport.downloadUrl     a presigned GET of the zip (valid FILE_DOWNLOAD_URL_TTL_SECONDS, as
//                              FileObject.downloadUrl: src/http/files.ts), only while
//                              app_private.data_exports_downloadable allows (ready, not expired)
//   FinalExport.downloadUrl    the same for the final export of an organization the user deleted,
//                              kept after the purge (app_public.my_final_exports answers only the
//                              user's own, not yet expired: sql/functions/organization_deletion.sql)
// Row-level security decides first: owners and admins read exports; members their own (exportUser).
import { lambda, SafeError, type Step } from 'postgraphile/grafast';
import { PgSelectSingleStep, pgSelectSingleFromRecord, TYPES } from 'postgraphile/@dataplan/pg';
import { sql } from 'postgraphile/pg-sql2';
import { extendSchema, gql } from 'postgraphile/utils';
import type { FilesConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import { type FileStorage, StorageUnavailableError } from '../storage/index.ts';
import type { ErrorCatalog } from './errors.ts';
import { STORAGE_RETRY_AFTER_SECONDS } from './files.ts';

export function makeExportsPlugin(storage: FileStorage, files: FilesConfig, errors: ErrorCatalog, log: Logger) {
  return extendSchema((build) => {
    const dataExports = build.input.pgRegistry.pgResources.data_exports;
    if (!dataExports) throw new Error('exports: the data_exports resource is missing from the schema');
    const rowOf = ($in: Step): PgSelectSingleStep => {
      const $row = $in as PgSelectSingleStep & { record(): Step };
      return $row instanceof PgSelectSingleStep && $row.getClassStep().mode !== 'mutation' ? $row : pgSelectSingleFromRecord(dataExports, $row.record());
    };
    /** A fresh signed link to the zip under `key`, or STORAGE_UNAVAILABLE. */
    const signedLink = async (key: string, id: string): Promise<string> => {
      try {
        const download = await storage.presignDownload({
          key,
          fileName: `atrium-export-${id}.zip`,
          contentType: 'application/zip',
          expiresInSeconds: files.downloadUrlTtlSeconds,
        });
        return download.url;
      } catch (error) {
        if (!(error instanceof StorageUnavailableError)) throw error;
        log.warn({ error: error.message, driver: storage.driver }, 'file store unavailable: answered STORAGE_UNAVAILABLE');
        const { code, httpStatus, description } = errors.byCode('STORAGE_UNAVAILABLE');
        throw new SafeError(description, { code, httpStatus, retryAfterSeconds: STORAGE_RETRY_AFTER_SECONDS });
      }
    };
    return {
      typeDefs: gql`
        extend type DataExport {
          """
          A link that downloads the export's zip (it expires after FILE_DOWNLOAD_URL_TTL_SECONDS, 5 minutes by
          default: ask again rather than keep it). Null unless the export is ready and not past expiresAt.
          """
          downloadUrl: String
        }
        extend type FinalExport {
          """
          A link that downloads the final export's zip (it expires after FILE_DOWNLOAD_URL_TTL_SECONDS, 5 minutes
          by default: ask again rather than keep it).
          """
          downloadUrl: String
        }
      `,
      objects: {
        DataExport: {
          plans: {
            downloadUrl($in: Step) {
              const $export = rowOf($in);
              const $allowed = $export.select(sql`${sql.identifier('app_private', 'data_exports_downloadable')}(${$export.getClassStep().alias})`, TYPES.boolean);
              return lambda([$allowed, $export.get('storage_key'), $export.get('id')], async ([allowed, key, id]) =>
                (allowed ? signedLink(key as string, id as string) : null));
            },
          },
        },
        FinalExport: {
          plans: {
            // Only the user's own final exports, not yet expired, are there at all (my_final_exports).
            downloadUrl($in: Step) {
              const $row = $in as PgSelectSingleStep;
              return lambda([$row.get('storage_key'), $row.get('export_id')], async ([key, id]) => signedLink(key as string, id as string));
            },
          },
        },
      },
    };
  }, 'AtriumExportsPlugin');
}
