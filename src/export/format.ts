// The format of an export (docs/EXPORT_AND_IMPORT.md), of an organization or of one person (a
// contact, a user): one zip holding, per table,
//   <table>.json  a JSON array of its rows, one row per line ("[", then `{...},` lines, then "]"),
//                 exactly as PostgreSQL renders them (to_jsonb: numbers keep every digit)
//   <table>.csv   the same rows as CSV (RFC 4180, a header line; NULL is an empty field)
// and manifest.json: format version, kind and subject, the schema's last migration, the
// organization, when it was made, the tables in the order they were written, rows per table and
// the SHA-256 of each file. Only an organization export can be imported.
// Written by src/export/writer.ts (the data_export job), read by src/export/import.ts.

export const EXPORT_FORMAT_VERSION = 1;

/** app_public.data_exports.kind */
export type ExportKind = 'organization' | 'contact' | 'user';

export interface ExportManifest {
  formatVersion: number;
  kind: ExportKind;
  /** The contact or user a person's export is about; null for an organization export. */
  subjectId: string | null;
  organizationId: string;
  exportId: string;
  createdAt: string;
  /** The last committed migration of the schema the rows come from (graphile-migrate). */
  schema: { migration: string; hash: string };
  tables: Array<{ name: string; rows: number; columns: string[] }>;
  /** SHA-256 (hex) of every other file in the zip, by file name. */
  checksums: Record<string, string>;
}

/** Names a zip of ours may hold: no folders, nothing else. */
export const ENTRY_NAME = /^(?:[a-z][a-z0-9_]{0,62}\.(?:json|csv)|manifest\.json)$/;

/** One CSV field: quoted when it must be (a comma, quote, line break or outer space). */
export function csvField(value: string | null): string {
  if (value === null) return '';
  return /[",\r\n]|^\s|\s$/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

export const csvLine = (values: Array<string | null>): string => `${values.map(csvField).join(',')}\r\n`;
