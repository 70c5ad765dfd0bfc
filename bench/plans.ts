// 6. Query plans at full size: EXPLAIN every benchmarked SQL query, as the visitor (RLS on) in the
// largest organization and as the owner, and report any sequential scan of a tenant table. A
// plan that reads a whole tenant table would grow with every tenant; these must stay
// index-driven.
import pg from 'pg';
import type { BenchContext } from './context.ts';
import { RLS_QUERIES, sampleIds } from './rls.ts';
import type { Row, Section } from './stats.ts';

export interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  Schema?: string;
  Plans?: PlanNode[];
}

/** Tables read by a sequential scan anywhere in the plan, and every index used. */
export function scansOf(plan: PlanNode): { seq: string[]; indexes: string[] } {
  const seq: string[] = [];
  const indexes: string[] = [];
  const walk = (node: PlanNode) => {
    if (node['Node Type'] === 'Seq Scan' && node['Relation Name']) seq.push(node['Relation Name']);
    const index = (node as { 'Index Name'?: string })['Index Name'];
    if (index) indexes.push(index);
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(plan);
  return { seq, indexes };
}

export async function plansSection(ctx: BenchContext): Promise<Section> {
  const { db, dataset } = ctx;
  const largest = [...dataset.orgs].sort((a, b) => b.tasks - a.tasks)[0]!;
  const ids = (await sampleIds(db.ownerUrl, [largest.id], 1)).get(largest.id)!;
  const visitor = new pg.Client({ connectionString: db.authenticatorUrl });
  const owner = new pg.Client({ connectionString: db.ownerUrl });
  await Promise.all([visitor.connect(), owner.connect()]);
  const rows: Row[] = [];
  const notes: string[] = [`EXPLAIN (not ANALYZE) in the largest organization (${largest.tasks} tasks), after ANALYZE of the generated data.`];
  try {
    await visitor.query('begin');
    await visitor.query('select set_config(key, value, true) from json_each_text($1)', [
      JSON.stringify({ role: db.roles.visitor, 'app.user_id': largest.ownerUserId, 'app.session_id': largest.sessionId, 'app.org_id': largest.id }),
    ]);
    for (const query of RLS_QUERIES) {
      const id = query.takes === 'task' ? ids.tasks[0] : ids.projects[0];
      for (const [who, client, text, values] of [
        ['visitor (RLS)', visitor, query.visitor, query.takes === 'none' ? [] : [id]],
        ['owner', owner, query.owner, query.takes === 'none' ? [largest.id] : [largest.id, id]],
      ] as const) {
        const { rows: out } = await client.query(`explain (format json) ${text}`, [...values]);
        const plan = (out[0]['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0]!.Plan;
        const { seq, indexes } = scansOf(plan);
        rows.push({
          name: `${query.name} — ${who}`,
          unit: 'count',
          ours: seq.length,
          target: 'no sequential scan of a tenant table',
          pass: seq.length === 0,
          note: seq.length ? `sequential scan of ${seq.join(', ')}` : `indexes: ${[...new Set(indexes)].join(', ') || 'none'}`,
        });
      }
    }
  } finally {
    await visitor.query('rollback').catch(() => undefined);
    await Promise.all([visitor.end(), owner.end()]);
  }
  return { id: 'plans', title: '6. Plans: sequential scans of tenant tables in the benchmarked queries (0 expected)', rows, notes };
}
