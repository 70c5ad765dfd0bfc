// 1. What row-level security costs: the same queries as the API's visitor role with the
// request's settings (RLS on: the policies add the organization, the permission check and
// `deleted_at is null`) and as the owner (bypasses RLS) with the same filters written out —
// interleaved query by query on two connections, only the query timed.
import pg from 'pg';
import type { BenchContext } from './context.ts';
import { random } from './context.ts';
import { stats, type Row, type Section } from './stats.ts';

export interface RlsQuery {
  name: string;
  /** As the visitor: no tenant filter, RLS adds it. $1 = the row/parent id (if any). */
  visitor: string;
  /** As the owner: the same with organization_id = $1 (and deleted_at is null) explicit; $2 = the id. */
  owner: string;
  /** Which id the query takes: a task, a project, or none. */
  takes: 'task' | 'project' | 'none';
}

export const RLS_QUERIES: RlsQuery[] = [
  {
    name: 'task by id',
    visitor: 'select * from app_public.tasks where id = $1',
    owner: 'select * from app_public.tasks where organization_id = $1 and id = $2 and deleted_at is null',
    takes: 'task',
  },
  {
    name: 'list of 20 tasks by due date',
    visitor: 'select * from app_public.tasks order by due_on limit 20',
    owner: 'select * from app_public.tasks where organization_id = $1 and deleted_at is null order by due_on limit 20',
    takes: 'none',
  },
  {
    name: "join: a project's tasks with the project",
    visitor: `select t.id, t.title, t.status, p.name as project from app_public.tasks t
      join app_public.projects p on p.organization_id = t.organization_id and p.id = t.project_id
      where t.project_id = $1 order by t.position`,
    owner: `select t.id, t.title, t.status, p.name as project from app_public.tasks t
      join app_public.projects p on p.organization_id = t.organization_id and p.id = t.project_id
      where t.organization_id = $1 and p.organization_id = $1 and t.deleted_at is null and p.deleted_at is null and t.project_id = $2
      order by t.position`,
    takes: 'project',
  },
  {
    name: 'count of tasks',
    visitor: 'select count(*) from app_public.tasks',
    owner: 'select count(*) from app_public.tasks where organization_id = $1 and deleted_at is null',
    takes: 'none',
  },
];

/** Up to `n` task and project ids of each organization, to query by. */
export async function sampleIds(ownerUrl: string, orgIds: string[], n = 200): Promise<Map<string, { tasks: string[]; projects: string[] }>> {
  const client = new pg.Client({ connectionString: ownerUrl });
  await client.connect();
  try {
    const out = new Map<string, { tasks: string[]; projects: string[] }>();
    for (const org of orgIds) {
      const tasks = await client.query<{ id: string }>('select id from app_public.tasks where organization_id = $1 order by random() limit $2', [org, n]);
      const projects = await client.query<{ id: string }>('select id from app_public.projects where organization_id = $1 order by random() limit $2', [org, n]);
      out.set(org, { tasks: tasks.rows.map((r) => r.id), projects: projects.rows.map((r) => r.id) });
    }
    return out;
  } finally {
    await client.end();
  }
}

export async function rlsSection(ctx: BenchContext): Promise<Section> {
  const { db, dataset, options } = ctx;
  const ids = await sampleIds(db.ownerUrl, dataset.orgs.map((o) => o.id));
  const visitor = new pg.Client({ connectionString: db.authenticatorUrl });
  const owner = new pg.Client({ connectionString: db.ownerUrl });
  await Promise.all([visitor.connect(), owner.connect()]);
  const rows: Row[] = [];
  try {
    for (const [q, query] of RLS_QUERIES.entries()) {
      const rnd = random(7 + q);
      const timesVisitor: number[] = [];
      const timesOwner: number[] = [];
      const warmup = Math.min(50, options.iterations);
      for (let i = -warmup; i < options.iterations; i++) {
        const org = ctx.pickOrg(i + warmup);
        const pool = ids.get(org.id)!;
        const list = query.takes === 'task' ? pool.tasks : pool.projects;
        const id = list[Math.floor(rnd() * list.length)]!;
        const visitorArgs = query.takes === 'none' ? [] : [id];
        const ownerArgs = query.takes === 'none' ? [org.id] : [org.id, id];
        // The visitor's transaction is set up as the API sets up a request (src/http/auth.ts).
        await visitor.query('begin');
        await visitor.query('select set_config(key, value, true) from json_each_text($1)', [
          JSON.stringify({ role: db.roles.visitor, 'app.user_id': org.ownerUserId, 'app.session_id': org.sessionId, 'app.org_id': org.id }),
        ]);
        await owner.query('begin');
        const pair: Array<[pg.Client, string, unknown[], number[]]> = [
          [visitor, query.visitor, visitorArgs, timesVisitor],
          [owner, query.owner, ownerArgs, timesOwner],
        ];
        if (i % 2 !== 0) pair.reverse();
        for (const [client, text, values, out] of pair) {
          const t = process.hrtime.bigint();
          const result = await client.query({ name: `${client === visitor ? 'v' : 'o'}${q}`, text, values });
          const ms = Number(process.hrtime.bigint() - t) / 1e6;
          if (i >= 0) out.push(ms);
          if (i === 0 && result.rowCount === 0 && query.takes !== 'none') throw new Error(`${query.name}: no rows as ${client === visitor ? 'the visitor' : 'the owner'}`);
        }
        await visitor.query('commit');
        await owner.query('commit');
      }
      const ours = stats(timesVisitor);
      const baseline = stats(timesOwner);
      const ratio = { p50: ours.p50 / baseline.p50, p95: ours.p95 / baseline.p95 };
      rows.push({
        name: query.name,
        unit: 'ms',
        ours,
        baseline,
        baselineLabel: 'owner, explicit filter',
        ratio,
        target: 'p50 ≤ 1.10×, p95 ≤ 1.20×',
        pass: ratio.p50 <= 1.1 && ratio.p95 <= 1.2,
      });
    }
  } finally {
    await Promise.all([visitor.end(), owner.end()]);
  }
  return {
    id: 'rls',
    title: '1. Row-level security: visitor with RLS vs owner with an explicit WHERE organization_id',
    rows,
    notes: [
      `${options.iterations} queries per variant, interleaved; organizations picked by size (big tenants more often); prepared statements on both sides.`,
      'Both sides return the same rows: the owner query spells out what the policies add (organization, deleted_at is null).',
    ],
  };
}
