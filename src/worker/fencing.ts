// Fencing: a worker declared dead must not act for jobs it no longer holds.
//
// A worker silent for WORKER_STALE_AFTER_MS (a VM pause, a stop-the-world stall, a partition) is
// swept by another worker's heartbeat (sql/functions/worker_health.sql): its jobs are freed and
// run elsewhere. When it resumes it still holds, in memory, the job it was running and the batch
// in its local queue. Those must not send, charge or email again, nor be completed by it
// (graphile-worker deletes a completed job by id alone; its failure path already checks
// `locked_by`).
//
// The lease. Each heartbeat that finds this worker's row still there proves it was not swept
// until then; a sweep needs WORKER_STALE_AFTER_MS of silence counted from the beat's `last_seen_at`,
// which is no earlier than the moment the beat was sent. So for `leaseMs` = staleAfterMs − margin
// after sending a confirmed beat, the worker's jobs are certainly still its own: checking that is
// two clock reads, no query. Elapsed time is the larger of the wall clock's (which moves on
// while a virtual machine is suspended) and the monotonic clock's (which no clock step moves back).
//
// The fence. Every task is wrapped (fenceTasks): before it starts, before each external side
// effect (`assertOwnership(helpers)`, called by the task right before it sends), and after it
// returns, the job must be provably this worker's: the lease is valid, or else the database says
// the job is still locked by this worker's pool at the attempt it was taken with
// (`locked_by` + `attempts`: the fencing token; a later lock by anyone changes one of them). When
// it is not — or the database cannot say — the task throws JobFencedError: nothing is sent, and
// graphile-worker's failure of the job is a no-op (it updates only jobs the pool still holds), so
// the job's real owner is not disturbed. A pool known to have been declared dead (its heartbeat
// found its row gone) is fenced without a query until it is replaced (./index.ts).
//
// What remains: a stall that begins after the last check and before the side effect leaves (the
// milliseconds between `assertOwnership` and the request's bytes), and lasts past the stale time,
// lets both the resumed worker and the job's new owner send. Webhook receivers dedupe on the
// delivery id (docs/DATA_FLOWS.md); emails carry a stable Message-ID.
import type { Job, JobHelpers, Task, TaskList } from 'graphile-worker';
import type { Pool } from 'pg';
import type { Logger } from '../log.ts';

export class JobFencedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JobFencedError';
  }
}

/** A point in time on both clocks. */
export interface Instant {
  wall: number;
  mono: bigint;
}

export const now = (): Instant => ({ wall: Date.now(), mono: process.hrtime.bigint() });

/** Milliseconds since `since`: the larger of the wall clock's and the monotonic clock's. */
export function elapsedMs(since: Instant): number {
  return Math.max(Date.now() - since.wall, Number(process.hrtime.bigint() - since.mono) / 1e6);
}

/** The lease: how long after sending a confirmed heartbeat the worker acts without asking. */
export function leaseMsFor(staleAfterMs: number): number {
  // A third of the stale time is kept back (15 s of the default 45 s): more than a webhook
  // request may take (WEBHOOK_TIMEOUT_MS, 10 s) and any clock step we expect. The configuration
  // requires staleAfterMs ≥ 3 × the heartbeat interval, so the lease spans at least two beats
  // and one late beat never costs a query.
  return Math.floor((staleAfterMs * 2) / 3);
}

const ownershipChecks = new WeakMap<JobHelpers, () => Promise<void>>();

/**
 * Call right before an external side effect (an HTTP request, an email): throws JobFencedError
 * when this worker can no longer prove it holds the job. Free while the lease is valid. (A task
 * run outside the worker's fence, e.g. directly by a test, is not checked.)
 */
export function assertOwnership(helpers: JobHelpers): Promise<void> {
  return ownershipChecks.get(helpers)?.() ?? Promise.resolve();
}

export class Fence {
  private readonly leaseMs: number;
  private readonly pool: Pool;
  private readonly log: Logger;
  /** The pool id whose lease runs, and when its last confirmed heartbeat was sent. */
  private leaseHolder: string | undefined;
  private leaseFrom: Instant | undefined;
  /** When each pool id still waiting for its first heartbeat started. */
  private readonly starting = new Map<string, Instant>();
  /** Pool ids found declared dead. */
  private readonly dead = new Set<string>();

  constructor(options: { pool: Pool; staleAfterMs: number; log: Logger }) {
    this.pool = options.pool;
    this.leaseMs = leaseMsFor(options.staleAfterMs);
    this.log = options.log;
  }

  /** A pool is about to start (call before graphile-worker's run(): it may lock jobs at once). */
  poolStarting(): Instant {
    return now();
  }

  /** The pool started at `startedAt` has the id `poolId`. */
  poolStarted(poolId: string, startedAt: Instant): void {
    this.starting.set(poolId, startedAt);
  }

  /**
   * A heartbeat for `poolId`, sent at `sentAt`, found its row (or registered it): the lease runs
   * from `sentAt`. Returns false when the pool must be taken as declared dead: its first
   * heartbeat came so late that its jobs may have been freed as those of a worker without one.
   */
  confirmed(poolId: string, sentAt: Instant): boolean {
    if (this.dead.has(poolId)) return false;
    const startedAt = this.starting.get(poolId);
    if (startedAt !== undefined) {
      this.starting.delete(poolId);
      if (elapsedMs(startedAt) >= this.leaseMs) {
        this.declaredDead(poolId);
        return false;
      }
    }
    this.leaseHolder = poolId;
    this.leaseFrom = sentAt;
    return true;
  }

  /** `poolId` was declared dead: none of its jobs may act again. */
  declaredDead(poolId: string): void {
    this.dead.add(poolId);
    this.starting.delete(poolId);
    if (this.leaseHolder === poolId) {
      this.leaseHolder = undefined;
      this.leaseFrom = undefined;
    }
  }

  /** Whether the jobs of `poolId` are certainly still its own (no query). */
  leaseValid(poolId: string | null): boolean {
    return poolId !== null && poolId === this.leaseHolder && this.leaseFrom !== undefined && elapsedMs(this.leaseFrom) < this.leaseMs;
  }

  /** Throws JobFencedError unless `job` is provably still held by this worker. */
  async check(job: Job, moment: string): Promise<void> {
    const holder = job.locked_by;
    if (this.leaseValid(holder)) return;
    let reason: string | undefined;
    if (holder === null) {
      reason = 'the job was not locked';
    } else if (this.dead.has(holder)) {
      reason = 'this worker was declared dead';
    } else {
      try {
        const { rows } = await this.pool.query<{ ours: boolean }>(
          'select exists (select from graphile_worker._private_jobs where id = $1 and locked_by = $2 and attempts = $3) as ours',
          [job.id, holder, job.attempts],
        );
        if (!rows[0]?.ours) reason = 'another worker holds it now, or it is done';
      } catch (error) {
        reason = `its ownership could not be checked (${(error as Error).message})`;
      }
    }
    if (reason === undefined) return;
    // Once per job run: the error ends the task. Ids only, never the payload.
    this.log.warn(
      { jobId: job.id, task: job.task_identifier, attempt: job.attempts, lockedBy: holder, moment, reason },
      'job fenced: this worker no longer holds it, so it does nothing more for it',
    );
    throw new JobFencedError(`job ${job.id} fenced ${moment}: ${reason}`);
  }

  /** `task`, checked before it starts, before its side effects (assertOwnership) and when it finishes. */
  wrap(task: Task): Task {
    // (While the lease is valid: two clock reads per check, not even an await.)
    return async (payload, helpers) => {
      const job = helpers.job;
      if (!this.leaseValid(job.locked_by)) await this.check(job, 'before it started');
      ownershipChecks.set(helpers, () => this.check(job, 'before a side effect'));
      const result = await task(payload, helpers);
      // Completing is not fenced by graphile-worker (it deletes the job by id): fail instead.
      if (!this.leaseValid(job.locked_by)) await this.check(job, 'when it finished');
      return result;
    };
  }
}

/** Every task of `tasks`, fenced. */
export function fenceTasks(tasks: TaskList, fence: Fence): TaskList {
  const fenced: TaskList = {};
  for (const [name, task] of Object.entries(tasks)) if (task) fenced[name] = fence.wrap(task);
  return fenced;
}
