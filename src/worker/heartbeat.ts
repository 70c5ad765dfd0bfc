// Heartbeats (sql/functions/worker_health.sql): this worker records every `intervalMs` that it is
// alive, under its graphile-worker pool id (the `locked_by` of the jobs it takes), and on each
// beat sweeps the workers that have been silent for `staleAfterMs`, freeing their jobs to run
// again. So a job whose worker was killed mid-run runs again within about staleAfterMs +
// intervalMs, not graphile-worker's 4 hours.
//
// A beat also tells this worker whether it was itself declared dead meanwhile (a pause longer
// than staleAfterMs): the first beat of a pool id registers it; later ones only find and touch its
// row, and a row gone means another worker swept it and its jobs run elsewhere. Each beat that
// found its row renews the fencing lease (./fencing.ts) from the moment it was sent.
import os from 'node:os';
import type { Pool } from 'pg';
import type { Logger } from '../log.ts';
import { now, type Instant } from './fencing.ts';

export interface Heartbeat {
  /** When the last heartbeat was recorded (null: none yet). */
  lastBeatAt(): Date | null;
  /** Beat now (e.g. for a pool just started), or right after the beat under way. */
  beatNow(): void;
  stop(): Promise<void>;
}

export interface HeartbeatOptions {
  pool: Pool;
  workerId: () => string;
  intervalMs: number;
  staleAfterMs: number;
  log: Logger;
  /** A beat for `workerId`, sent at `sentAt`, found its row (or registered it). Return false to treat the pool as declared dead after all. */
  onAlive?: (workerId: string, sentAt: Instant) => boolean;
  /** `workerId`'s row was gone: another worker declared it dead and freed its jobs. */
  onDeclaredDead?: (workerId: string) => void;
}

export function startHeartbeat(options: HeartbeatOptions): Heartbeat {
  const { pool, log } = options;
  let last: Date | null = null;
  let running: Promise<void> | undefined;
  let registered: string | undefined;
  let dead: string | undefined;
  const beat = async () => {
    try {
      const workerId = options.workerId();
      const register = workerId !== registered;
      const sentAt = now();
      const { rows } = await pool.query<{ alive: boolean }>('select app_private.worker_heartbeat($1, $2, $3, $4) as alive', [workerId, os.hostname(), process.pid, register]);
      if (rows[0]?.alive && (options.onAlive?.(workerId, sentAt) ?? true)) {
        registered = workerId;
        last = new Date();
      } else {
        // (Once per pool id: the row stays gone until the pool is replaced.)
        if (dead !== workerId) options.onDeclaredDead?.(workerId);
        dead = workerId;
        return;
      }
      const { rows: swept } = await pool.query<{ worker_id: string; last_seen_at: Date | null; jobs_unlocked: number }>(
        'select * from app_private.recover_stale_workers(make_interval(secs => $1))',
        [options.staleAfterMs / 1000],
      );
      for (const row of swept) {
        log.warn({ deadWorkerId: row.worker_id, lastSeenAt: row.last_seen_at, jobsUnlocked: row.jobs_unlocked }, 'worker presumed dead: its jobs will run again');
      }
    } catch (error) {
      log.warn({ err: error }, 'heartbeat failed (will retry)');
    }
  };
  let again = false;
  const tick = (soon = false) => {
    if (running) {
      again ||= soon; // (an interval's tick while a beat is slow is skipped)
      return;
    }
    running = beat().finally(() => {
      running = undefined;
      if (again) {
        again = false;
        tick();
      }
    });
  };
  tick();
  const timer = setInterval(() => tick(), options.intervalMs);
  timer.unref();
  return {
    lastBeatAt: () => last,
    beatNow: () => tick(true),
    async stop() {
      clearInterval(timer);
      again = false;
      await running;
      await pool.query('delete from app_private.worker_heartbeats where worker_id = $1', [options.workerId()]).catch((error) => log.warn({ err: error }, 'could not remove heartbeat'));
    },
  };
}
