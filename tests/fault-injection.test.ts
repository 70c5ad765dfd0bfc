// Faults from outside, on a PostgreSQL of its own (this file stops it): the app runs as
// `npm start` runs it (`src/cli.ts start` against the server's DATABASE_URL: the API and the job
// worker each in a supervised child process), a few writers create client companies through
// GraphQL and record which were acknowledged, and each new client company is a webhook delivery
// (outbox → dispatch_activity → deliver_webhook) to a local receiver. PostgreSQL is then stopped
// (fast shutdown, then in a second case immediate) for about 2 s and started again.
//
// Rules: no process exits; while the database is away the API answers SERVICE_UNAVAILABLE with
// HTTP 503 and Retry-After (never INTERNAL); every acknowledged write is in the database
// afterwards; every delivery reaches the receiver, a few at most twice (docs/DATA_FLOWS.md,
// "Exactly-once effects": a delivery whose answer came while the database went away is sent
// again, with the same Atrium-Webhook-Id); the API and the worker serve again by themselves.
// The recovery times are printed (one line per case) and quoted in docs/DATA_FLOWS.md,
// "Surviving a PostgreSQL restart".
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { childrenOf } from '../bench/proc.ts';
import { ROOT } from '../src/paths.ts';
import { tokenFor } from './support/app.ts';
import { asVisitor, closePools, createOrganization, pool, sessionOf, signUp, type User } from './support/db.ts';
import { freePort } from '../src/free-port.ts';
import { provisionTestDatabase, type Provisioned } from './support/provision.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';

const WRITERS = 4;
/** Readers without a pause: most of the time some request holds a connection between its statements. */
const READERS = 4;
const WORKER_CONCURRENCY = 4;
const DOWN_MS = 2000;
const RECEIVER_DELAY_MS = 300;
/** A backlog of jobs queued just before the database goes away (the `echo` task: does nothing). */
const ECHO_JOBS = 3000;
/** How long before the database went away a job may have finished without its success recorded (a loaded machine). */
const RECORDING_WINDOW_MS = 2000;

let provisioned: Provisioned;
let savedEnv: NodeJS.ProcessEnv;
let receiver: Receiver;
let owner: User;
let logDir: string;

beforeAll(async () => {
  // Durable (fsync, synchronous commits): an acknowledged write must survive an immediate stop.
  provisioned = await provisionTestDatabase({ embedded: true, durable: true });
  savedEnv = { ...process.env };
  Object.assign(process.env, provisioned.env);
  receiver = await startReceiver();
  owner = await signUp('faults');
  logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-faults-'));
}, 120_000);

afterAll(async () => {
  await receiver?.close();
  await closePools();
  await provisioned?.teardown();
  if (savedEnv) process.env = savedEnv;
}, 60_000);

interface App {
  process: ChildProcess;
  url: string;
  lines: Array<Record<string, any>>;
  /** The pids of its API and worker processes now. */
  parts(): { api: number[]; worker: number[] };
  stop(): Promise<number | null>;
}

/** `src/cli.ts start` against the test's server, logging JSON lines to a file and a list we read. */
async function startApp(label: string): Promise<App> {
  const port = await freePort();
  const logFile = path.join(logDir, `${label}.log`);
  const child = spawn(process.execPath, [path.join(ROOT, 'src/cli.ts'), 'start'], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: String(port),
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'info',
      SEED_DEMO_DATA: 'false',
      WORKER_CONCURRENCY: String(WORKER_CONCURRENCY),
      WORKER_HEARTBEAT_INTERVAL_MS: '300',
      WORKER_STALE_AFTER_MS: '10000',
      WEBHOOK_TIMEOUT_MS: '5000',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Array<Record<string, any>> = [];
  const out = fs.createWriteStream(logFile);
  let buffer = '';
  const read = (chunk: Buffer) => {
    out.write(chunk);
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop()!;
    for (const part of parts) {
      if (part.trim() === '') continue;
      try {
        lines.push(JSON.parse(part));
      } catch {
        lines.push({ msg: part });
      }
    }
  };
  child.stdout!.on('data', read);
  child.stderr!.on('data', read);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ready = await fetch(`${url}/readyz`).then((r) => r.status === 200).catch(() => false);
    if (ready) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the app did not start (log: ${logFile})`);
    await sleep(100);
  }
  const partsOf = (command: string) =>
    childrenOf(child.pid!).filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`cli.ts\0${command}`);
      } catch {
        return false;
      }
    });
  return {
    process: child,
    url,
    lines,
    parts: () => ({ api: partsOf('api'), worker: partsOf('worker') }),
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const code = await exited;
      out.end();
      return code;
    },
  };
}

interface Outcome {
  name: string;
  at: number;
  acknowledged: boolean;
  status: number;
  code?: string;
  retryAfter?: string | null;
  /** The request itself failed (no HTTP answer: the API is down). */
  noAnswer?: string;
}

const CREATE = 'mutation($name: String!) { createClientCompany(input: { clientCompany: { name: $name } }) { clientCompany { rowId name } } }';

/** `count` writers creating client companies until `until` resolves; every answer recorded. */
function startWriters(url: string, token: string, label: string, until: Promise<void>): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let done = false;
  void until.then(() => (done = true));
  const writer = async (w: number) => {
    for (let n = 0; !done; n++) {
      const name = `${label} w${w} n${n}`;
      const outcome: Outcome = { name, at: 0, acknowledged: false, status: 0 };
      try {
        const response = await fetch(`${url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ query: CREATE, variables: { name } }),
        });
        const body = (await response.json()) as { data?: { createClientCompany?: { clientCompany?: { name: string } } | null }; errors?: Array<{ extensions?: { code?: string } }> };
        outcome.status = response.status;
        outcome.acknowledged = response.status === 200 && body.data?.createClientCompany?.clientCompany?.name === name;
        outcome.code = body.errors?.[0]?.extensions?.code;
        outcome.retryAfter = response.headers.get('retry-after');
      } catch (error) {
        outcome.noAnswer = (error as Error).message;
      }
      outcome.at = Date.now();
      outcomes.push(outcome);
      await sleep(250); // about 15 writes a second in all: deliveries the worker keeps up with
    }
  };
  const reader = async () => {
    while (!done) {
      const outcome: Outcome = { name: '', at: 0, acknowledged: false, status: 0 };
      try {
        const response = await fetch(`${url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ query: '{ clientCompanies(first: 5, orderBy: NAME_DESC) { totalCount nodes { name } } }' }),
        });
        const body = (await response.json()) as { data?: { clientCompanies?: { totalCount: number } | null }; errors?: Array<{ extensions?: { code?: string } }> };
        outcome.status = response.status;
        outcome.code = body.errors?.[0]?.extensions?.code;
        outcome.retryAfter = response.headers.get('retry-after');
        if (response.status === 200 && typeof body.data?.clientCompanies?.totalCount === 'number') continue; // answered
      } catch (error) {
        outcome.noAnswer = (error as Error).message;
      }
      outcome.at = Date.now();
      outcomes.push(outcome);
      await sleep(100);
    }
  };
  return Promise.all([...Array.from({ length: WRITERS }, (_, w) => writer(w)), ...Array.from({ length: READERS }, () => reader())]).then(() => outcomes);
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe.each([
  ['fast', 'fast'],
  ['immediate', 'immediate'],
] as const)('PostgreSQL stopped (%s shutdown) for 2 s under API writes and webhook jobs', (_name, mode) => {
  test('no process exits, the API answers 503 SERVICE_UNAVAILABLE with Retry-After meanwhile, no acknowledged write is lost, every delivery is made (duplicates within the documented window), both recover by themselves', async () => {
    const orgId = await createOrganization(owner, `faults-${mode}`);
    const hookPath = `/hooks/${mode}`;
    await asVisitor(sessionOf(owner, orgId), (c) => c.query('select app_public.create_webhook_endpoint($1, $2)', [receiver.url(hookPath), ['client_company.created']]), { commit: true });
    // The receiver takes its time: the worker's slots are busy sending, and the jobs it has taken
    // wait in its local queue.
    receiver.answer(hookPath, { status: 200, delayMs: RECEIVER_DELAY_MS });
    const token = await tokenFor(owner, orgId);
    const app = await startApp(mode);
    let finish: () => void = () => undefined;
    try {
      const partsBefore = app.parts();
      expect({ api: partsBefore.api.length, worker: partsBefore.worker.length }).toEqual({ api: 1, worker: 1 });
      const writing = startWriters(app.url, token, `Faults ${mode}`, new Promise<void>((resolve) => (finish = resolve)));

      // Under load for a moment, and a backlog of jobs (the worker's local queue full of jobs it
      // has taken and not started), then the database goes away for DOWN_MS.
      await waitFor('deliveries under way', async () => receiver.requests(hookPath).length >= 20, 60_000);
      const echoIds = (
        await pool('owner').query<{ id: string }>(
          `select id::text as id from app_private.enqueue_jobs('echo', $1, array(select jsonb_build_object('n', n) from generate_series(1, $2) n)) id`,
          [orgId, ECHO_JOBS],
        )
      ).rows.map((r) => r.id);
      expect(new Set(echoIds).size).toBe(ECHO_JOBS);
      const echoSet = new Set(echoIds);
      const echoRuns = () => app.lines.filter((l) => l.msg === 'job succeeded' && l.task === 'echo' && echoSet.has(String(l.jobId)));
      await waitFor('the backlog under way', async () => echoRuns().length >= 50, 60_000);
      const stoppedAt = Date.now();
      await provisioned.stopServer!(mode);
      const downAt = Date.now();
      await sleep(DOWN_MS);
      await provisioned.startServer!();
      const backAt = Date.now();

      // Recovery: the first acknowledged write, and the first delivery, after the database is back.
      let apiBackAt: number | undefined;
      let jobsBackAt: number | undefined;
      const probeDeadline = Date.now() + 60_000;
      while ((apiBackAt === undefined || jobsBackAt === undefined) && Date.now() < probeDeadline) {
        if (jobsBackAt === undefined) jobsBackAt = app.lines.find((l) => l.msg === 'job started' && l.time >= backAt)?.time;
        if (apiBackAt === undefined) {
          const answer = await fetch(`${app.url}/graphql`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
            body: JSON.stringify({ query: '{ clientCompanies(first: 1) { totalCount } }' }),
          })
            .then((r) => r.json() as Promise<{ data?: { clientCompanies?: { totalCount: number } } }>)
            .catch(() => undefined);
          if (typeof answer?.data?.clientCompanies?.totalCount === 'number') apiBackAt = Date.now();
        }
        await sleep(20);
      }
      expect({ apiBack: apiBackAt !== undefined, jobsBack: jobsBackAt !== undefined }).toEqual({ apiBack: true, jobsBack: true });
      await sleep(1500); // writing goes on for a while after recovery
      finish();
      const outcomes = await writing;

      // No process exited: the same API and worker processes, no restart, nothing fatal.
      expect(app.process.exitCode).toBeNull();
      expect(app.parts()).toEqual(partsBefore);
      const badLines = app.lines.filter((l) => l.level >= 60 || /process exited; restarting it|Unhandled|unhandled/.test(String(l.msg ?? l.stderr ?? '')));
      expect(badLines).toEqual([]);

      // While it could not reach the database, the API answered 503 SERVICE_UNAVAILABLE with
      // Retry-After; it always answered, and never with INTERNAL.
      const failed = outcomes.filter((o) => !o.acknowledged);
      expect(outcomes.filter((o) => o.noAnswer)).toEqual([]);
      expect(failed.filter((o) => o.code !== 'SERVICE_UNAVAILABLE' || o.status !== 503 || !(Number(o.retryAfter) > 0))).toEqual([]);
      const duringOutage = failed.filter((o) => o.at >= downAt && o.at <= backAt);
      expect(duringOutage.length).toBeGreaterThan(0);

      // Every acknowledged write is there.
      const { rows } = await pool('owner').query<{ name: string }>('select name from app_public.client_companies where organization_id = $1', [orgId]);
      const stored = new Set(rows.map((r) => r.name));
      const acknowledged = outcomes.filter((o) => o.acknowledged);
      expect(acknowledged.filter((o) => !stored.has(o.name)).map((o) => o.name)).toEqual([]);

      // Every job of the backlog ran, each once, or again only if the worker held it (taken or
      // running) when the database went away: at most its local queue plus its running jobs.
      await waitFor('the backlog done', async () => {
        const { rows: left } = await pool('owner').query<{ n: number }>('select count(*)::int as n from graphile_worker._private_jobs where id = any ($1::bigint[])', [echoIds]);
        return left[0].n === 0;
      }, 90_000);
      await sleep(200); // the last log lines
      const runs = echoRuns();
      const ran = new Map<string, number[]>();
      for (const run of runs) ran.set(String(run.jobId), [...(ran.get(String(run.jobId)) ?? []), run.time as number]);
      expect(echoIds.filter((id) => !ran.has(id))).toEqual([]);
      const jobDuplicates = runs.length - ran.size;
      // A job runs again only when it had finished just before the database went away (from
      // RECORDING_WINDOW_MS before the stop), or while it was away (a job already in the worker's
      // local queue runs without it: echo needs no database), before it was back, and its
      // success could not be recorded; it runs again after the database went down, and only
      // once more.
      const outsideTheWindow = [...ran]
        .filter(([, times]) => times.length > 1 && (times.length > 2 || times[0]! < stoppedAt - RECORDING_WINDOW_MS || times[0]! > backAt || times[1]! < downAt))
        .map(([id, times]) => ({ id, runs: times.map((t) => t - stoppedAt), downAt: downAt - stoppedAt, backAt: backAt - stoppedAt }));
      expect(outsideTheWindow).toEqual([]);

      // Every stored client company's delivery reached the receiver; a delivery sent twice carries
      // the same id, and only those in flight when the database went away may be (at most one
      // per worker slot).
      const deliveriesNow = async () =>
        (
          await pool('owner').query<{ id: string; status: string; attempts: number; job: Record<string, unknown> | null }>(
            `select d.id, d.status, d.attempts,
                    (select to_jsonb(j) - 'payload' from (select attempts, locked_by, locked_at, run_at, last_error from graphile_worker._private_jobs where key = 'deliver_webhook:' || d.id) j) as job
             from app_public.webhook_deliveries d join app_public.webhook_endpoints e on e.id = d.endpoint_id where e.organization_id = $1`,
            [orgId],
          )
        ).rows;
      const deliveries = await waitFor('every delivery made', async () => {
        const d = await deliveriesNow();
        return d.length === stored.size && d.every((x) => x.status === 'succeeded') && d;
      }, 90_000).catch(async (error: Error) => {
        const d = await deliveriesNow();
        const jobs = await pool('owner').query('select task_identifier, attempts, locked_by, run_at, last_error from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id');
        throw new Error(`${error.message}: ${stored.size} client companies, ${d.length} deliveries; not succeeded: ${JSON.stringify(d.filter((x) => x.status !== 'succeeded')).slice(0, 3000)}; jobs: ${JSON.stringify(jobs.rows).slice(0, 3000)} (log: ${logDir})`);
      });
      const received = receiver.requests(hookPath).map((r) => String(r.headers['atrium-webhook-id']));
      const distinct = new Set(received);
      expect(deliveries.filter((d) => !distinct.has(d.id)).map((d) => d.id)).toEqual([]);
      const duplicates = received.length - distinct.size;
      expect(duplicates).toBeLessThanOrEqual(WORKER_CONCURRENCY);

      // The quotable figures (docs/DATA_FLOWS.md, "Surviving a PostgreSQL restart").
      const figures = {
        stop: mode,
        downMs: backAt - stoppedAt,
        apiRecoveryMs: apiBackAt! - backAt,
        jobRecoveryMs: jobsBackAt! - backAt,
        writes: outcomes.filter((o) => o.name !== '').length,
        acknowledged: acknowledged.length,
        writes503: failed.filter((o) => o.name !== '').length,
        reads503: failed.filter((o) => o.name === '').length,
        stored: stored.size,
        deliveries: deliveries.length,
        deliveryDuplicates: duplicates,
        jobs: ECHO_JOBS,
        jobDuplicates,
      };
      process.stdout.write(`fault injection: ${JSON.stringify(figures)}\n`);
      const stopMs = downAt - stoppedAt;
      expect(stopMs).toBeLessThan(30_000);

      const code = await app.stop();
      expect(code).toBe(0);
    } finally {
      finish();
      if (app.process.exitCode === null) {
        const killer = setTimeout(() => app.process.kill('SIGKILL'), 30_000);
        await app.stop();
        clearTimeout(killer);
      }
    }
  }, 240_000);
});
