// Heartbeats (sql/functions/worker_health.sql): this worker records every `intervalMs` that it is
// alive, under its graphile-worker pool id (the `locked_by` of the jobs it takes), and on each
// beat sweeps the workers that have been silent for `staleAfterMs`, freeing their jobs to run
// again. So a job whose worker was killed mid-run runs again within about staleAfterMs +
// intervalMs, not graphile-worker's 4 hours.
import os from 'node:os';
import type { Pool } from 'pg';
import type { Logger } from '../log.ts';

export interface Heartbeat {
  /** When the last heartbeat was recorded (null: none yet). */
  lastBeatAt(): Date | null;
  stop(): Promise<void>;
}

export function startHeartbeat(options: { pool: Pool; workerId: () => string; intervalMs: number; staleAfterMs: number; log: Logger }): Heartbeat {
  const { pool, log } = options;
  let last: Date | null = null;
  let running: Promise<void> | undefined;
  const beat = async () => {
    try {
      await pool.query('select app_private.worker_heartbeat($1, $2, $3)', [options.workerId(), os.hostname(), process.pid]);
      last = new Date();
      const { rows } = await pool.query<{ worker_id: string; last_seen_at: Date | null; jobs_unlocked: number }>(
        'select * from app_private.recover_stale_workers(make_interval(secs => $1))',
        [options.staleAfterMs / 1000],
      );
      for (const dead of rows) {
        log.warn({ deadWorkerId: dead.worker_id, lastSeenAt: dead.last_seen_at, jobsUnlocked: dead.jobs_unlocked }, 'worker presumed dead: its jobs will run again');
      }
    } catch (error) {
      log.warn({ err: error }, 'heartbeat failed (will retry)');
    }
  };
  const tick = () => {
    running ??= beat().finally(() => (running = undefined));
  };
  tick();
  const timer = setInterval(tick, options.intervalMs);
  timer.unref();
  return {
    lastBeatAt: () => last,
    async stop() {
      clearInterval(timer);
      await running;
      await pool.query('delete from app_private.worker_heartbeats where worker_id = $1', [options.workerId()]).catch((error) => log.warn({ err: error }, 'could not remove heartbeat'));
    },
  };
}
