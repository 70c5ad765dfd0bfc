// The restore drill (`npm run backup:drill`; tests/backup-drill.test.ts runs a small one in CI):
// proves a point-in-time restore gives back exactly what the database held at a chosen moment.
//
//   1. a throwaway PostgreSQL cluster archiving its WAL to pgBackRest, configured by the same
//      code as `npm run backup:setup` (src/backup/pgbackrest.ts), with Atrium migrated into it
//      and the bench dataset (src/db/dataset.ts) loaded
//   2. a full backup
//   3. writes through the API (HTTP, GraphQL): each writer adds a client, an invoice and its
//      lines, again and again, as its organization's owner
//   4. the writers pause; the moment T is noted with, per organization, the rows of every tenant
//      table, the invoice totals and the activity events; the writers go on
//   5. the restore of the backup and the WAL up to T into a new data directory, started
//   6. checks: the same figures per organization, row-level security still forced on every
//      table of app_public and app_private, and Atrium starting on the restored database
//
// Measured: RPO, the archive lag under write load: how long after a write its WAL segment is in
// the repository (sampled every second, the worst is the data a lost server would take with it);
// RTO, the restore's time: pgbackrest restore, then the server's start and its replay to T.
import { execFile, type ExecFileOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { createTokenService } from '../auth/tokens.ts';
import { freePort } from '../free-port.ts';
import { generateDataset, type Dataset } from '../db/dataset.ts';
import { stats } from '../stats.ts';
import { loadConfig } from '../config.ts';
import { openDatabase } from '../db/bootstrap.ts';
import { runAsIds } from '../db/embedded.ts';
import { runDoctor, type Status } from '../db/doctor.ts';
import { runMigrations } from '../db/migrations.ts';
import { startAtrium, type Atrium } from '../index.ts';
import type { Logger } from '../log.ts';
import { ARCHIVE_TIMEOUT_SECONDS, pgbackrestConf, postgresqlConf, STANZA, type BackupTools } from './pgbackrest.ts';

const run = promisify(execFile);

export interface DrillOptions {
  tools: BackupTools;
  /** Bench dataset: organizations, and average tasks per organization (other tables follow). */
  orgs: number;
  rows: number;
  /** Writing through the API before T, and again after it. */
  writeSeconds: number;
  /** Concurrent writers (spread over the organizations). */
  writers: number;
  log: Logger;
  /** Keep the clusters and the repository (their folder is in the result). */
  keep?: boolean;
}

export interface OrgFigures {
  rows: Record<string, number>;
  invoiceTotal: string;
  activityEvents: number;
}

export interface DrillResult {
  postgres: string;
  pgbackrest: string;
  dataset: { orgs: number; rows: number; tables: Record<string, number>; databaseBytes: number };
  backup: { seconds: number; repositoryBytes: number };
  writes: { before: number; after: number };
  target: string;
  rpo: { archiveTimeoutSeconds: number; samples: number; p50Seconds: number; maxSeconds: number };
  /** `npm run doctor`'s WAL archiving check on the source server after the writes. */
  doctorArchiving: { status: Status; value: string };
  rto: { restoreSeconds: number; startAndReplaySeconds: number; totalSeconds: number };
  checks: {
    organizations: number;
    figuresEqual: boolean;
    differences: string[];
    /** Tables of app_public and app_private, and those without row-level security forced. */
    rlsForced: { tables: number; notForced: string[] };
    apiStarted: boolean;
    /** /readyz's answer when Atrium was not ready on the restored database. */
    readiness?: string;
    apiInvoiceCounts: boolean;
  };
  folder: string | undefined;
}

interface Cluster {
  dir: string;
  port: number;
  socketDir: string;
  url: (database: string) => string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every tenant table's rows, the invoice totals and the activity events, per organization, in one snapshot. */
export async function figuresByOrganization(url: string): Promise<Map<string, OrgFigures>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('begin isolation level repeatable read read only');
    const { rows: tables } = await client.query<{ name: string }>(
      `select format('%I.%I', n.nspname, c.relname) as name
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname in ('app_public', 'app_private') and c.relkind in ('r', 'p') and not c.relispartition
         and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
       order by 1`,
    );
    const figures = new Map<string, OrgFigures>();
    const of = (org: string) => {
      let f = figures.get(org);
      if (!f) figures.set(org, (f = { rows: {}, invoiceTotal: '0', activityEvents: 0 }));
      return f;
    };
    for (const { name } of tables) {
      const { rows } = await client.query<{ org: string | null; n: number }>(`select organization_id::text as org, count(*)::int as n from ${name} group by 1`);
      for (const r of rows) of(r.org ?? '(none)').rows[name] = r.n;
    }
    for (const r of (await client.query<{ org: string; total: string }>('select organization_id::text as org, sum(total)::text as total from app_public.invoices group by 1')).rows) of(r.org).invoiceTotal = r.total;
    for (const r of (await client.query<{ org: string; n: number }>('select organization_id::text as org, count(*)::int as n from app_public.activity_events group by 1')).rows) of(r.org).activityEvents = r.n;
    await client.query('commit');
    return figures;
  } finally {
    await client.end();
  }
}

/** What differs between two sets of figures, one line each. */
export function compareFigures(expected: Map<string, OrgFigures>, actual: Map<string, OrgFigures>): string[] {
  const differences: string[] = [];
  for (const org of new Set([...expected.keys(), ...actual.keys()])) {
    const e = expected.get(org);
    const a = actual.get(org);
    if (!e || !a) {
      differences.push(`${org}: ${e ? 'missing after the restore' : 'not there at T'}`);
      continue;
    }
    for (const table of new Set([...Object.keys(e.rows), ...Object.keys(a.rows)])) {
      if ((e.rows[table] ?? 0) !== (a.rows[table] ?? 0)) differences.push(`${org} ${table}: ${e.rows[table] ?? 0} at T, ${a.rows[table] ?? 0} restored`);
    }
    if (e.invoiceTotal !== a.invoiceTotal) differences.push(`${org} invoice total: ${e.invoiceTotal} at T, ${a.invoiceTotal} restored`);
    if (e.activityEvents !== a.activityEvents) differences.push(`${org} activity events: ${e.activityEvents} at T, ${a.activityEvents} restored`);
  }
  return differences;
}

export async function runDrill(options: DrillOptions): Promise<DrillResult> {
  const { tools, log } = options;
  const ids = runAsIds((m) => log.info(m));
  const asPostgres: ExecFileOptions = { ...ids, maxBuffer: 64 * 1024 * 1024 };
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-drill-'));
  fs.chmodSync(folder, 0o755);
  const sub = (name: string, mode = 0o700) => {
    const dir = path.join(folder, name);
    fs.mkdirSync(dir, { recursive: true, mode });
    fs.chmodSync(dir, mode);
    if (ids.uid !== undefined) fs.chownSync(dir, ids.uid, ids.gid!);
    return dir;
  };
  const bin = (name: string) => path.join(tools.pgBin, name);
  const configPath = path.join(folder, 'pgbackrest.conf');
  const clusters: Cluster[] = [];
  let atrium: Atrium | undefined;
  const pgbackrest = async (...args: string[]) => {
    try {
      return (await run(tools.pgbackrest, [`--config=${configPath}`, `--stanza=${STANZA}`, ...args], asPostgres)).stdout.toString();
    } catch (error) {
      const e = error as { stderr?: Buffer | string; stdout?: Buffer | string; message: string };
      throw new Error(`pgbackrest ${args.at(-1)} failed: ${String(e.stderr ?? '').trim() || String(e.stdout ?? '').trim() || e.message}`);
    }
  };
  const serverLogs = sub('server-log', 0o755);
  const pgCtl = async (cluster: Cluster, action: 'start' | 'stop', extra: string[] = []) => {
    const logFile = path.join(serverLogs, `${path.basename(cluster.dir)}.log`);
    try {
      await run(bin('pg_ctl'), ['-D', cluster.dir, '-l', logFile, '-w', '-t', '3600', ...extra, action], asPostgres);
    } catch (error) {
      const tail = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
      throw new Error(`pg_ctl ${action} ${cluster.dir} failed: ${(error as Error).message}\n${tail}`);
    }
  };
  const cluster = async (name: string): Promise<Cluster> => {
    const port = await freePort();
    const socketDir = sub(`${name}-socket`, 0o755);
    const dir = path.join(folder, name);
    return { dir, port, socketDir, url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}` };
  };
  const query = async <R extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<R[]> => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end();
    }
  };

  try {
    // 1. The source cluster, archiving to pgBackRest.
    const source = await cluster('source');
    sub('source');
    await run(bin('initdb'), ['-D', source.dir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-instructions'], asPostgres);
    const settings = {
      dataDir: source.dir,
      socketDir: source.socketDir,
      port: source.port,
      repository: { kind: 'local' as const, path: sub('repo') },
      retentionFull: 2,
      cipherPass: randomBytes(36).toString('base64url'),
      pgbackrest: tools.pgbackrest,
      configPath,
      logPath: sub('log'),
      lockPath: sub('lock'),
      spoolPath: sub('spool'),
    };
    fs.writeFileSync(configPath, pgbackrestConf(settings), { mode: 0o600 });
    if (ids.uid !== undefined) fs.chownSync(configPath, ids.uid, ids.gid!);
    fs.appendFileSync(
      path.join(source.dir, 'postgresql.conf'),
      `\n${postgresqlConf(settings)}listen_addresses = '127.0.0.1'\nport = ${source.port}\nunix_socket_directories = '${source.socketDir}'\n`,
    );
    await pgCtl(source, 'start');
    clusters.push(source);
    await pgbackrest('stanza-create');
    await pgbackrest('check');

    const passwords = { DATABASE_OWNER_PASSWORD: randomBytes(18).toString('base64url'), DATABASE_AUTHENTICATOR_PASSWORD: randomBytes(18).toString('base64url'), DATABASE_WORKER_PASSWORD: randomBytes(18).toString('base64url') };
    const jwtSecret = randomBytes(36).toString('base64url');
    // Production settings (no email leaves: no worker runs here), the rate limits off.
    const envFor = (url: string) => ({
      NODE_ENV: 'production',
      DATABASE_URL: url,
      ...passwords,
      JWT_SECRET: jwtSecret,
      HOST: '127.0.0.1',
      PORT: '0',
      APP_URL: 'http://127.0.0.1',
      SMTP_URL: 'smtp://127.0.0.1:2525',
      SEED_DEMO_DATA: 'false',
      RATE_LIMITS: 'false',
      REDIS_URL: '',
      FILES_DIR: path.join(folder, 'files'),
      EMAIL_DIR: path.join(folder, 'email'),
    });
    const sourceConfig = loadConfig(envFor(source.url('atrium')));
    const db = await openDatabase(sourceConfig, log);
    await runMigrations(db, log, { current: false });
    const dataset: Dataset = await generateDataset(source.url('atrium'), { orgs: options.orgs, rows: options.rows });
    await query(source.url('atrium'), 'vacuum analyze');
    const [{ bytes: databaseBytes }] = await query<{ bytes: string }>(source.url('atrium'), `select pg_database_size('atrium') as bytes`);

    // 2. The full backup.
    let started = Date.now();
    await pgbackrest('--type=full', 'backup');
    const backupSeconds = (Date.now() - started) / 1000;

    // RPO sampler: every second, the WAL position now; the lag is until its segment is archived.
    const samples: Array<{ at: number; wal: string; archivedAfter?: number }> = [];
    let sampling = true;
    const sampler = (async () => {
      let lastSample = 0;
      while (sampling || samples.some((s) => s.archivedAfter === undefined)) {
        const [row] = await query<{ wal: string; archived: string | null }>(source.url('postgres'), 'select pg_walfile_name(pg_current_wal_lsn()) as wal, last_archived_wal as archived from pg_stat_archiver');
        const now = Date.now();
        for (const s of samples) if (s.archivedAfter === undefined && row!.archived !== null && row!.archived >= s.wal) s.archivedAfter = (now - s.at) / 1000;
        if (sampling && now - lastSample >= 1000) {
          samples.push({ at: now, wal: row!.wal });
          lastSample = now;
        }
        if (!sampling && now - samples.at(-1)!.at > 10 * 60_000) throw new Error('WAL archiving did not catch up within 10 minutes');
        await sleep(200);
      }
    })();

    // 3. Writers through the API.
    atrium = await startAtrium(sourceConfig, log, { api: true, worker: false, migrate: false });
    const tokens = createTokenService(jwtSecret, 3600);
    const orgTokens = await Promise.all(dataset.orgs.map(async (o) => (await tokens.sign({ userId: o.ownerUserId, sessionId: o.sessionId, organizationId: o.id })).token));
    const graphql = async (token: string, q: string, variables: Record<string, unknown>) => {
      const response = await fetch(`${atrium!.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query: q, variables }) });
      const body = (await response.json()) as { data?: Record<string, any>; errors?: unknown[] };
      if (body.errors) throw new Error(`the drill's write was refused: ${JSON.stringify(body.errors).slice(0, 300)}`);
      return body.data!;
    };
    let gate: Promise<void> | undefined;
    let inFlight = 0;
    let writes = 0;
    let stopAt = 0;
    const writer = async (w: number) => {
      const token = orgTokens[w % orgTokens.length]!;
      for (let i = 0; Date.now() < stopAt; i++) {
        while (gate) await gate;
        inFlight++;
        try {
          const company = await graphql(token, 'mutation ($name: String!) { createClientCompany(input: { clientCompany: { name: $name } }) { clientCompany { rowId } } }', { name: `Drill client ${w}-${i}-${Date.now()}` });
          const invoice = await graphql(token, 'mutation ($c: UUID!) { createInvoice(input: { invoice: { clientCompanyId: $c } }) { invoice { rowId } } }', { c: company.createClientCompany.clientCompany.rowId });
          for (const [n, price] of [[1, '120.00'], [2, '37.50']] as const) {
            await graphql(token, 'mutation ($i: UUID!, $d: String!, $p: BigFloat!, $q: BigFloat!) { createInvoiceLineItem(input: { invoiceLineItem: { invoiceId: $i, description: $d, unitPrice: $p, quantity: $q } }) { invoiceLineItem { rowId } } }', {
              i: invoice.createInvoice.invoice.rowId,
              d: `Line ${n}`,
              p: price,
              q: String(1 + (i % 5)),
            });
          }
          writes++;
        } finally {
          inFlight--;
        }
      }
    };
    const writePhase = async () => {
      stopAt = Date.now() + options.writeSeconds * 1000;
      await Promise.all(Array.from({ length: options.writers }, (_, w) => writer(w)));
    };

    const before = writePhase();
    await sleep((options.writeSeconds * 1000) / 2);
    // 4. T: the writers pause between writes; the figures at T; then they go on.
    let release!: () => void;
    gate = new Promise((resolve) => (release = resolve));
    while (inFlight > 0) await sleep(5);
    await sleep(50);
    const [{ t }] = await query<{ t: string }>(source.url('atrium'), `select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' as t`);
    const atT = await figuresByOrganization(source.url('atrium'));
    await sleep(1100); // nothing commits in the second after T
    gate = undefined;
    release();
    await before;
    const writesBefore = writes;
    await writePhase();
    const writesAfter = writes - writesBefore;
    await atrium.stop();
    atrium = undefined;

    // Every segment up to now archived (this stops the sampler once they are).
    await query(source.url('postgres'), 'select pg_switch_wal()');
    sampling = false;
    await sampler;
    const lags = stats(samples.map((s) => s.archivedAfter!));
    // What `npm run doctor` says of this archiving server once every segment is archived.
    const doctor = await runDoctor({ url: source.url('atrium'), visitorRole: db.roles.visitor, pending: [], only: ['wal'] });
    const archiving = doctor.checks.find((c) => c.id === 'archiving')!;
    const repositoryBytes = Number((await run('du', ['-sb', settings.repository.path])).stdout.toString().split('\t')[0]);

    // 5. Restore to T into a new data directory, and start it.
    const restored = await cluster('restored');
    sub('restored');
    started = Date.now();
    await pgbackrest(`--pg1-path=${restored.dir}`, '--type=time', `--target=${t}`, '--target-action=promote', 'restore');
    const restoreSeconds = (Date.now() - started) / 1000;
    started = Date.now();
    await pgCtl(restored, 'start', ['-o', `-c port=${restored.port} -c unix_socket_directories=${restored.socketDir} -c archive_mode=off`]);
    clusters.push(restored);
    while ((await query<{ r: boolean }>(restored.url('postgres'), 'select pg_is_in_recovery() as r'))[0]!.r) await sleep(100);
    const startAndReplaySeconds = (Date.now() - started) / 1000;

    // 6. The checks.
    const afterRestore = await figuresByOrganization(restored.url('atrium'));
    const differences = compareFigures(atT, afterRestore);
    // Every table of app_public and app_private (sql/checks/rls_forced.sql's rule).
    const tables = await query<{ name: string; forced: boolean }>(
      restored.url('atrium'),
      `select format('%I.%I', n.nspname, c.relname) as name, c.relrowsecurity and c.relforcerowsecurity as forced
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname in ('app_public', 'app_private') and c.relkind in ('r', 'p') and not c.relispartition`,
    );
    const notForced = tables.filter((r) => !r.forced);
    const tenantTables = tables.length;
    atrium = await startAtrium(loadConfig(envFor(restored.url('atrium'))), log, { api: true, worker: false, migrate: false });
    const ready = await fetch(`${atrium.url}/readyz`);
    // What /readyz answered when it was not ready (its failing checks), for the report.
    const readiness = ready.status === 200 ? undefined : await ready.text();
    let apiInvoiceCounts = ready.status === 200;
    for (const [i, org] of dataset.orgs.entries()) {
      const data = await graphql(orgTokens[i]!, '{ invoices { totalCount } }', {});
      if (data.invoices.totalCount !== (atT.get(org.id)?.rows['app_public.invoices'] ?? 0)) apiInvoiceCounts = false;
    }
    await atrium.stop();
    atrium = undefined;

    return {
      postgres: (await query<{ v: string }>(restored.url('postgres'), `select current_setting('server_version') as v`))[0]!.v,
      pgbackrest: (await run(tools.pgbackrest, ['version'])).stdout.toString().trim(),
      dataset: { orgs: options.orgs, rows: options.rows, tables: dataset.tables, databaseBytes: Number(databaseBytes) },
      backup: { seconds: backupSeconds, repositoryBytes },
      writes: { before: writesBefore, after: writesAfter },
      target: t,
      rpo: { archiveTimeoutSeconds: ARCHIVE_TIMEOUT_SECONDS, samples: lags.n, p50Seconds: lags.p50, maxSeconds: lags.max },
      rto: { restoreSeconds, startAndReplaySeconds, totalSeconds: restoreSeconds + startAndReplaySeconds },
      doctorArchiving: { status: archiving.status, value: archiving.value },
      checks: {
        organizations: atT.size,
        figuresEqual: differences.length === 0,
        differences: differences.slice(0, 50),
        rlsForced: { tables: tenantTables, notForced: notForced.map((r) => r.name) },
        apiStarted: ready.status === 200,
        ...(readiness === undefined ? {} : { readiness }),
        apiInvoiceCounts,
      },
      folder: options.keep ? folder : undefined,
    };
  } finally {
    await atrium?.stop().catch(() => undefined);
    for (const c of clusters.reverse()) await pgCtl(c, 'stop', ['-m', 'fast']).catch(() => undefined);
    if (!options.keep) fs.rmSync(folder, { recursive: true, force: true });
  }
}
