// `npm run doctor`: the health of a database, measured live (embedded, or DATABASE_URL): the
// schema's data-quality figures (sql/reports/data_quality.sql), pending migrations, the books
// (sql/functions/books.sql: every monetary invariant), statement latency, unused and duplicate indexes, bloat, the job table's dead tuples, long transactions,
// replication and WAL archiving, and the job queue. Each check is ok, warn, fail or skip (what
// it needs is not there); `fail` is a violation and makes the command exit 1, so it can gate CI
// and deploys. The thresholds are the constants below; docs/CURRENT_STATE_OVERVIEW.md explains each check.
//
// It reads only: catalog and statistics views, the queue's tables, and (books) the documents. It connects as a
// superuser when it has one, otherwise as the owner, which db:setup makes a member of
// pg_monitor (other sessions' transactions, pg_stat_statements of every role).
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { SQL_DIR } from '../paths.ts';

export type Status = 'ok' | 'warn' | 'fail' | 'skip';

export interface Check {
  id: string;
  /** What was measured, in a few words. */
  title: string;
  status: Status;
  /** The figure, as the human table shows it. */
  value: string;
  /** The figures, for machines (--json). */
  figures: Record<string, unknown>;
  /** Why it is not ok, or what it lists (one line each). */
  details: string[];
}

export interface DoctorReport {
  database: string;
  serverVersion: string;
  at: string;
  checks: Check[];
  /** 1 when a check failed, else 0. */
  exitCode: 0 | 1;
}

/** The checks, in the order they run; `--only a,b` picks some. */
export const CHECK_GROUPS = ['schema', 'migrations', 'books', 'statements', 'indexes', 'bloat', 'transactions', 'wal', 'jobs'] as const;
export type CheckGroup = (typeof CHECK_GROUPS)[number];

export const THRESHOLDS = {
  /** Statements whose estimated p95 is above this warn (pg_stat_statements, at least minCalls calls). */
  statementP95WarnMs: 500,
  statementMinCalls: 20,
  /** Indexes never scanned warn from this size up (smaller ones cost little). */
  unusedIndexMinBytes: 8 * 1024 * 1024,
  /** Estimated bloat warns above this share of a relation, when it wastes at least bloatMinBytes. */
  bloatWarnRatio: 0.5,
  bloatMinBytes: 64 * 1024 * 1024,
  /** Dead tuples in the job table warn above this count when they outnumber the live ones. */
  jobTableDeadTuples: 100_000,
  /** Transactions open longer than this warn; longer than the second, fail (they hold back vacuum and block migrations). */
  transactionWarnSeconds: 300,
  transactionFailSeconds: 3600,
  /** Replication replay lag and WAL archiving delay warn above this (the RPO target, docs/BACKUPS_AND_RECOVERY.md). */
  walLagWarnSeconds: 60,
  /** A job ready to run and waiting longer than this warns (no worker, or workers overwhelmed). */
  jobWaitWarnSeconds: 300,
} as const;

const MB = 1024 * 1024;
const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;

type Query = <R extends pg.QueryResultRow = Record<string, any>>(sql: string, params?: unknown[]) => Promise<R[]>;

interface Context {
  query: Query;
  visitorRole: string;
  /** Committed migrations not applied, or undefined when that could not be asked. */
  pending: string[] | undefined;
  /** Whether this connection sees every session and statement (superuser or pg_monitor). */
  monitor: boolean;
}

const check = (id: string, title: string, status: Status, value: string, figures: Record<string, unknown> = {}, details: string[] = []): Check => ({ id, title, status, value, figures, details });

async function hasRelation(query: Query, name: string): Promise<boolean> {
  const [row] = await query<{ found: boolean }>('select to_regclass($1) is not null as found', [name]);
  return row!.found;
}

async function schemaChecks({ query, visitorRole }: Context): Promise<Check[]> {
  if (!(await hasRelation(query, 'app_public.organizations'))) {
    return [check('schema', 'Atrium schema', 'fail', 'not migrated', {}, ['app_public.organizations does not exist: run `npm run migrate -- migrate` (or `npm start`)'])];
  }
  {
    await query(`select set_config('atrium.visitor', $1, false)`, [visitorRole]);
    const [r] = await query(fs.readFileSync(path.join(SQL_DIR, 'reports', 'data_quality.sql'), 'utf8'));
    const full = (pct: string | null) => (pct === null || Number(pct) === 100 ? 'ok' : 'fail');
    return [
      check('tables', 'Tables defined (app_public)', 'ok', String(r!.tables_defined), { tables: r!.tables_defined }),
      check('tenant_isolation', 'Tenant isolation (RLS forced, visitor policies)', full(r!.tenant_isolation_pct), `${r!.tenant_isolation_pct}% of ${r!.tenant_tables} tenant tables`, {
        pct: Number(r!.tenant_isolation_pct),
        tenantTables: r!.tenant_tables,
      }),
      check('composite_fks', 'Composite tenant foreign keys', full(r!.composite_fk_pct), `${r!.composite_fk_pct}% of ${r!.tenant_fks}`, { pct: Number(r!.composite_fk_pct), tenantForeignKeys: r!.tenant_fks }),
      check(
        'fk_indexes',
        'Foreign keys with an index led by their columns',
        full(r!.fk_indexed_pct),
        `${r!.fk_indexed_pct}% of ${r!.foreign_keys}`,
        { pct: Number(r!.fk_indexed_pct), foreignKeys: r!.foreign_keys, unindexed: r!.unindexed_fks },
        (r!.unindexed_fks as string[]).map((fk) => `${fk}: no index led by its columns (a DELETE on the referenced table scans this one)`),
      ),
    ];
  }
}

function migrationChecks({ pending }: Context): Check[] {
  if (pending === undefined) return [check('migrations', 'Committed migrations applied', 'skip', 'unknown', {}, ['the migration state could not be read'])];
  return [
    check(
      'migrations',
      'Committed migrations applied',
      pending.length === 0 ? 'ok' : 'fail',
      pending.length === 0 ? 'all' : `${pending.length} pending`,
      { pending },
      pending.map((m) => `not applied: ${m}`),
    ),
  ];
}

/** How many of the books' violations a report lists (all are counted). */
const BOOKS_DETAILS = 20;

/** Every broken monetary invariant (sql/functions/books.sql): a fail, each named. */
async function booksChecks({ query }: Context): Promise<Check[]> {
  const [fn] = await query<{ found: boolean }>(`select to_regprocedure('app_private.books_violations(uuid)') is not null as found`);
  if (!fn!.found) return [check('books', 'Books add up (invoices, payments, credits, numbers)', 'skip', 'not migrated', {}, ['app_private.books_violations does not exist yet'])];
  const rows = await query<{ organization_id: string; rule: string; document: string; document_id: string | null; detail: string }>('select * from app_private.books_violations()');
  const byRule: Record<string, number> = {};
  for (const r of rows) byRule[r.rule] = (byRule[r.rule] ?? 0) + 1;
  return [
    check(
      'books',
      'Books add up (invoices, payments, credits, numbers)',
      rows.length === 0 ? 'ok' : 'fail',
      rows.length === 0 ? '0 violations' : `${rows.length} violations`,
      { violations: rows.length, byRule },
      [
        ...rows.slice(0, BOOKS_DETAILS).map((r) => `${r.rule}: ${r.document} ${r.document_id ?? ''} of organization ${r.organization_id}: ${r.detail}`.replace('  ', ' ')),
        ...(rows.length > BOOKS_DETAILS ? [`… ${rows.length - BOOKS_DETAILS} more: select * from app_private.books_violations()`] : []),
      ],
    ),
  ];
}

async function statementChecks({ query, monitor }: Context): Promise<Check[]> {
  const [ext] = await query<{ schema: string | null; loaded: boolean }>(
    `select (select extnamespace::regnamespace::text from pg_extension where extname = 'pg_stat_statements') as schema,
            'pg_stat_statements' = any (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')) as loaded`,
  );
  if (!ext!.schema || !ext!.loaded) {
    return [check('statements', 'Statement latency (pg_stat_statements)', 'skip', 'not available', {}, [
      'load pg_stat_statements (shared_preload_libraries) and create the extension: `npm run db:setup` creates it when the library is loaded',
    ])];
  }
  // pg_stat_statements keeps mean, stddev and max, no percentiles: p95 is estimated as
  // mean + 1.645·stddev (a normal distribution's), capped at the max seen.
  const rows = await query<{ query: string; calls: string; mean: number; p95: number; total: number }>(
    `select left(regexp_replace(query, '\\s+', ' ', 'g'), 100) as query, calls,
            round(mean_exec_time::numeric, 2)::float8 as mean,
            round(least(max_exec_time, mean_exec_time + 1.645 * stddev_exec_time)::numeric, 2)::float8 as p95,
            round(total_exec_time::numeric)::float8 as total
     from ${pg.escapeIdentifier(ext!.schema)}.pg_stat_statements
     where dbid = (select oid from pg_database where datname = current_database()) and calls >= $1
     order by total_exec_time desc limit 10`,
    [THRESHOLDS.statementMinCalls],
  );
  const slow = rows.filter((r) => r.p95 > THRESHOLDS.statementP95WarnMs);
  const worst = rows.reduce((m, r) => Math.max(m, r.p95), 0);
  return [
    check(
      'statements',
      'Statement latency, p95 estimate (top 10 by total time)',
      slow.length > 0 ? 'warn' : 'ok',
      rows.length === 0 ? 'no statements yet' : `worst ${worst} ms`,
      { statements: rows, seesAllRoles: monitor },
      [
        ...rows.map((r) => `${r.p95} ms p95, ${r.mean} ms mean, ${r.calls} calls: ${r.query}`),
        ...(monitor ? [] : ['only this role\'s statements are visible: grant pg_monitor to it (db:setup does)']),
      ],
    ),
  ];
}

async function indexChecks({ query }: Context): Promise<Check[]> {
  const [since] = await query<{ reset: Date | null }>('select stats_reset as reset from pg_stat_database where datname = current_database()');
  const unused = await query<{ index: string; bytes: string }>(
    `select s.indexrelid::regclass::text as index, pg_relation_size(s.indexrelid) as bytes
     from pg_stat_user_indexes s join pg_index i using (indexrelid)
     where s.schemaname in ('app_public', 'app_private', 'graphile_worker') and s.idx_scan = 0
       and not i.indisunique and not i.indisprimary and pg_relation_size(s.indexrelid) >= $1
     order by 2 desc`,
    [THRESHOLDS.unusedIndexMinBytes],
  );
  // Same table, same columns, operator classes, expressions and predicate: one is useless.
  // An index whose columns lead another's (same classes, no predicate, not unique) is redundant.
  const duplicates = await query<{ index: string; other: string; kind: string }>(
    `with ix as (
       select i.indexrelid, i.indrelid, i.indkey::int2[] as keys, i.indclass::oid[] as classes, i.indisunique,
              coalesce(pg_get_expr(i.indexprs, i.indrelid), '') as exprs, coalesce(pg_get_expr(i.indpred, i.indrelid), '') as pred,
              (select amname from pg_am where oid = c.relam) as am
       from pg_index i join pg_class c on c.oid = i.indexrelid
       where c.relnamespace in ('app_public'::regnamespace, 'app_private'::regnamespace) and i.indisvalid
     )
     select a.indexrelid::regclass::text as index, b.indexrelid::regclass::text as other,
            case when a.keys = b.keys and a.classes = b.classes then 'duplicate' else 'prefix' end as kind
     from ix a join ix b on a.indrelid = b.indrelid and a.indexrelid <> b.indexrelid and a.am = b.am
       and a.exprs = b.exprs and a.pred = b.pred
     where (a.keys = b.keys and a.classes = b.classes
            and ((a.indisunique = b.indisunique and a.indexrelid > b.indexrelid) or (b.indisunique and not a.indisunique)))
        or (cardinality(a.keys) < cardinality(b.keys) and not a.indisunique and a.exprs = '' and a.pred = '' and a.am = 'btree'
            and b.keys[1:cardinality(a.keys)] = a.keys and b.classes[1:cardinality(a.classes)] = a.classes)
     order by 3, 1`,
  );
  // Left by a CREATE INDEX CONCURRENTLY that failed (a lock_timeout, a duplicate key): written
  // on every insert and update, used by no query, and `create index … if not exists` skips it.
  const invalid = await query<{ index: string }>(
    `select i.indexrelid::regclass::text as index from pg_index i join pg_class c on c.oid = i.indexrelid
     where not i.indisvalid and c.relnamespace in ('app_public'::regnamespace, 'app_private'::regnamespace, 'graphile_worker'::regnamespace) order by 1`,
  );
  const exact = duplicates.filter((d) => d.kind === 'duplicate');
  const reset = since?.reset ? `since ${since.reset.toISOString()}` : 'since the statistics began';
  return [
    check(
      'unused_indexes',
      `Indexes never scanned (${mb(THRESHOLDS.unusedIndexMinBytes)} and larger)`,
      unused.length > 0 ? 'warn' : 'ok',
      String(unused.length),
      { indexes: unused.map((u) => ({ index: u.index, bytes: Number(u.bytes) })), statisticsSince: since?.reset ?? null },
      unused.map((u) => `${u.index}: ${mb(Number(u.bytes))}, no scan ${reset}`),
    ),
    check(
      'invalid_indexes',
      'Invalid indexes (a failed concurrent build)',
      invalid.length > 0 ? 'fail' : 'ok',
      String(invalid.length),
      { indexes: invalid.map((r) => r.index) },
      invalid.map((r) => `${r.index}: DROP INDEX CONCURRENTLY it, then build it again (docs/MIGRATIONS.md)`),
    ),
    check(
      'duplicate_indexes',
      'Duplicate or redundant indexes',
      exact.length > 0 ? 'fail' : duplicates.length > 0 ? 'warn' : 'ok',
      `${exact.length} duplicate, ${duplicates.length - exact.length} redundant`,
      { duplicates },
      duplicates.map((d) => (d.kind === 'duplicate' ? `${d.index} duplicates ${d.other}` : `${d.index} leads ${d.other} (redundant unless it serves a smaller, hotter read)`)),
    ),
  ];
}

async function bloatChecks({ query }: Context): Promise<Check[]> {
  // An estimate from the statistics (no scan): a table's pages beside the pages its live rows
  // need (average row width from pg_stats + tuple header, fillfactor), and a b-tree's pages
  // beside its entries' (key width + 8-byte entry header + 4-byte line pointer, 90% full).
  // Tables never analyzed have no statistics and are left out.
  const rows = await query<{ relation: string; kind: string; bytes: string; wasted: string }>(
    `with tables as (
       select c.oid, c.relname, c.relnamespace, c.relpages::float8 as pages, c.reltuples::float8 as tuples,
              coalesce((select (regexp_match(o, 'fillfactor=(\\d+)'))[1]::int from unnest(c.reloptions) o where o like 'fillfactor=%'), 100) as ff,
              (select sum(s.avg_width) from pg_stats s where s.schemaname = n.nspname and s.tablename = c.relname) as width
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where c.relkind = 'r' and n.nspname in ('app_public', 'app_private', 'graphile_worker') and c.reltuples > 0
     ), indexes as (
       select i.indexrelid as oid, c.relpages::float8 as pages, c.reltuples::float8 as tuples,
              (select sum(s.avg_width) from pg_stats s join pg_attribute a on a.attrelid = i.indrelid and a.attname = s.attname
               where s.schemaname = n.nspname and s.tablename = t.relname and a.attnum = any (i.indkey::int2[])) as width
       from pg_index i join pg_class c on c.oid = i.indexrelid join pg_class t on t.oid = i.indrelid join pg_namespace n on n.oid = t.relnamespace
       where n.nspname in ('app_public', 'app_private', 'graphile_worker') and c.relam = (select oid from pg_am where amname = 'btree')
         and c.reltuples > 0 and i.indexprs is null
     ), estimates as (
       select oid, 'table' as kind, pages, ceil(tuples * (width + 28) / ((current_setting('block_size')::int - 24) * ff / 100.0)) as needed from tables where width is not null
       union all
       select oid, 'index', pages, ceil(tuples * (width + 12) / ((current_setting('block_size')::int - 24) * 0.9)) + 1 from indexes where width is not null
     )
     select oid::regclass::text as relation, kind, (pages * current_setting('block_size')::int)::bigint as bytes,
            (greatest(pages - needed, 0) * current_setting('block_size')::int)::bigint as wasted
     from estimates
     where pages > needed
     order by 4 desc`,
  );
  const bloated = rows.filter((r) => Number(r.wasted) >= THRESHOLDS.bloatMinBytes && Number(r.wasted) > THRESHOLDS.bloatWarnRatio * Number(r.bytes));
  const wasted = rows.reduce((n, r) => n + Number(r.wasted), 0);
  return [
    check(
      'bloat',
      `Bloat estimate (over ${THRESHOLDS.bloatWarnRatio * 100}% and ${mb(THRESHOLDS.bloatMinBytes)})`,
      bloated.length > 0 ? 'warn' : 'ok',
      `${bloated.length} bloated; ${mb(wasted)} estimated free in all`,
      { bloated: bloated.map((r) => ({ relation: r.relation, kind: r.kind, bytes: Number(r.bytes), wasted: Number(r.wasted) })), estimatedFreeBytes: wasted },
      bloated.map((r) => `${r.kind} ${r.relation}: ~${mb(Number(r.wasted))} of ${mb(Number(r.bytes))} free (VACUUM reuses it; REINDEX CONCURRENTLY or pg_repack returns it)`),
    ),
  ];
}

async function transactionChecks({ query, monitor }: Context): Promise<Check[]> {
  const jobs = (await hasRelation(query, 'graphile_worker._private_jobs'))
    ? await query<{ live: string; dead: string; vacuumed: Date | null }>(
        `select n_live_tup as live, n_dead_tup as dead, greatest(last_vacuum, last_autovacuum) as vacuumed
         from pg_stat_all_tables where relid = 'graphile_worker._private_jobs'::regclass`,
      )
    : [];
  const long = await query<{ pid: number; user: string | null; state: string | null; seconds: number; query: string | null }>(
    `select pid, usename as user, state, extract(epoch from now() - xact_start)::int as seconds, left(regexp_replace(query, '\\s+', ' ', 'g'), 80) as query
     from pg_stat_activity
     where xact_start is not null and pid <> pg_backend_pid() and backend_type = 'client backend'
       and now() - xact_start > make_interval(secs => $1)
     order by xact_start`,
    [THRESHOLDS.transactionWarnSeconds],
  );
  const checks: Check[] = [];
  const job = jobs[0];
  if (job) {
    const dead = Number(job.dead);
    const live = Number(job.live);
    checks.push(
      check('job_table_dead_tuples', 'Dead tuples in the job table', dead > THRESHOLDS.jobTableDeadTuples && dead > live ? 'warn' : 'ok', `${dead} dead, ${live} live`, {
        dead,
        live,
        lastVacuum: job.vacuumed,
      }, dead > THRESHOLDS.jobTableDeadTuples && dead > live ? ['autovacuum is behind on graphile_worker._private_jobs: a long transaction holds it back, or its autovacuum settings are too lax'] : []),
    );
  } else {
    checks.push(check('job_table_dead_tuples', 'Dead tuples in the job table', 'skip', 'no job table', {}, ['graphile_worker is not installed in this database']));
  }
  const oldest = long.reduce((m, t) => Math.max(m, t.seconds), 0);
  checks.push(
    check(
      'long_transactions',
      `Transactions open over ${THRESHOLDS.transactionWarnSeconds} s`,
      oldest > THRESHOLDS.transactionFailSeconds ? 'fail' : long.length > 0 ? 'warn' : 'ok',
      long.length === 0 ? 'none' : `${long.length}, oldest ${oldest} s`,
      { transactions: long, seesAllSessions: monitor },
      [
        ...long.map((t) => `pid ${t.pid} (${t.user ?? '?'}, ${t.state ?? '?'}) open ${t.seconds} s: ${t.query ?? ''}`),
        ...(monitor ? [] : ['only this role\'s sessions are visible: grant pg_monitor to it (db:setup does)']),
      ],
    ),
  );
  return checks;
}

async function walChecks({ query }: Context): Promise<Check[]> {
  const replicas = await query<{ name: string; state: string; lag: number | null }>(
    `select coalesce(application_name, client_addr::text, 'replica') as name, state, extract(epoch from replay_lag)::float8 as lag from pg_stat_replication order by 1`,
  );
  const [archiver] = await query<{
    mode: string;
    archived: string;
    failed: string;
    last_archived_wal: string | null;
    last_archived_time: Date | null;
    last_failed_wal: string | null;
    last_failed_time: Date | null;
    current_wal: string | null;
    in_recovery: boolean;
  }>(
    `select current_setting('archive_mode') as mode, archived_count as archived, failed_count as failed, last_archived_wal, last_archived_time,
            last_failed_wal, last_failed_time, pg_is_in_recovery() as in_recovery,
            case when pg_is_in_recovery() then null else pg_walfile_name(pg_current_wal_lsn()) end as current_wal
     from pg_stat_archiver`,
  );
  const a = archiver!;
  const lagging = replicas.filter((r) => (r.lag ?? 0) > THRESHOLDS.walLagWarnSeconds);
  const checks: Check[] = [
    check(
      'replication',
      'Replication replay lag',
      replicas.length === 0 ? 'skip' : lagging.length > 0 ? 'warn' : 'ok',
      replicas.length === 0 ? 'no replicas' : `${replicas.length} replicas, worst ${Math.max(...replicas.map((r) => r.lag ?? 0)).toFixed(1)} s`,
      { replicas },
      replicas.map((r) => `${r.name} (${r.state}): ${r.lag === null ? 'no lag measured' : `${r.lag.toFixed(1)} s behind`}`),
    ),
  ];
  if (a.mode === 'off') {
    checks.push(check('archiving', 'WAL archiving', 'warn', 'off', { mode: a.mode }, ['archive_mode is off: no point-in-time recovery (docs/BACKUPS_AND_RECOVERY.md, `npm run backup:setup`)']));
    return checks;
  }
  const failing = a.last_failed_time !== null && (a.last_archived_time === null || a.last_failed_time > a.last_archived_time);
  // Segments finished but not archived: those strictly between the last archived one and the one
  // being written. (WAL file names are timeline + log + segment in hex; in one timeline their
  // order is the WAL's.)
  const behind = a.current_wal && a.last_archived_wal ? Math.max(segmentsBetween(a.last_archived_wal, a.current_wal) - 2, 0) : null;
  const ageSeconds = a.last_archived_time ? (Date.now() - a.last_archived_time.getTime()) / 1000 : null;
  const late = behind !== null && behind > 0 && ageSeconds !== null && ageSeconds > THRESHOLDS.walLagWarnSeconds;
  checks.push(
    check(
      'archiving',
      'WAL archiving',
      failing ? 'fail' : late ? 'warn' : 'ok',
      failing ? `failing since ${a.last_failed_time!.toISOString()}` : behind === null ? `${a.archived} archived` : `${behind} segments waiting`,
      { mode: a.mode, archived: Number(a.archived), failed: Number(a.failed), lastArchivedWal: a.last_archived_wal, lastArchivedAt: a.last_archived_time, lastFailedWal: a.last_failed_wal, lastFailedAt: a.last_failed_time, segmentsWaiting: behind },
      [
        ...(failing ? [`archive_command fails on ${a.last_failed_wal}: WAL piles up in pg_wal and point-in-time recovery stops at ${a.last_archived_wal ?? 'nothing'}`] : []),
        ...(late ? [`${behind} segments not archived; the last was archived ${Math.round(ageSeconds!)} s ago`] : []),
      ],
    ),
  );
  return checks;
}

/** Segments from one WAL file name to another (same timeline), both counted. */
export function segmentsBetween(from: string, to: string, segmentBytes = 16 * MB): number {
  const position = (name: string) => BigInt(`0x${name.slice(8, 16)}`) * (0x100000000n / BigInt(segmentBytes)) + BigInt(`0x${name.slice(16, 24)}`);
  return Number(position(to) - position(from)) + 1;
}

async function jobChecks({ query }: Context): Promise<Check[]> {
  if (!(await hasRelation(query, 'graphile_worker._private_jobs'))) return [check('job_queue', 'Job queue', 'skip', 'not installed')];
  const rows = await query<{ task: string; ready: number; scheduled: number; running: number; failed: number; oldest_ready_seconds: number | null }>(
    `select t.identifier as task,
            count(*) filter (where j.locked_at is null and j.attempts < j.max_attempts and j.run_at <= now())::int as ready,
            count(*) filter (where j.locked_at is null and j.attempts < j.max_attempts and j.run_at > now())::int as scheduled,
            count(*) filter (where j.locked_at is not null)::int as running,
            count(*) filter (where j.locked_at is null and j.attempts >= j.max_attempts)::int as failed,
            extract(epoch from now() - min(j.run_at) filter (where j.locked_at is null and j.attempts < j.max_attempts and j.run_at <= now()))::int as oldest_ready_seconds
     from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
     group by t.identifier order by 1`,
  );
  const waiting = rows.filter((r) => (r.oldest_ready_seconds ?? 0) > THRESHOLDS.jobWaitWarnSeconds);
  const failed = rows.reduce((n, r) => n + r.failed, 0);
  const ready = rows.reduce((n, r) => n + r.ready, 0);
  return [
    check(
      'job_queue',
      'Job queue: ready, failed, oldest waiting per task',
      waiting.length > 0 || failed > 0 ? 'warn' : 'ok',
      `${ready} ready, ${failed} failed`,
      { tasks: rows },
      [
        ...rows.map((r) => `${r.task}: ${r.ready} ready (oldest ${r.oldest_ready_seconds ?? 0} s), ${r.scheduled} scheduled, ${r.running} running, ${r.failed} failed`),
        ...(failed > 0 ? ['failed jobs: `npm run jobs -- failed`, retry with `npm run jobs -- retry <id>`'] : []),
      ],
    ),
  ];
}

const GROUPS: Record<CheckGroup, (context: Context) => Promise<Check[]> | Check[]> = {
  schema: schemaChecks,
  migrations: migrationChecks,
  books: booksChecks,
  statements: statementChecks,
  indexes: indexChecks,
  bloat: bloatChecks,
  transactions: transactionChecks,
  wal: walChecks,
  jobs: jobChecks,
};

export interface DoctorOptions {
  /** A superuser's or the owner's connection string, or a connected client (left open). */
  url: string | pg.ClientBase;
  visitorRole: string;
  /** Committed migrations not applied (undefined: unknown). */
  pending: string[] | undefined;
  only?: readonly CheckGroup[];
}

export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const own = typeof options.url === 'string' ? new pg.Client({ connectionString: options.url, application_name: 'atrium doctor', options: '-c statement_timeout=30s' }) : undefined;
  const client = own ?? (options.url as pg.ClientBase);
  await own?.connect();
  try {
    const query: Query = async (sql, params) => (await client.query(sql, params)).rows;
    const [who] = await query<{ database: string; version: string; monitor: boolean }>(
      `select current_database() as database, current_setting('server_version') as version,
              (select rolsuper from pg_roles where rolname = current_user) or pg_has_role(current_user, 'pg_monitor', 'member') as monitor`,
    );
    const context: Context = { query, visitorRole: options.visitorRole, pending: options.pending, monitor: who!.monitor };
    const checks: Check[] = [];
    for (const group of options.only ?? CHECK_GROUPS) checks.push(...(await GROUPS[group](context)));
    return { database: who!.database, serverVersion: who!.version, at: new Date().toISOString(), checks, exitCode: checks.some((c) => c.status === 'fail') ? 1 : 0 };
  } finally {
    await own?.end();
  }
}

/** The checks as an aligned table, each detail line under its check. */
export function formatChecks(checks: Check[]): string {
  const width = Math.max(...checks.map((c) => c.title.length));
  return checks.map((c) => [`${c.status.padEnd(4)}  ${c.title.padEnd(width)}  ${c.value}`.trimEnd(), ...c.details.map((d) => `        ${d}`)].join('\n')).join('\n') + '\n';
}

export function formatReport(report: DoctorReport): string {
  const counts = (['fail', 'warn', 'ok', 'skip'] as const).map((s) => `${report.checks.filter((c) => c.status === s).length} ${s}`).join(', ');
  return `Atrium doctor: database ${report.database}, PostgreSQL ${report.serverVersion}, ${report.at}\n\n${formatChecks(report.checks)}\n${counts}${report.exitCode ? ' (exit 1: a check failed)' : ''}\n`;
}
