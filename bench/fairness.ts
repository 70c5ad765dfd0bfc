// Fairness between organizations (docs/DATA_FLOWS.md): one organization queues a flood of
// trivial jobs, then another organization queues one; how long does the one wait, and how much of
// the flood starts before it? Ours: both through app_private.enqueue_job (fair priorities). Baseline,
// in the same run: the same jobs through graphile_worker.add_job (no priorities: first come,
// first served).
import pg from 'pg';
import { jobStartRecorder, startWorker } from '../src/worker/index.ts';
import type { BenchContext } from './context.ts';
import type { Row, Section } from './stats.ts';

/** The worker's concurrency in this scenario. */
const CONCURRENCY = 4;
/**
 * The most jobs of the flood that may start before the one job with fair priorities: both
 * organizations start quiet, so the flood goes at priorities 0, 1, 2, … and the one job at 0, after
 * the flood's job at 0 (same priority and time, queued first) and before all the others.
 */
const FAIR_BOUND = 1;

interface Outcome {
  /** From the worker's first job start to the one job's start. */
  waitMs: number;
  /** Jobs of the flood the worker started before the one job (from its "job started" log lines, in order). */
  floodStartedBefore: number;
}

async function scenario(ctx: BenchContext, flood: number, fair: boolean): Promise<Outcome> {
  const [big, small] = [ctx.dataset.orgs[0]!, ctx.dataset.orgs[ctx.dataset.orgs.length - 1]!];
  const su = new pg.Client({ connectionString: ctx.db.superuserUrl });
  await su.connect();
  try {
    const enqueue = fair
      ? `select app_private.enqueue_job('echo', $1, jsonb_build_object('n', n)) as id from generate_series(1, $2) n`
      : `select (graphile_worker.add_job('echo', json_build_object('organization_id', $1::uuid, 'n', n), max_attempts => 10)).id from generate_series(1, $2) n`;
    // Both start quiet, as the scenario says: what earlier sections queued for them this minute
    // and the last would otherwise count towards their priorities.
    await su.query('delete from app_private.job_enqueue_counts where organization_id = any ($1::uuid[])', [[big.id, small.id]]);
    await su.query('begin');
    await su.query(`select set_config('role', $1, true)`, [fair ? ctx.db.roles.producer : ctx.db.roles.worker]);
    const floodIds = (await su.query<{ id: string }>(enqueue, [big.id, flood])).rows.map((r) => r.id);
    const singleId = (await su.query<{ id: string }>(enqueue, [small.id, 1])).rows[0]!.id;
    await su.query('commit');

    // The order in which the worker started the jobs, and when (its "job started" lines).
    const { log, started } = jobStartRecorder();
    const worker = await startWorker({ connectionString: ctx.db.workerUrl, concurrency: CONCURRENCY, log, crontab: false });
    const since = Date.now();
    try {
      let single: number;
      while ((single = started.findIndex((s) => s.jobId === singleId)) < 0) {
        if (Date.now() - since > 600_000) throw new Error('the single job did not start within 10 minutes');
        await new Promise((r) => setTimeout(r, 5));
      }
      const floodIdSet = new Set(floodIds);
      return {
        waitMs: started[single]!.time - started[0]!.time,
        floodStartedBefore: started.slice(0, single).filter((s) => floodIdSet.has(s.jobId)).length,
      };
    } finally {
      await worker.stop();
      await su.query(`delete from graphile_worker._private_jobs j using graphile_worker._private_tasks t where t.id = j.task_id and t.identifier = 'echo'`);
    }
  } finally {
    await su.end();
  }
}

export async function fairnessSection(ctx: BenchContext): Promise<Section> {
  const flood = ctx.options.smoke ? 300 : 10_000;
  const baseline = await scenario(ctx, flood, false);
  const ours = await scenario(ctx, flood, true);
  const rows: Row[] = [
    {
      name: `the one job's wait behind ${flood} jobs of another organization`,
      unit: 'ms',
      ours: ours.waitMs,
      baseline: baseline.waitMs,
      baselineLabel: 'no priorities',
      ratio: { value: ours.waitMs / baseline.waitMs },
      target: 'a few seconds at most',
      pass: ours.waitMs <= 5000,
    },
    {
      name: 'jobs of the flood started before it',
      unit: 'count',
      ours: ours.floodStartedBefore,
      baseline: baseline.floodStartedBefore,
      baselineLabel: 'no priorities',
      target: `≤ ${FAIR_BOUND} (one priority level per job)`,
      pass: ours.floodStartedBefore <= FAIR_BOUND,
    },
  ];
  return {
    id: 'fairness',
    title: '4b. Fairness: one organization floods the queue, another queues one job',
    rows,
    notes: [`The worker starts after both are queued (the worst case: the whole flood is waiting); concurrency ${CONCURRENCY}; the trivial task \`echo\`.`],
  };
}
