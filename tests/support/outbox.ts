// The jobs a transaction enqueues, seen from inside it. `inRequest` runs `fn` as an API request
// would (role visitor, the session's settings; `as: 'worker'`: the worker role, as a job), then — still in that transaction — switches back
// to the owner role, which may read the job queue, and lists the send_email jobs this
// transaction inserted (their xmin is its transaction id, and they were created at its start:
// a job it merely updated — an older email cancelled while a worker holds it — has xmin too). Nothing else can see, or run, those
// jobs before it commits, so the answer is exact even with workers running.
import type pg from 'pg';
import { pool, roleName, type Session } from './db.ts';

export interface QueuedEmail {
  key: string;
  max_attempts: number;
  payload: { organization_id?: string; template: string; to: string; data: Record<string, unknown>; message_key: string };
}

export async function inRequest<T>(
  session: Session,
  fn: (c: pg.PoolClient) => Promise<T>,
  options: { as?: 'visitor' | 'worker' } = {},
): Promise<{ result: T; emails: QueuedEmail[]; done: (commit: boolean) => Promise<void> }> {
  const client = await pool('owner').connect();
  await client.query('begin');
  try {
    await client.query('select set_config(key, value, true) from json_each_text($1)', [
      JSON.stringify({ role: roleName(options.as ?? 'visitor'), 'app.user_id': session.userId ?? '', 'app.session_id': session.sessionId ?? '', 'app.org_id': session.orgId ?? '' }),
    ]);
    const result = await fn(client);
    await client.query('reset role');
    const { rows } = await client.query<QueuedEmail>(
      `select j.key, j.max_attempts, j.payload
       from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
       where t.identifier = 'send_email' and j.xmin = pg_current_xact_id()::xid
         and j.created_at = now() -- inserted here, not an older job this transaction only updated
       order by j.id`,
    );
    return {
      result,
      emails: rows,
      done: async (commit) => {
        await client.query(commit ? 'commit' : 'rollback');
        client.release();
      },
    };
  } catch (error) {
    await client.query('rollback');
    client.release();
    throw error;
  }
}

/** Runs `fn` as a request and returns the emails it enqueued; rolled back unless `commit`. */
export async function emailsOf<T>(session: Session, fn: (c: pg.PoolClient) => Promise<T>, options: { commit?: boolean; as?: 'visitor' | 'worker' } = {}): Promise<{ result: T; emails: QueuedEmail[] }> {
  const { result, emails, done } = await inRequest(session, fn, { as: options.as });
  await done(options.commit ?? false);
  return { result, emails };
}

/** How many jobs with this key are in the queue (committed). */
export const jobsWithKey = async (key: string): Promise<number> => (await pool('owner').query('select 1 from graphile_worker._private_jobs where key = $1', [key])).rowCount ?? 0;
