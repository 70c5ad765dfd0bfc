// Writes an export (./format.ts), of an organization or of one person, to a zip file on this
// machine, reading on `client` inside the organization: the caller has begun the transaction and
// set app.org_id, as every task does (src/worker/tasks/data_export.ts), so row-level security
// shows this organization's rows only. What it holds (tables, columns, the SQL selecting the
// rows) is the database's answer, app_private.export_sources (sql/functions/data_exports.sql):
// read from the catalog, so a new tenant table is exported without anyone remembering.
// Memory stays bounded: rows are read through a cursor, PAGE_ROWS at a time, compressed as they
// come and written to the file synchronously (so nothing queues behind a slow disk).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { PoolClient } from 'pg';
import { Zip, ZipDeflate } from 'fflate';
import { csvLine, EXPORT_FORMAT_VERSION, type ExportKind, type ExportManifest } from './format.ts';

/** Rows fetched per round trip: at most a few MB of JSON (500 × a row of a few KB). */
export const PAGE_ROWS = 500;

/** One table of the export: its columns, and the SQL that selects its rows (each with an id). */
interface ExportSource {
  table_name: string;
  columns: string[];
  source: string;
}

const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`;

export interface WrittenExport {
  manifest: ExportManifest;
  byteSize: number;
}

export async function writeExport(
  client: PoolClient,
  options: { organizationId: string; exportId: string; kind: ExportKind; subjectId: string | null; file: string; pageRows?: number },
): Promise<WrittenExport> {
  const pageRows = options.pageRows ?? PAGE_ROWS;
  const tables = (await client.query<ExportSource>('select table_name, columns, source from app_private.export_sources($1)', [options.exportId])).rows;
  const schema = (await client.query<{ filename: string; hash: string }>('select * from app_private.schema_migration()')).rows[0];
  const fd = fs.openSync(options.file, 'w', 0o600);
  let failed: Error | undefined;
  let finished = false;
  const zip = new Zip((error, chunk, final) => {
    if (error) failed = error;
    else fs.writeSync(fd, chunk);
    if (final) finished = true;
  });
  const checksums: Record<string, string> = {};
  const counts: ExportManifest['tables'] = [];

  /** One file of the zip, written through `fill`; its checksum is kept. */
  const entry = async (name: string, fill: (write: (text: string) => void) => Promise<void>): Promise<void> => {
    const file = new ZipDeflate(name, { level: 6 });
    zip.add(file);
    const hash = createHash('sha256');
    await fill((text) => {
      const bytes = Buffer.from(text, 'utf8');
      hash.update(bytes);
      file.push(bytes);
      if (failed) throw failed;
    });
    file.push(new Uint8Array(0), true);
    if (failed) throw failed;
    checksums[name] = hash.digest('hex');
  };

  /** Every row of `table` in id order, PAGE_ROWS at a time, through a cursor. */
  const eachPage = async (table: ExportSource, select: string, fn: (rows: Array<Record<string, unknown>>) => void): Promise<void> => {
    const cursor = `export_${table.table_name}`;
    await client.query(`declare ${ident(cursor)} no scroll cursor for select ${select} from (${table.source}) x order by x.id`);
    for (;;) {
      const { rows } = await client.query(`fetch ${pageRows} from ${ident(cursor)}`);
      if (rows.length === 0) break;
      fn(rows);
    }
    await client.query(`close ${ident(cursor)}`);
  };

  try {
    for (const table of tables) {
      let rows = 0;
      await entry(`${table.table_name}.json`, async (write) => {
        write('[\n');
        await eachPage(table, 'to_jsonb(x)::text as j', (page) => {
          write(page.map((r) => `${rows++ === 0 ? '' : ',\n'}${r.j as string}`).join(''));
        });
        write(rows === 0 ? ']\n' : '\n]\n');
      });
      await entry(`${table.table_name}.csv`, async (write) => {
        write(csvLine(table.columns));
        await eachPage(table, `array[${table.columns.map((c) => `x.${ident(c)}::text`).join(', ')}] as v`, (page) => {
          write(page.map((r) => csvLine(r.v as Array<string | null>)).join(''));
        });
      });
      counts.push({ name: table.table_name, rows, columns: table.columns });
    }
    const manifest: ExportManifest = {
      formatVersion: EXPORT_FORMAT_VERSION,
      kind: options.kind,
      subjectId: options.subjectId,
      organizationId: options.organizationId,
      exportId: options.exportId,
      createdAt: new Date().toISOString(),
      schema: { migration: schema.filename, hash: schema.hash },
      tables: counts,
      checksums,
    };
    const manifestFile = new ZipDeflate('manifest.json', { level: 6 });
    zip.add(manifestFile);
    manifestFile.push(Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8'), true);
    zip.end();
    if (failed) throw failed;
    if (!finished) throw new Error('the zip did not finish');
    return { manifest, byteSize: fs.fstatSync(fd).size };
  } finally {
    fs.closeSync(fd);
  }
}
