// 3. The GraphQL API under load: the real server (`src/cli.ts api`, NODE_ENV=production, a
// process of its own on the bench database) answering real access tokens of the benchmark
// organizations' owners, loaded by autocannon from another process (bench/load.ts) —
// beside the floor: the same data fetched with `pg` directly, as the owner with the
// organization filter written out, under the same concurrency from the same kind of process.
//
// Operations (rotating over organizations weighted by size, and over sampled ids):
//   task by id       task(organizationId, rowId)
//   list of 20       tasks(first: 20, orderBy: DUE_ON_ASC) with pageInfo
//   nested           currentOrganization → projects(10) → tasks(10) → assigneeMember → user
//   lifecycle step   updateTask(patch: { status }) between todo and in_progress: a transition of
//                    the task's status machine that writes on every call (audit trigger and
//                    outbox job included), valid from every generated status and repeatable
//                    under load — unlike markInvoiceViewed, which only writes the first time
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createTokenService } from '../src/auth/tokens.ts';
import { freePort } from '../src/free-port.ts';
import { ROOT } from '../src/paths.ts';
import { scriptNodeFlags } from '../src/supervisor.ts';
import { random, type BenchContext } from './context.ts';
import { runLoad, type HttpRequestSpec, type LoadResult } from './load.ts';
import { postgresFootprint, postmasterPid, processMemory, sampler, type PostgresFootprint } from './proc.ts';
import { sampleIds } from './rls.ts';
import type { Row, Section } from './stats.ts';

export { freePort };

export interface ApiOperation {
  name: string;
  /** p95 target in ms (undefined: only the error rate is held to a target). */
  p95Target: number | undefined;
  requests: HttpRequestSpec[];
  /** The floor: one prepared statement as the owner, and each request's parameters (none: no floor). */
  floor?: { text: string; values: unknown[][] };
}

const TASK_BY_ID = `query TaskById($org: UUID!, $id: UUID!) {
  task(organizationId: $org, rowId: $id) { rowId title status priority dueOn projectId assigneeMemberId }
}`;
const TASK_BY_ID_SQL = `select id, title, status, priority, due_on, project_id, assignee_member_id
  from app_public.tasks where organization_id = $1 and id = $2 and deleted_at is null`;

const TASK_LIST = `query TaskList {
  tasks(first: 20, orderBy: DUE_ON_ASC) { nodes { rowId title status priority dueOn } pageInfo { hasNextPage endCursor } }
}`;
// 21 rows: the API reads one more than the page to answer hasNextPage.
const TASK_LIST_SQL = `select id, title, status, priority, due_on from app_public.tasks
  where organization_id = $1 and deleted_at is null order by due_on, id limit 21`;

const NESTED = `query Nested {
  currentOrganization {
    name
    projects(first: 10, orderBy: DUE_ON_ASC) {
      nodes { rowId name tasks(first: 10, orderBy: POSITION_ASC) { nodes { rowId title status assigneeMember { role user { name } } } } }
    }
  }
}`;
const NESTED_SQL = `select o.name, p.id as project_id, p.name as project, t.id, t.title, t.status, m.role, u.name as assignee
  from app_public.organizations o
  cross join lateral (
    select p.organization_id, p.id, p.name from app_public.projects p
    where p.organization_id = o.id and p.deleted_at is null order by p.due_on, p.id limit 10) p
  left join lateral (
    select t.organization_id, t.id, t.title, t.status, t.assignee_member_id from app_public.tasks t
    where t.organization_id = p.organization_id and t.project_id = p.id and t.deleted_at is null order by t.position, t.id limit 10) t on true
  left join app_public.organization_members m on m.organization_id = t.organization_id and m.id = t.assignee_member_id
  left join app_public.users u on u.id = m.user_id
  where o.id = $1`;

const TASK_STEP = `mutation TaskStep($org: UUID!, $id: UUID!, $status: TaskStatus!) {
  updateTask(input: { organizationId: $org, rowId: $id, patch: { status: $status } }) { task { rowId status updatedAt } }
}`;
const TASK_STEP_SQL = `update app_public.tasks set status = $3::app_public.task_status
  where organization_id = $1 and id = $2 and deleted_at is null returning id, status, updated_at`;

/** Access tokens for every benchmark organization's owner, signed as the API signs them. */
export async function ownerTokens(ctx: BenchContext, ttlSeconds: number): Promise<Map<string, string>> {
  const tokens = createTokenService(ctx.db.jwtSecret, ttlSeconds);
  const out = new Map<string, string>();
  for (const org of ctx.dataset.orgs) {
    const { token } = await tokens.sign({ userId: org.ownerUserId, sessionId: org.sessionId, organizationId: org.id });
    out.set(org.id, token);
  }
  return out;
}

/** The four operations, each with its requests and the floor's parameters, in the same order. */
export async function apiOperations(ctx: BenchContext, ttlSeconds: number): Promise<ApiOperation[]> {
  const tokens = await ownerTokens(ctx, ttlSeconds);
  const ids = await sampleIds(ctx.db.ownerUrl, ctx.dataset.orgs.map((o) => o.id));
  const count = ctx.options.smoke ? 60 : 4000;
  const build = (seed: number, make: (org: string, task: string, i: number) => { variables: Record<string, unknown>; values: unknown[] }, query: string, emptyMarker: string) => {
    const rnd = random(seed);
    const requests: HttpRequestSpec[] = [];
    const values: unknown[][] = [];
    for (let i = 0; i < count; i++) {
      const org = ctx.pickOrg(i);
      const tasks = ids.get(org.id)!.tasks;
      const task = tasks[Math.floor(rnd() * tasks.length)]!;
      const m = make(org.id, task, i);
      requests.push({ headers: { authorization: `Bearer ${tokens.get(org.id)!}` }, body: JSON.stringify({ query, variables: m.variables }), emptyMarker });
      values.push(m.values);
    }
    return { requests, values };
  };
  const byId = build(11, (org, id) => ({ variables: { org, id }, values: [org, id] }), TASK_BY_ID, '"task":null');
  const list = build(12, (org) => ({ variables: {}, values: [org] }), TASK_LIST, '"nodes":[]');
  const nested = build(13, (org) => ({ variables: {}, values: [org] }), NESTED, '"currentOrganization":null');
  const step = build(
    14,
    (org, id, i) => {
      const status = i % 2 === 0 ? 'in_progress' : 'todo';
      return { variables: { org, id, status }, values: [org, id, status] };
    },
    TASK_STEP,
    '"updateTask":null',
  );
  return [
    { name: 'task by id', p95Target: 8, requests: byId.requests, floor: { text: TASK_BY_ID_SQL, values: byId.values } },
    { name: 'list of 20 tasks', p95Target: 25, requests: list.requests, floor: { text: TASK_LIST_SQL, values: list.values } },
    { name: 'nested: organization → 10 projects → 10 tasks each → assignee', p95Target: 50, requests: nested.requests, floor: { text: NESTED_SQL, values: nested.values } },
    { name: 'lifecycle step: updateTask status', p95Target: undefined, requests: step.requests, floor: { text: TASK_STEP_SQL, values: step.values } },
  ];
}

export interface ApiServer {
  url: string;
  pid: number;
  /** The server's output so far (last 8 KB). */
  output(): string;
  /** SIGTERM, then waits for the exit; resolves with how it ended. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null; seconds: number }>;
}


/**
 * Node flags for the server from BENCH_SERVER_NODE_OPTIONS (e.g. "--max-old-space-size=192
 * --max-semi-space-size=16"), to measure heap settings; none by default (Node's defaults).
 */
export function serverNodeOptions(): string[] {
  // By default the flags of `npm start` (src/supervisor.ts): the bench runs what production runs.
  const flags = process.env.BENCH_SERVER_NODE_OPTIONS?.split(/\s+/) ?? scriptNodeFlags('start');
  return flags.filter((f) => f.startsWith('--'));
}

const passwordOf = (url: string) => decodeURIComponent(new URL(url).password);

/** The database settings of an Atrium process (API or worker) on the bench database. */
export function databaseEnv(db: BenchContext['db']): NodeJS.ProcessEnv {
  return {
    DATABASE_URL: db.ownerUrl,
    DATABASE_OWNER: db.roles.owner,
    DATABASE_AUTHENTICATOR: db.roles.authenticator,
    DATABASE_VISITOR: db.roles.visitor,
    DATABASE_WORKER: db.roles.worker,
    DATABASE_PRODUCER: db.roles.producer,
    DATABASE_AUTHENTICATOR_PASSWORD: passwordOf(db.authenticatorUrl),
    DATABASE_WORKER_PASSWORD: passwordOf(db.workerUrl),
    JWT_SECRET: db.jwtSecret,
  };
}

/** The environment of the API as production runs it, on the bench database (port `port`). */
export function productionApiEnv(ctx: BenchContext, port: number): NodeJS.ProcessEnv {
  const { db } = ctx;
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    // Production: what a deployment runs (Grafast without its development checks, no GraphiQL).
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    LOG_FORMAT: 'json',
    ...databaseEnv(db),
    WORKER_INLINE: 'false',
    SEED_DEMO_DATA: 'false',
    // Required in production; no email is sent here (no worker in this process).
    SMTP_URL: 'smtp://127.0.0.1:2525',
    APP_URL: `http://127.0.0.1:${port}`,
    // The rate limits count every request, as in production, in this process's memory; with
    // budgets the load cannot reach (a few owners send thousands of requests a second).
    RATE_LIMIT_USER: '1000000000/1m',
    RATE_LIMIT_ORGANIZATION: '1000000000/1m',
    RATE_LIMIT_ANONYMOUS: '1000000000/1m',
  };
}

/**
 * Starts the API as production runs it, in a process of its own (the one measured): `src/cli.ts api`
 * (what `npm start` runs in its API child process, here with no supervisor around it) on the bench
 * database as its owner, with the bench's roles, passwords and JWT secret, no worker, no demo
 * data, and `env` on top; resolves once /readyz answers 200.
 */
export async function startApiServer(ctx: BenchContext, env: NodeJS.ProcessEnv = {}): Promise<ApiServer> {
  const port = await freePort();
  return startServerProcess(ctx, 'the API server', [path.join(ROOT, 'src/cli.ts'), 'api'], { ...productionApiEnv(ctx, port), ...env }, port);
}

/**
 * Runs `args` with the API's Node flags (serverNodeOptions) in a process of its own that listens
 * on `port` of 127.0.0.1 (told so through `env`), so every server the bench compares gets the same
 * tuning; resolves once its GET /readyz answers 200.
 */
export async function startServerProcess(ctx: BenchContext, what: string, args: string[], env: NodeJS.ProcessEnv, port: number): Promise<ApiServer> {
  const child: ChildProcess = spawn(process.execPath, [...serverNodeOptions(), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (d: Buffer) => {
    output = (output + d.toString()).slice(-8192);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let gone: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((e) => (gone = e));
  const url = `http://127.0.0.1:${port}`;
  const started = Date.now();
  const deadline = started + 120_000;
  for (;;) {
    if (gone) throw new Error(`${what} exited during start (${gone.signal ?? gone.code}):\n${output}`);
    const status = await fetch(`${url}/readyz`).then((r) => r.status).catch(() => 0);
    if (status === 200) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${what} was not ready after 120 s (last /readyz: ${status}):\n${output}`);
    }
    await sleep(200);
  }
  ctx.log.info({ what, seconds: (Date.now() - started) / 1000, memory: processMemory(child.pid!) }, 'server ready');
  return {
    url,
    pid: child.pid!,
    output: () => output,
    async stop() {
      const started = Date.now();
      if (!gone) child.kill('SIGTERM');
      const timeout = sleep(40_000, undefined, { ref: false }).then(() => undefined);
      const result = await Promise.race([exited, timeout]);
      if (!result) {
        child.kill('SIGKILL');
        return { ...(await exited), seconds: (Date.now() - started) / 1000 };
      }
      return { ...result, seconds: (Date.now() - started) / 1000 };
    },
  };
}

/** Load timings: warm-up before each measured window. */
export function loadTiming(ctx: BenchContext): { warmupSeconds: number; durationSeconds: number; minAnswers?: number } {
  const { options } = ctx;
  return options.smoke
    ? { warmupSeconds: 0.3, durationSeconds: Math.min(options.durationSeconds, 1), minAnswers: 5 }
    : { warmupSeconds: Math.min(5, Math.max(1, options.durationSeconds / 10)), durationSeconds: options.durationSeconds };
}

/** How long the tokens must live: every load of the run, the soak included, with room to spare. */
export function tokenTtl(ctx: BenchContext): number {
  const { warmupSeconds, durationSeconds } = loadTiming(ctx);
  return Math.max(ctx.config.auth.accessTokenTtlSeconds, Math.ceil(8 * (warmupSeconds + durationSeconds) + ctx.options.soakSeconds + 1800));
}

/** What memory the API server and PostgreSQL used during the API load runs. */
export interface LoadMemory {
  /** The server's resident set once ready, before any load. */
  serverIdleMB: number;
  /** Its peak (VmHWM) after the load runs. */
  serverPeakMB: number;
  /** PostgreSQL before the load, and the sample with the largest PSS (or RSS) during it. */
  postgresIdle: PostgresFootprint | undefined;
  postgresPeak: PostgresFootprint | undefined;
  /** Why PostgreSQL could not be measured, if so. */
  postgresMissing?: string;
}

export interface OperationResult {
  op: ApiOperation;
  api: LoadResult;
  floor: LoadResult | undefined;
}

const loadMemoryOf = new WeakMap<BenchContext, LoadMemory>();

/** The memory recorded by the API section of this run, if it ran. */
export function recordedLoadMemory(ctx: BenchContext): LoadMemory | undefined {
  return loadMemoryOf.get(ctx);
}

/** The embedded server's postmaster (undefined, with the reason, on BENCH_DATABASE_URL). */
export function postgresPid(ctx: BenchContext): { pid?: number; missing?: string } {
  if (!ctx.db.embedded) return { missing: 'not measured: the server is BENCH_DATABASE_URL, not the embedded one (its processes may be elsewhere)' };
  const pid = postmasterPid(ctx.db.embedded.dir);
  return pid ? { pid } : { missing: `not measured: no postmaster.pid in ${ctx.db.embedded.dir}` };
}

/**
 * Runs every operation against `server` from the load generator (and, with `floor`, the same
 * data through pg right after it), sampling PostgreSQL's footprint meanwhile.
 */
export async function runApiLoads(ctx: BenchContext, server: ApiServer, ops: ApiOperation[], floor: boolean): Promise<{ results: OperationResult[]; memory: LoadMemory }> {
  const timing = loadTiming(ctx);
  const connections = ctx.options.connections;
  const pgPid = postgresPid(ctx);
  const postgresIdle = pgPid.pid ? postgresFootprint(pgPid.pid) : undefined;
  const serverIdleMB = processMemory(server.pid)?.rssMB ?? NaN;
  const pgSampler = sampler(ctx.options.smoke ? 250 : 1000, () => (pgPid.pid ? postgresFootprint(pgPid.pid) : undefined));
  const results: OperationResult[] = [];
  try {
    // One answer to each operation first, whatever it takes: its document parsed, planned and
    // cached before any window opens (a smoke run's second-long window on a busy machine could
    // otherwise end before the first plan is made).
    for (const op of ops) {
      const first = op.requests[0];
      if (first) await fetch(`${server.url}/graphql`, { method: 'POST', headers: first.headers, body: first.body }).then((r) => r.arrayBuffer());
    }
    for (const op of ops) {
      const api = await runLoad({ kind: 'http', url: `${server.url}/graphql`, connections, ...timing, requests: op.requests });
      const base = floor && op.floor ? await runLoad({ kind: 'pg', connectionString: ctx.db.ownerUrl, connections, ...timing, text: op.floor.text, values: op.floor.values }) : undefined;
      results.push({ op, api, floor: base });
      ctx.log.info({ op: op.name, api: api.requestsPerSecond, floor: base?.requestsPerSecond, serverMB: processMemory(server.pid) }, 'API operation measured');
    }
  } finally {
    pgSampler.stop();
  }
  const serverPeakMB = processMemory(server.pid)?.peakMB ?? NaN;
  const key = (f: PostgresFootprint) => f.pssMB ?? f.rssMB;
  const postgresPeak = pgSampler.samples.map((s) => s.value).reduce<PostgresFootprint | undefined>((a, b) => (a === undefined || key(b) > key(a) ? b : a), undefined);
  return { results, memory: { serverIdleMB, serverPeakMB, postgresIdle, postgresPeak, postgresMissing: pgPid.missing } };
}

/** Removes what the mutations queued (no worker runs here): the outbox jobs of their audit events, and the tasks named in `also`. */
export async function clearOutboxJobs(ctx: BenchContext, also: string[] = []): Promise<void> {
  const client = new pg.Client({ connectionString: ctx.db.ownerUrl });
  await client.connect();
  try {
    await client.query(`delete from graphile_worker._private_jobs j using graphile_worker._private_tasks t where t.id = j.task_id and t.identifier = any($1)`, [['dispatch_activity', ...also]]);
  } finally {
    await client.end();
  }
}

const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '-');

export async function apiSection(ctx: BenchContext): Promise<Section> {
  const { options } = ctx;
  const ops = await apiOperations(ctx, tokenTtl(ctx));
  const server = await startApiServer(ctx);
  const notes: string[] = [];
  const rows: Row[] = [];
  let loads: Awaited<ReturnType<typeof runApiLoads>>;
  try {
    loads = await runApiLoads(ctx, server, ops, true);
  } finally {
    const stopped = await server.stop();
    const clean = stopped.code === 0;
    notes.push(clean ? `The server stopped cleanly on SIGTERM in ${stopped.seconds.toFixed(1)} s.` : `The server did not stop cleanly on SIGTERM (${stopped.signal ?? `exit ${stopped.code}`}):\n${server.output()}`);
    await clearOutboxJobs(ctx).catch(() => undefined);
  }
  loadMemoryOf.set(ctx, loads.memory);
  let errors = 0;
  let answers = 0;
  for (const { op, api, floor } of loads.results) {
    errors += api.errors;
    answers += api.requests;
    const ours = api.latency;
    const baseline = floor!.latency;
    const ratio = { p50: ours.p50 / baseline.p50, p95: ours.p95 / baseline.p95 };
    const fast = op.p95Target === undefined || ours.p95 <= op.p95Target;
    rows.push({
      name: op.name,
      unit: 'ms',
      ours,
      baseline,
      baselineLabel: 'pg, owner, same concurrency',
      ratio,
      target: op.p95Target === undefined ? '0 errors' : `p95 ≤ ${op.p95Target} ms, 0 errors`,
      pass: fast && api.errors === 0,
      note:
        `${api.requestsPerSecond.toFixed(0)} req/s (pg: ${floor!.requestsPerSecond.toFixed(0)}/s), ${api.requests} answers, ${api.errors} errors` +
        (floor!.errors ? `; pg ${floor!.errors} errors` : '') +
        (api.errorSamples.length ? `; e.g. ${api.errorSamples[0]}` : '') +
        (floor!.errorSamples.length ? `; pg e.g. ${floor!.errorSamples[0]}` : ''),
    });
    rows.push({
      name: `${op.name} — throughput`,
      unit: 'ops/s',
      ours: api.requestsPerSecond,
      baseline: floor!.requestsPerSecond,
      baselineLabel: 'pg',
      ratio: { value: api.requestsPerSecond / floor!.requestsPerSecond },
    });
  }
  const missed = loads.results.filter(({ op, api }) => op.p95Target !== undefined && api.latency.p95 > op.p95Target);
  if (missed.length) {
    notes.push(
      `Missed p95 targets (${missed.map((m) => m.op.name).join('; ')}): with ${options.connections} requests always in flight, latency is bound by throughput — mean ≈ connections ÷ req/s (Little's law): ` +
        missed.map(({ op, api }) => `${op.name} ${((options.connections / api.requestsPerSecond) * 1000).toFixed(1)} ms at ${api.requestsPerSecond.toFixed(0)} req/s`).join(', ') +
        '. The floor shows PostgreSQL answers the same data far faster, so the time is in the server process: token verification, GraphQL parsing and planning, and a transaction per request that sets the visitor role and the claims before the query (src/http/auth.ts), all on one Node thread sharing two cores with PostgreSQL and the load generator. ' +
        'What it would take: more server throughput per core (profile the request path: a cheaper per-request transaction set-up, cached operation plans), one server process per core on a larger machine, or holding the target at a lower concurrency; not an index — the floor is fast.',
    );
  }
  rows.push({ name: 'errors, all operations', unit: 'count', ours: errors, target: '0 (error rate 0)', pass: errors === 0, note: `${errors} of ${answers} answers (non-2xx, GraphQL errors, or nothing found)` });
  const timing = loadTiming(ctx);
  notes.unshift(
    `Each operation: ${options.connections} connections (one request in flight each) for ${timing.durationSeconds} s after ${timing.warmupSeconds} s of warm-up, from a separate process (autocannon, bench/load.ts); then the pg floor with ${options.connections} connections in the same kind of process. Latency is the client's: request written → answer read.`,
    `The server: \`node ${serverNodeOptions().join(' ')}${serverNodeOptions().length ? ' ' : ''}src/cli.ts api\` (the API process of \`npm start\`, alone) with NODE_ENV=production (Grafast without development checks, no GraphiQL), WORKER_INLINE=false, its default pool (20) and PAGE_SIZE_MAX, in its own process; tokens are real HS256 access tokens of each organization's owner, verified on every request.`,
    'The floor runs the same reads as the owner with the organization filter written out (no token, no GraphQL, no RLS, no transaction set-up); the lifecycle step runs the same UPDATE (same triggers: status machine, audit, outbox job).',
    `API server memory: ${fmt(loads.memory.serverIdleMB)} MB once ready, peak ${fmt(loads.memory.serverPeakMB)} MB during these runs (section "memory").`,
  );
  return { id: 'api', title: '3. API: GraphQL over HTTP with real tokens under concurrent load vs the same data through pg', rows, notes };
}
