// `npm run data-quality`: the data-quality table of docs/ENTITIES.md, measured on the demo data
// (loaded first if missing): the catalog figures of sql/reports/data_quality.sql, and the p95
// latency of the list queries the API runs most, each executed as a demo member would (a
// transaction as the visitor role, row-level security on), ITERATIONS times after a warm-up.
import type { FileStorage } from '../storage/index.ts';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import type { Database } from './bootstrap.ts';
import { DEMO_PASSWORD, seedDemoData } from './seed.ts';
import type { Logger } from '../log.ts';
import { SQL_DIR } from '../paths.ts';

const ITERATIONS = 200;

/** The queries timed, as PostGraphile would send them for common screens (simplified). */
export const TIMED_QUERIES: Record<string, string> = {
  'open invoices by due date': `select i.id, i.number, i.status, i.total, i.balance, i.due_on, c.name from app_public.invoices i
     join app_public.client_companies c on c.organization_id = i.organization_id and c.id = i.client_company_id
     where i.status in ('sent', 'viewed', 'overdue') order by i.due_on limit 50`,
  'pipeline: deals by stage': `select stage, count(*), sum(value) from app_public.deals group by stage`,
  'tasks of a project, in order': `select t.id, t.title, t.status, t.position from app_public.tasks t
     where t.project_id = (select id from app_public.projects limit 1) order by t.position limit 100`,
  'time of an engagement by day': `select work_date, sum(minutes), sum(amount) from app_public.time_entries
     where engagement_id = (select id from app_public.engagements limit 1) group by work_date order by work_date`,
  'messages of a thread': `select m.id, m.body, m.created_at from app_public.messages m
     where m.thread_id = (select id from app_public.threads limit 1) order by m.created_at limit 50`,
  'latest activity': `select id, table_name, action, occurred_at from app_public.activity_events order by occurred_at desc, seq desc limit 50`,
};

export interface DataQuality {
  report: Record<string, number | string>;
  p95ms: Record<string, number>;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

export async function measureDataQuality(db: Database, log: Logger, storage: FileStorage): Promise<DataQuality> {
  const { credentials } = await seedDemoData(db, log, storage);
  const owner = new pg.Client({ connectionString: db.ownerUrl });
  const api = new pg.Client({ connectionString: db.authenticatorUrl });
  await Promise.all([owner.connect(), api.connect()]);
  try {
    await owner.query('begin');
    await owner.query(`select set_config('atrium.visitor', $1, true)`, [db.roles.visitor]);
    const report = (await owner.query(fs.readFileSync(path.join(SQL_DIR, 'reports', 'data_quality.sql'), 'utf8'))).rows[0];
    await owner.query('rollback');

    // Sign in as the first demo organization's member.
    const org = credentials[0];
    const member = org.users.find((u) => u.role === 'member')!;
    await api.query('begin');
    await api.query(`select set_config('role', $1, true)`, [db.roles.visitor]);
    const grant = (await api.query('select user_id, session_id from app_private.login($1, $2, $3)', [member.email, DEMO_PASSWORD, org.organizationId])).rows[0];
    await api.query('commit');
    const settings = JSON.stringify({ role: db.roles.visitor, 'app.user_id': grant.user_id, 'app.session_id': grant.session_id, 'app.org_id': org.organizationId });

    const p95ms: Record<string, number> = {};
    for (const [name, sql] of Object.entries(TIMED_QUERIES)) {
      const times: number[] = [];
      for (let i = 0; i < ITERATIONS + 20; i++) {
        const start = process.hrtime.bigint();
        await api.query('begin');
        await api.query('select set_config(key, value, true) from json_each_text($1)', [settings]);
        const { rowCount } = await api.query(sql);
        await api.query('commit');
        if (i === 0 && !rowCount) throw new Error(`timed query "${name}" returned no rows: the demo data is missing`);
        if (i >= 20) times.push(Number(process.hrtime.bigint() - start) / 1e6);
      }
      times.sort((x, y) => x - y);
      p95ms[name] = Math.round(percentile(times, 95) * 100) / 100;
    }
    return { report, p95ms };
  } finally {
    await Promise.all([owner.end(), api.end()]);
  }
}

export function formatDataQuality({ report, p95ms }: DataQuality): string {
  const rows = [
    ['Tables defined (app_public)', `${report.tables_defined}`],
    ['Tenant isolation (RLS forced, visitor policies)', `${report.tenant_isolation_pct}% of ${report.tenant_tables} tenant tables`],
    ['Composite tenant foreign keys', `${report.composite_fk_pct}% of ${report.tenant_fks}`],
    ['Foreign keys with a supporting index', `${report.fk_indexed_pct}% of ${report.foreign_keys}`],
    ...Object.entries(p95ms).map(([name, ms]) => [`Query p95: ${name}`, `${ms} ms`]),
  ];
  return `| measure | value |\n|---|---|\n${rows.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}\n`;
}
