// 7. The GraphQL edge's memory: the figures docs/SECURITY.md ("Memory") sizes the heap with.
//
//   plan      the heap one cached operation plan takes, for documents at the limits
//             (GRAPHQL_MAX_COLLECTIONS connections with GRAPHQL_MAX_FIELDS fields in all): an
//             API in this process, told to keep every plan, answers N distinct such documents;
//             the heap after a full collection, before and after, divided by N
//   answer    the heap one answer of about GRAPHQL_MAX_ROWS rows takes at its peak (projects →
//             tasks, the largest nesting the row limit lets through), sampled every millisecond
//             while it is built and sent; garbage not yet collected included, so an upper bound
//   started   the heap the API takes once started and warm (schema, plugins, pools): this
//             process's heap after a full collection, before the start and after a first answer
//   budget    what the API process's heap must hold at worst: the started API + the plans of
//             GRAPHQL_DOCUMENT_CACHE_SIZE documents + GRAPHQL_MAX_CONCURRENT answers of
//             GRAPHQL_MAX_ROWS rows at their peak, beside the old space `npm start` gives the
//             API (package.json)
//
// The in-process API runs as production does (NODE_ENV=production, the bench's database).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadConfig } from '../src/config.ts';
import { startAtrium } from '../src/index.ts';
import { scriptNodeFlags } from '../src/supervisor.ts';
import { freePort, ownerTokens, productionApiEnv, tokenTtl } from './api.ts';
import type { BenchContext } from './context.ts';
import type { Row, Section } from './stats.ts';

const MB = 1024 * 1024;

function collector(): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  return () => {
    gc();
    gc();
  };
}

export async function edgeSection(ctx: BenchContext): Promise<Section> {
  const rows: Row[] = [];
  const notes: string[] = [];
  const collect = collector();
  const documents = ctx.options.smoke ? 4 : 40;
  const port = await freePort();
  // Every plan stays cached (the cache is sized above the documents sent); no rate limit.
  // Introspection on, to find the fields of documents at the limits. The section measures heap,
  // not planning time: the planning limit is lifted, so that a machine busy with other work
  // (a CI run) does not refuse a document at the limits.
  const env = {
    ...productionApiEnv(ctx, port),
    GRAPHQL_DOCUMENT_CACHE_SIZE: String(documents + 10),
    GRAPHQL_PLANNING_TIMEOUT_MS: '600000',
    RATE_LIMITS: 'false',
    GRAPHQL_INTROSPECTION: 'true',
  };
  const config = loadConfig(env);
  collect();
  const beforeStart = process.memoryUsage().heapUsed;
  const atrium = await startAtrium(config, ctx.log.child({ component: 'edge-api' }), { api: true, worker: false, migrate: false });
  try {
    const org = ctx.dataset.orgs[0]!;
    const token = (await ownerTokens(ctx, tokenTtl(ctx))).get(org.id)!;
    const post = async (query: string): Promise<{ bytes: number; body: { data?: Record<string, any>; errors?: unknown[] } }> => {
      const response = await fetch(`${atrium.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query }) });
      const text = await response.text();
      return { bytes: Buffer.byteLength(text), body: JSON.parse(text) };
    };
    // The limits and bounds production runs with (this API keeps more plans, to measure them).
    const { graphql } = loadConfig(productionApiEnv(ctx, port));

    // Documents at the limits: root connections, each with as many scalar fields as fit.
    const schema = await post('{ __schema { queryType { fields { name args { name type { kind } } type { name } } } } }');
    if (schema.body.errors) throw new Error(`introspection: ${JSON.stringify(schema.body.errors)}`);
    const connections = (schema.body.data!.__schema.queryType.fields as Array<{ name: string; args: Array<{ name: string; type: { kind: string } }>; type: { name: string | null } }>)
      .filter((f) => f.args.some((a) => a.name === 'first') && f.type.name?.endsWith('Connection') && !f.args.some((a) => a.type.kind === 'NON_NULL')); // (not those that need arguments: recordHistory, activityBetween)
    const fieldsPer = Math.floor(graphql.maxFields / graphql.maxCollections) - 2; // the connection and `nodes` count too
    const chosen: Array<{ name: string; fields: string[] }> = [];
    for (const connection of connections) {
      if (chosen.length === graphql.maxCollections) break;
      const type = await post(`{ __type(name: "${connection.type.name!.replace(/Connection$/, '')}") { fields { name args { name } type { kind ofType { kind } } } } }`);
      const fields = ((type.body.data?.__type?.fields ?? []) as Array<{ name: string; args: unknown[]; type: { kind: string; ofType: { kind: string } | null } }>)
        .filter((f) => f.args.length === 0 && ['SCALAR', 'ENUM'].includes(f.type.kind === 'NON_NULL' ? f.type.ofType!.kind : f.type.kind))
        .map((f) => f.name);
      if (fields.length >= fieldsPer) chosen.push({ name: connection.name, fields: fields.slice(0, fieldsPer) });
    }
    const widest = (i: number) => `query Widest${i} { ${chosen.map((c, j) => `${c.name}(first: ${1 + ((i + j) % 7)}) { nodes { ${c.fields.join(' ')} } }`).join(' ')} }`;
    const fieldCount = chosen.reduce((n, c) => n + 2 + c.fields.length, 0);

    await post(widest(-1)); // the code paths of planning, warm
    collect();
    const before = process.memoryUsage().heapUsed;
    const startedMB = (before - beforeStart) / MB;
    rows.push({ name: 'the API once started and warm (schema, plugins, pools), heap', unit: 'MB', ours: startedMB, note: 'this process\'s heap after a full collection, before the start and after the first answers' });
    for (let i = 0; i < documents; i++) {
      const answer = await post(widest(i));
      if (answer.body.errors) throw new Error(`document ${i}: ${JSON.stringify(answer.body.errors).slice(0, 300)}`);
    }
    collect();
    const perPlanMB = (process.memoryUsage().heapUsed - before) / MB / documents;
    rows.push({
      name: `operation plan of a document at the limits (${chosen.length} connections, ${fieldCount} fields), heap per cached plan`,
      unit: 'MB',
      ours: perPlanMB,
      note: `${documents} distinct documents, heap after a full collection before and after, divided by ${documents}`,
    });
    const plansMB = perPlanMB * graphql.documentCacheSize;
    rows.push({ name: `cached plans at worst: GRAPHQL_DOCUMENT_CACHE_SIZE (${graphql.documentCacheSize}) documents at the limits`, unit: 'MB', ours: plansMB });

    // The largest answer the row limit lets through: P projects × T tasks with P + P·T ≤ max.
    const tasksPer = config.pageSizeMax;
    const projects = Math.max(1, Math.floor(graphql.maxRows / (tasksPer + 1)));
    const big = `{ projects(first: ${projects}) { nodes { rowId name status startsOn dueOn tasks(first: ${tasksPer}) { nodes { rowId title status priority dueOn position createdAt updatedAt } } } } }`;
    await post(big); // planned and cached
    collect();
    const base = process.memoryUsage().heapUsed;
    let peak = base;
    const sampler = setInterval(() => {
      const used = process.memoryUsage().heapUsed;
      if (used > peak) peak = used;
    }, 1);
    const answer = await post(big);
    clearInterval(sampler);
    if (answer.body.errors) throw new Error(`the large answer: ${JSON.stringify(answer.body.errors).slice(0, 300)}`);
    const returned = (answer.body.data!.projects.nodes as Array<{ tasks: { nodes: unknown[] } }>).reduce((n, p) => n + 1 + p.tasks.nodes.length, 0);
    const answerMB = (peak - base) / MB;
    const perRowKB = returned > 0 ? ((peak - base) / returned) / 1024 : NaN;
    rows.push({
      name: `one answer of ${returned} rows (${projects} projects × up to ${tasksPer} tasks; GRAPHQL_MAX_ROWS ${graphql.maxRows}), heap at its peak`,
      unit: 'MB',
      ours: answerMB,
      note: `${(answer.bytes / MB).toFixed(2)} MB of JSON; ${perRowKB.toFixed(1)} KB of heap per row at the peak (garbage not yet collected included)`,
    });
    const answersAtLimitMB = returned > 0 ? ((peak - base) / returned) * graphql.maxRows * graphql.maxConcurrent / MB : NaN;

    // The budget, beside npm start's old space.
    const oldSpace = Number(/--max-old-space-size=(\d+)/.exec(scriptNodeFlags('start').join(' '))?.[1] ?? NaN);
    const worst = startedMB + plansMB + answersAtLimitMB;
    rows.push({
      name: `API heap at worst: started + cached plans + GRAPHQL_MAX_CONCURRENT (${graphql.maxConcurrent}) answers of GRAPHQL_MAX_ROWS rows at their peak`,
      unit: 'MB',
      ours: worst,
      baseline: oldSpace,
      baselineLabel: "npm start's --max-old-space-size (the API process)",
      target: ctx.options.smoke ? undefined : `≤ ${oldSpace} MB`,
      pass: ctx.options.smoke ? undefined : worst <= oldSpace,
      note: `${startedMB.toFixed(1)} + ${plansMB.toFixed(1)} + ${answersAtLimitMB.toFixed(1)} MB; docs/SECURITY.md, "Memory"`,
    });
    notes.push(`An API in this process (NODE_ENV=production, the bench database, every plan kept); organization ${org.id} with ${org.tasks} tasks.`);
  } finally {
    await atrium.stop();
  }
  return { id: 'edge', title: 'The GraphQL edge: memory of plans and answers', rows, notes };
}
