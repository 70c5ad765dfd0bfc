// 9. Reports (sql/functions/reports.sql) in the largest organization, as its owner through the
// visitor role (row-level security on): p95 of each report, and every statement it runs checked
// for sequential scans of tenant tables. The statements inside the report functions are seen
// through auto_explain (loaded for this one superuser session, nested statements included, plans
// sent to the client as notices), so a seq scan hiding in a function body is caught too.
import pg from 'pg';
import type { BenchContext } from './context.ts';
import { scansOf, type PlanNode } from './plans.ts';
import { stats, timeEach, type Row, type Section } from './stats.ts';

/** The reports, called as the API calls them (a month: the generated time is the last 8 weeks). */
export const REPORT_QUERIES: Array<{ name: string; sql: string }> = [
  { name: 'utilization, last 30 days', sql: 'select * from app_public.report_utilization(current_date - 30, current_date)' },
  { name: 'unbilled work', sql: 'select * from app_public.report_unbilled_work()' },
  { name: 'receivables aging', sql: 'select * from app_public.report_receivables_aging(current_date)' },
  { name: 'engagement profitability, last 30 days', sql: 'select * from app_public.report_engagement_profitability(current_date - 30, current_date)' },
  { name: 'pipeline', sql: 'select * from app_public.report_pipeline()' },
];

/** Below this many rows (pg_class.reltuples) a sequential scan is the planner's right choice. */
const SMALL_TABLE = 1000;

export async function reportsSection(ctx: BenchContext): Promise<Section> {
  const { db, dataset, options } = ctx;
  const largest = [...dataset.orgs].sort((a, b) => b.tasks - a.tasks)[0]!;
  const client = new pg.Client({ connectionString: db.superuserUrl! });
  await client.connect();
  const plans: Array<{ query: string; plan: PlanNode }> = [];
  client.on('notice', (notice) => {
    // auto_explain's JSON: "duration: … ms  plan:\n{ … }"
    const text = notice.message ?? '';
    const at = text.indexOf('{');
    if (!text.includes('plan:') || at < 0) return;
    try {
      const parsed = JSON.parse(text.slice(at)) as { 'Query Text': string; Plan: PlanNode };
      plans.push({ query: parsed['Query Text'], plan: parsed.Plan });
    } catch {
      // not a plan
    }
  });
  const rows: Row[] = [];
  const notes = [
    `The largest organization (${largest.tasks} tasks, ${dataset.tables.time_entries ?? '?'} time entries in all organizations), as its owner through the visitor role; each report called ${options.iterations} times after a warm-up.`,
    `Plans: auto_explain (log_min_duration 0, nested statements, JSON) on one run of each report; a sequential scan of a table of ${SMALL_TABLE.toLocaleString('en')} rows or more (by its statistics) in any statement fails the row; smaller tables read whole are listed.`,
  ];
  const asOwner = async <T>(fn: () => Promise<T>): Promise<T> => {
    await client.query('begin');
    try {
      await client.query('select set_config(key, value, true) from json_each_text($1)', [
        JSON.stringify({ role: db.roles.visitor, 'app.user_id': largest.ownerUserId, 'app.session_id': largest.sessionId, 'app.org_id': largest.id }),
      ]);
      return await fn();
    } finally {
      await client.query('rollback');
    }
  };
  try {
    for (const report of REPORT_QUERIES) {
      const timings = await asOwner(() => timeEach(options.iterations, () => client.query(report.sql)));
      const latency = stats(timings);
      // One more run with auto_explain on, for its plans.
      plans.length = 0;
      await client.query(`load 'auto_explain'`);
      await client.query(`set auto_explain.log_min_duration = 0; set auto_explain.log_nested_statements = on; set auto_explain.log_format = 'json'; set auto_explain.log_level = 'notice'`);
      const result = await asOwner(() => client.query(report.sql));
      await client.query('set auto_explain.log_min_duration = -1');
      const scanned = new Set<string>();
      for (const p of plans) for (const table of scansOf(p.plan).seq) scanned.add(table);
      // A table the statistics say is small (under SMALL_TABLE rows: the generated data has no
      // bills, credit notes or portal access; a session per organization) is rightly read whole.
      const { rows: sizes } = await client.query<{ name: string; tuples: number }>(
        `select c.relname as name, c.reltuples::float8 as tuples from pg_class c
         where c.relnamespace in ('app_public'::regnamespace, 'app_private'::regnamespace) and c.relkind in ('r', 'p') and c.relname = any ($1)`, [[...scanned]]);
      const big = sizes.filter((t) => t.tuples >= SMALL_TABLE).map((t) => t.name);
      const small = sizes.filter((t) => t.tuples < SMALL_TABLE).map((t) => `${t.name} (${Math.max(0, t.tuples)} rows)`);
      rows.push({
        name: `${report.name} → ${result.rowCount} rows`,
        unit: 'ms',
        ours: latency,
        target: `p95 < 100 ms, no sequential scan of a table of ${SMALL_TABLE.toLocaleString('en')} rows or more`,
        pass: latency.p95 < 100 && big.length === 0,
        note: [
          `${plans.length} statements`,
          big.length ? `SEQUENTIAL SCAN of ${big.join(', ')}` : 'no sequential scan of a large table',
          small.length ? `small tables read whole: ${small.join(', ')}` : '',
        ].filter(Boolean).join('; '),
      });
    }
  } finally {
    await client.end();
  }
  return { id: 'reports', title: '9. Reports: the month-end reports in the largest organization (p95 < 100 ms, no sequential scan of a large table)', rows, notes };
}
