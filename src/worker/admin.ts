// `npm run jobs -- <command>`: the job queue for operators (sql/functions/jobs.sql).
//   status (default)    queue depth per task, live workers, and the latest failed jobs
//   failed [--json]     every job that used up its attempts, with its last error
//   retry <id>...       run those failed jobs again now, with fresh attempts
//   retry --all         run every failed job again
// Connects as the worker role (it owns the queue).
import pg from 'pg';

type Row = Record<string, unknown>;

/** Renders rows as an aligned text table. */
export function formatTable(rows: Row[], columns: string[]): string {
  if (rows.length === 0) return '  (none)\n';
  const cell = (v: unknown) => (v === null || v === undefined ? '' : v instanceof Date ? v.toISOString() : String(v).replace(/\s+/g, ' '));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => Math.min(cell(r[c]).length, 80))));
  const line = (values: string[]) => `  ${values.map((v, i) => v.slice(0, 80).padEnd(widths[i]!)).join('  ')}`.trimEnd();
  return `${[line(columns), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n')}\n`;
}

export async function runJobsCommand(workerUrl: string, args: string[], out: NodeJS.WritableStream): Promise<number> {
  const client = new pg.Client({ connectionString: workerUrl });
  await client.connect();
  try {
    const [command = 'status', ...rest] = args;
    if (command === 'status') {
      const depth = await client.query('select * from app_private.job_queue_depth()');
      const workers = await client.query(
        `select worker_id, hostname, pid, started_at, round(extract(epoch from now() - last_seen_at))::int as seen_seconds_ago
         from app_private.worker_heartbeats order by started_at`,
      );
      const failed = await client.query('select id, task, organization_id, attempts, updated_at, last_error from app_private.failed_jobs() limit 20');
      out.write(`Queue depth per task\n${formatTable(depth.rows, ['task', 'waiting', 'scheduled', 'running', 'retrying', 'failed'])}\n`);
      out.write(`Workers\n${formatTable(workers.rows, ['worker_id', 'hostname', 'pid', 'started_at', 'seen_seconds_ago'])}\n`);
      out.write(`Failed jobs (latest 20; \`npm run jobs -- retry <id>\` runs one again)\n${formatTable(failed.rows, ['id', 'task', 'organization_id', 'attempts', 'updated_at', 'last_error'])}`);
      return 0;
    }
    if (command === 'failed') {
      const failed = await client.query('select * from app_private.failed_jobs()');
      if (rest.includes('--json')) out.write(`${JSON.stringify(failed.rows, null, 2)}\n`);
      else out.write(formatTable(failed.rows, ['id', 'task', 'organization_id', 'attempts', 'updated_at', 'last_error']));
      return 0;
    }
    if (command === 'retry') {
      const all = rest.includes('--all');
      const ids = rest.filter((a) => a !== '--all');
      if (!all && (ids.length === 0 || ids.some((id) => !/^\d+$/.test(id)))) {
        out.write('Usage: npm run jobs -- retry <job id>... | --all\n');
        return 2;
      }
      const { rows } = await client.query<{ id: string }>('select r as id from app_private.retry_failed_jobs($1::bigint[]) r', [all ? null : ids]);
      out.write(rows.length === 0 ? 'No failed job matched.\n' : `Retrying ${rows.length} job(s): ${rows.map((r) => r.id).join(', ')}\n`);
      return rows.length === 0 && !all ? 1 : 0;
    }
    out.write(`Unknown jobs command "${command}". Commands: status, failed [--json], retry <id>... | --all\n`);
    return 2;
  } finally {
    await client.end();
  }
}
