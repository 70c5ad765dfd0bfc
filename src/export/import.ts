// `import-organization <zip>` (src/cli.ts): loads an organization export (./format.ts) into a
// migrated database that does not have that organization (docs/EXPORT_AND_IMPORT.md).
//   1. unpacks the zip into a temporary folder (streamed; only the names an export has) and
//      checks the manifest: format version, kind, a checksum for every file and every file's
//      checksum;
//   2. in ONE transaction as the owner: refuses unless the database's last migration is the
//      export's and the organization is not there; users first (kept when the id is there),
//      then the organization's tables in foreign-key order from the catalog, ids kept, PAGE_ROWS
//      rows per statement. A cycle of foreign keys (proposals → engagements → contracts →
//      proposals) is broken at a nullable one: inserted null, set once every table is in;
//   3. while it loads, each tenant table's own triggers are off (ALTER TABLE … DISABLE TRIGGER
//      USER; foreign keys and checks still hold): the rows are history, not new changes, so no
//      status machine re-judges them, no audit event is written for them (the exported activity
//      log is imported as it was), and no job, email or webhook is queued;
//   4. app_private.finish_organization_import (sql/functions/data_exports.sql) sets what the rows
//      imply: the invoice counter, webhook endpoints disabled until their secret is rotated.
// A table with a column that the export leaves out (a secret column) cannot be loaded as it was:
// it is skipped and named in the result (webhook_deliveries: its payload and last error).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import pg from 'pg';
import { Unzip, UnzipInflate } from 'fflate';
import { ENTRY_NAME, EXPORT_FORMAT_VERSION, type ExportManifest } from './format.ts';
import { PAGE_ROWS } from './writer.ts';

export class ImportRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImportRefused';
  }
}

export interface ImportResult {
  organizationId: string;
  /** Rows loaded per table (users: those that were not there yet). */
  rows: Record<string, number>;
  /** Tables not loaded, with the reason. */
  skipped: Record<string, string>;
}

/** Unpacks `zip` into `dir`; returns the SHA-256 of each file. */
async function unpack(zip: string, dir: string): Promise<Record<string, string>> {
  const sums: Record<string, string> = {};
  let failure: Error | undefined;
  const unzip = new Unzip((file) => {
    if (!ENTRY_NAME.test(file.name) || file.name in sums) {
      failure ??= new ImportRefused(`the zip holds ${JSON.stringify(file.name)}, which no export has`);
      return;
    }
    const fd = fs.openSync(path.join(dir, file.name), 'w', 0o600);
    const hash = createHash('sha256');
    sums[file.name] = '';
    file.ondata = (error, chunk, final) => {
      if (error) failure ??= error;
      else {
        hash.update(chunk);
        fs.writeSync(fd, chunk);
      }
      if (final || error) {
        fs.closeSync(fd);
        sums[file.name] = hash.digest('hex');
      }
    };
    file.start();
  });
  unzip.register(UnzipInflate);
  for await (const chunk of fs.createReadStream(zip)) {
    unzip.push(chunk as Buffer);
    if (failure) throw failure;
  }
  unzip.push(new Uint8Array(0), true);
  if (failure) throw failure;
  return sums;
}

function readManifest(dir: string, sums: Record<string, string>): ExportManifest {
  if (!('manifest.json' in sums)) throw new ImportRefused('the zip has no manifest.json: it is not an Atrium export');
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as ExportManifest;
  if (manifest.formatVersion !== EXPORT_FORMAT_VERSION) {
    throw new ImportRefused(`the export has format version ${manifest.formatVersion}; this Atrium reads version ${EXPORT_FORMAT_VERSION}`);
  }
  if (manifest.kind !== 'organization') throw new ImportRefused(`the export is of kind ${JSON.stringify(manifest.kind)}; only organization exports can be imported`);
  const named = new Set(Object.keys(manifest.checksums));
  for (const name of Object.keys(sums)) {
    if (name !== 'manifest.json' && !named.has(name)) throw new ImportRefused(`${name} is in the zip but not in the manifest`);
  }
  for (const [name, sum] of Object.entries(manifest.checksums)) {
    if (!(name in sums)) throw new ImportRefused(`${name} is in the manifest but not in the zip`);
    if (sums[name] !== sum) throw new ImportRefused(`${name} does not match its checksum in the manifest: the export is damaged or was changed`);
  }
  for (const table of manifest.tables) {
    if (!manifest.checksums[`${table.name}.json`]) throw new ImportRefused(`${table.name}.json is missing`);
  }
  return manifest;
}

interface ForeignKey {
  table: string;
  references: string;
  columns: string[];
  nullable: string[];
}

/**
 * The order to load `tables` in (parents first), from the catalog's foreign keys, and the
 * columns to load later (set null first) where foreign keys form a cycle.
 */
export function loadOrder(tables: string[], keys: ForeignKey[]): { order: string[]; later: Map<string, string[]> } {
  const pending = new Set(tables);
  const edges = keys.filter((k) => k.table !== k.references && pending.has(k.table) && pending.has(k.references));
  const later = new Map<string, string[]>();
  const dropped = new Set<ForeignKey>();
  const order: string[] = [];
  while (pending.size > 0) {
    const ready = [...pending].filter((t) => !edges.some((e) => !dropped.has(e) && e.table === t && pending.has(e.references))).sort();
    if (ready.length > 0) {
      for (const t of ready) {
        order.push(t);
        pending.delete(t);
      }
      continue;
    }
    // A cycle: load one of its nullable foreign keys later (one on the cycle: a table that only
    // waits for the cycle keeps its references, and the checks that hold on them).
    const live = edges.filter((e) => !dropped.has(e) && pending.has(e.table) && pending.has(e.references));
    const reaches = (from: string, to: string): boolean => {
      const seen = new Set<string>();
      const stack = [from];
      while (stack.length > 0) {
        const t = stack.pop()!;
        if (t === to) return true;
        if (seen.has(t)) continue;
        seen.add(t);
        for (const e of live) if (e.table === t) stack.push(e.references);
      }
      return false;
    };
    const cut = live.filter((e) => e.nullable.length > 0 && reaches(e.references, e.table))
      .sort((x, y) => `${x.table}.${x.references}`.localeCompare(`${y.table}.${y.references}`))[0];
    if (!cut) throw new Error(`the foreign keys of ${[...pending].join(', ')} form a cycle without a nullable column`);
    dropped.add(cut);
    later.set(cut.table, [...new Set([...(later.get(cut.table) ?? []), ...cut.nullable])]);
  }
  return { order, later };
}

const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** The rows of `<table>.json`, PAGE_ROWS at a time, each page a JSON array's text (numbers as written). */
async function* pagesOf(file: string, pageRows: number): AsyncGenerator<{ json: string; rows: number }> {
  let page: string[] = [];
  const lines = readline.createInterface({ input: fs.createReadStream(file, 'utf8'), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line === '[' || line === ']' || line === '') continue;
    page.push(line.endsWith(',') ? line.slice(0, -1) : line);
    if (page.length === pageRows) {
      yield { json: `[${page.join(',')}]`, rows: page.length };
      page = [];
    }
  }
  if (page.length > 0) yield { json: `[${page.join(',')}]`, rows: page.length };
}

/** pageRows: rows per statement (default PAGE_ROWS; tests use a few). */
/**
 * The activity log's months for a page of its events, made before the page is loaded, so that
 * old events land in their months rather than in the default partition (which would then keep
 * those months from being made: sql/functions/activity_partitions.sql).
 */
async function monthsFor(client: pg.Client, page: string): Promise<void> {
  const { rows } = await client.query<{ oldest: string | null }>(
    `select to_char(date_trunc('month', min(e.occurred_at)), 'YYYY-MM-DD') as oldest from jsonb_to_recordset($1::jsonb) as e(occurred_at timestamptz)`,
    [page],
  );
  if (rows[0]?.oldest) await client.query('call app_private.ensure_activity_partitions(3, $1::date)', [rows[0].oldest]);
}

export async function importOrganization(ownerUrl: string, zip: string, options: { pageRows?: number } = {}): Promise<ImportResult> {
  const pageRows = options.pageRows ?? PAGE_ROWS;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-import-'));
  try {
    const manifest = readManifest(dir, await unpack(zip, dir));
    const client = new pg.Client({ connectionString: ownerUrl });
    await client.connect();
    try {
      await client.query('begin');
      // Tables are locked while they load: fail rather than wait long behind a busy table.
      await client.query("set local lock_timeout = '10s'");
      const schema = (await client.query<{ filename: string; hash: string }>('select * from app_private.schema_migration()')).rows[0];
      if (schema?.hash !== manifest.schema.hash) {
        throw new ImportRefused(`the export was made at migration ${manifest.schema.migration} (${manifest.schema.hash}); this database is at ${schema?.filename ?? 'none'} (${schema?.hash ?? '-'}): import into a database at the same migration`);
      }
      const organizationId = manifest.organizationId;
      // Two imports of one organization at once: the second waits, then finds it there.
      await client.query(`select pg_advisory_xact_lock(hashtextextended('import:' || $1, 0))`, [organizationId]);
      if ((await client.query('select from app_public.organizations where id = $1', [organizationId])).rowCount) {
        throw new ImportRefused(`organization ${organizationId} already exists in this database: an export is imported only into a database without it`);
      }

      const catalog = (await client.query<{ table_name: string; required: string[] }>(
        `select c.relname as table_name,
           coalesce(array_agg(a.attname::text) filter (where a.attgenerated = '' and a.attidentity = ''), '{}') as required
         from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
         where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p') and c.relname = any ($1)
         group by c.relname`,
        [manifest.tables.map((t) => t.name)],
      )).rows;
      const skipped: Record<string, string> = {};
      const loadable: ExportManifest['tables'] = [];
      for (const table of manifest.tables) {
        const known = catalog.find((c) => c.table_name === table.name);
        if (!known) throw new ImportRefused(`the export has a table ${table.name} that this database does not`);
        const missing = known.required.filter((c) => !table.columns.includes(c));
        if (missing.length > 0) skipped[table.name] = `its column(s) ${missing.join(', ')} are not in the export (secret)`;
        else loadable.push(table);
      }
      const keys = (await client.query<ForeignKey>(
        `select c.conrelid::regclass::text as table, c.confrelid::regclass::text as references,
           array_agg(a.attname::text order by a.attnum) as columns,
           coalesce(array_agg(a.attname::text order by a.attnum) filter (where not a.attnotnull), '{}') as nullable
         from pg_constraint c join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any (c.conkey)
         where c.contype = 'f' and c.connamespace = 'app_public'::regnamespace
         group by c.oid`,
      )).rows.map((k) => ({ ...k, table: k.table.replace(/^app_public\./, ''), references: k.references.replace(/^app_public\./, '') }));
      const { order, later } = loadOrder(loadable.map((t) => t.name), keys);

      const rows: Record<string, number> = {};
      const byName = new Map(loadable.map((t) => [t.name, t]));
      const generated = new Map((await client.query<{ table_name: string; generated: string[] }>(
        `select c.relname as table_name, coalesce(array_agg(a.attname::text) filter (where a.attgenerated <> ''), '{}') as generated
         from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
         where c.relnamespace = 'app_public'::regnamespace and c.relname = any ($1) group by c.relname`,
        [order],
      )).rows.map((r) => [r.table_name, r.generated]));
      const tenantTables = order.filter((t) => t !== 'users');
      for (const t of tenantTables) await client.query(`alter table app_public.${ident(t)} disable trigger user`);
      for (const name of order) {
        const table = byName.get(name)!;
        const cols = table.columns.filter((c) => !(generated.get(name) ?? []).includes(c) && !(later.get(name) ?? []).includes(c));
        const list = cols.map(ident).join(', ');
        let loaded = 0;
        for await (const page of pagesOf(path.join(dir, `${name}.json`), pageRows)) {
          if (name === 'activity_events') await monthsFor(client, page.json);
          const sql = `insert into app_public.${ident(name)} (${list}) select ${list} from jsonb_populate_recordset(null::app_public.${ident(name)}, $1::jsonb)`;
          try {
            // Users already in this database (members of other organizations too) are kept as they are.
            const result = await client.query(name === 'users' ? `${sql} on conflict (id) do nothing` : sql, [page.json]);
            loaded += result.rowCount ?? 0;
          } catch (error) {
            const { code, detail } = error as { code?: string; detail?: string };
            if (code === '23505' && name === 'users') {
              throw new ImportRefused(`a user of the export has an email address that another account of this database has (${detail ?? (error as Error).message})`);
            }
            // A unique key another organization holds (a slug), a reference the export does not
            // hold, a value this schema refuses: the operator's problem to solve, said plainly.
            if (code?.startsWith('23')) throw new ImportRefused(`${name}: ${(error as Error).message}${detail ? ` (${detail})` : ''}`);
            throw error;
          }
        }
        if (name !== 'users' && loaded !== table.rows) throw new ImportRefused(`${name}.json holds ${loaded} rows; the manifest says ${table.rows}`);
        rows[name] = loaded;
      }
      for (const [name, columns] of later) {
        const set = columns.map(ident).join(', ');
        for await (const page of pagesOf(path.join(dir, `${name}.json`), pageRows)) {
          await client.query(
            `update app_public.${ident(name)} t set (${set}) = (select ${columns.map((c) => `s.${ident(c)}`).join(', ')})
             from jsonb_populate_recordset(null::app_public.${ident(name)}, $1::jsonb) s
             where t.organization_id = s.organization_id and t.id = s.id`,
            [page.json],
          );
        }
      }
      for (const t of tenantTables) await client.query(`alter table app_public.${ident(t)} enable trigger user`);
      await client.query('select app_private.finish_organization_import($1)', [organizationId]);
      await client.query('commit');
      return { organizationId, rows, skipped };
    } catch (error) {
      await client.query('rollback').catch(() => undefined);
      throw error;
    } finally {
      await client.end();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
