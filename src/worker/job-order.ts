// graphile-worker 0.18 takes a batch of jobs for its local queue in one query that selects them
// by priority and time, but the query's `update … returning *` gives them back in no particular
// order (in practice by id, oldest first), and the local queue hands them to the worker slots as
// they came. A job of a quiet organization (fair priority 0) fetched together with 49 jobs of a
// busy one (priorities 1 to 49) then starts last of the 50 instead of first. This puts each batch
// back in the order the query chose it: priority, then run_at, then id (graphile-worker's own order
// when it fetches one job at a time). Applied to the worker's own pool (src/worker/index.ts).
import type pg from 'pg';

/** graphile-worker's fetch (dist/sql/getJobs.js): `with j as (select jobs.job_queue_id, jobs.priority, jobs.run_at, jobs.id …`. */
const FETCH_JOBS = /^with j(?:_raw)? as \(\s*select jobs\.job_queue_id, jobs\.priority, jobs\.run_at, jobs\.id\b/;

interface JobRow {
  priority: number;
  run_at: Date;
  id: string;
}

const byId = (a: string, b: string) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);

/** graphile-worker's job order: lower priority first, then earlier run_at, then lower id. */
function compareJobs(a: JobRow, b: JobRow): number {
  return a.priority - b.priority || a.run_at.getTime() - b.run_at.getTime() || byId(String(a.id), String(b.id));
}

/** True when `text` is graphile-worker's batch fetch. */
function isJobFetch(text: unknown): boolean {
  return typeof text === 'string' && FETCH_JOBS.test(text);
}

/** Makes the client return graphile-worker's fetched batches in job order (see above). */
export function orderFetchedJobs(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  client.query = ((...args: unknown[]) => {
    const result = query(...args);
    const config = args[0] as string | { text?: unknown } | undefined;
    const text = typeof config === 'string' ? config : config?.text;
    if (!isJobFetch(text) || !(result instanceof Promise)) return result;
    return result.then((answer: pg.QueryResult<JobRow>) => {
      answer.rows.sort(compareJobs);
      return answer;
    });
  }) as typeof client.query;
}
