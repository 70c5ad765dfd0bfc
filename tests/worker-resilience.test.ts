// The worker survives what production throws at it, on a PostgreSQL of its own (this file
// restarts it, so it does not share the run's database):
//   * a worker process killed mid-job (SIGKILL): another worker runs the job again, well within
//     2 minutes (heartbeats + recovery of stale locks, sql/functions/worker_health.sql);
//   * SIGTERM: the running job finishes, no new job is taken, the process exits 0;
//   * PostgreSQL restarted under load: the worker reconnects and carries on; no job is lost and
//     none is done twice.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT } from '../src/paths.ts';
import { startWorker, type WorkerHandle } from '../src/worker/index.ts';
import { asVisitor, closePools, createOrganization, pool, sessionOf, signUp, urlFor, type User } from './support/db.ts';
import { provisionTestDatabase, type Provisioned } from './support/provision.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';
import { testLogger } from './support/log.ts';

const HEARTBEAT_MS = 300;
const STALE_MS = 1500;

let provisioned: Provisioned;
let savedEnv: NodeJS.ProcessEnv;
let receiver: Receiver;
let owner: User;
let orgId: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  provisioned = await provisionTestDatabase({ embedded: true });
  savedEnv = { ...process.env };
  Object.assign(process.env, provisioned.env);
  receiver = await startReceiver();
  owner = await signUp('resilience');
  orgId = await createOrganization(owner, 'resilience');
}, 120_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await receiver?.close();
  await closePools();
  await provisioned?.teardown();
  if (savedEnv) process.env = savedEnv;
}, 60_000);

interface ChildWorker {
  process: ChildProcess;
  lines: Array<Record<string, any>>;
  exited: Promise<number | null>;
}

/** `npm run worker` as its own process, logging JSON lines we keep. */
async function spawnWorker(): Promise<ChildWorker> {
  const child = spawn(process.execPath, [path.join(ROOT, 'src/cli.ts'), 'worker'], {
    cwd: ROOT,
    env: {
      ...process.env,
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'info',
      WORKER_CONCURRENCY: '2',
      WORKER_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
      WORKER_STALE_AFTER_MS: String(STALE_MS),
      WEBHOOK_TIMEOUT_MS: '60000',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines: Array<Record<string, any>> = [];
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop()!;
    for (const part of parts) {
      try {
        lines.push(JSON.parse(part));
      } catch {
        lines.push({ msg: part });
      }
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => lines.push({ stderr: chunk.toString() }));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  while (!lines.some((l) => l.msg === 'job worker running')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`worker did not start:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`);
    await sleep(50);
  }
  return { process: child, lines, exited };
}

async function endpointFor(pathName: string): Promise<string> {
  return asVisitor(sessionOf(owner, orgId), async (c) => (await c.query('select endpoint_id from app_public.create_webhook_endpoint($1, $2)', [receiver.url(pathName), ['*']])).rows[0].endpoint_id, { commit: true });
}

async function ping(endpointId: string): Promise<string> {
  return asVisitor(sessionOf(owner, orgId), async (c) => (await c.query('select id from app_public.send_test_webhook($1)', [endpointId])).rows[0].id, { commit: true });
}

const delivery = async (id: string) => (await pool('owner').query('select status, attempts from app_public.webhook_deliveries where id = $1', [id])).rows[0];
const jobOf = async (deliveryId: string) => (await pool('worker').query('select attempts, locked_by, locked_at from graphile_worker._private_jobs where key = $1', [`deliver_webhook:${deliveryId}`])).rows[0];

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('a worker killed mid-job', () => {
  test('SIGKILL: the job runs again on another worker within seconds (bound: 2 minutes)', async () => {
    receiver.answer('/killed', 'hang');
    const endpoint = await endpointFor('/killed');
    const doomed = await spawnWorker();
    const id = await ping(endpoint);
    await receiver.waitFor('/killed', 1, 30_000);
    const held = await jobOf(id);
    expect(held.locked_by).toMatch(/^pool-/);

    doomed.process.kill('SIGKILL');
    await doomed.exited;
    const killedAt = Date.now();
    receiver.answer('/killed', 200);
    const rescuer = await startWorker({
      connectionString: urlFor('worker'),
      concurrency: 2,
      log: testLogger('test-worker'),
      webhooks: { timeoutMs: 5000, allowPrivateNetworks: true },
      heartbeatIntervalMs: HEARTBEAT_MS,
      staleAfterMs: STALE_MS,
      crontab: false,
    });
    try {
      await receiver.waitFor('/killed', 2, 120_000);
      const recoveredMs = Date.now() - killedAt;
      expect(recoveredMs).toBeLessThan(120_000);
      await waitFor('delivery recorded', async () => (await delivery(id))?.status === 'succeeded');
      // The killed attempt was never recorded; the job counted it.
      expect(await delivery(id)).toEqual({ status: 'succeeded', attempts: 1 });
      const heartbeats = await pool('worker').query('select worker_id from app_private.worker_heartbeats where worker_id = $1', [held.locked_by]);
      expect(heartbeats.rows).toEqual([]); // the dead worker was swept
    } finally {
      await rescuer.stop();
    }
  }, 180_000);
});

describe('graceful shutdown', () => {
  test('SIGTERM: the running job finishes, no new job is taken, exit code 0', async () => {
    receiver.answer('/slow', { status: 200, delayMs: 1500 });
    const endpoint = await endpointFor('/slow');
    const worker = await spawnWorker();
    const running = await ping(endpoint);
    await receiver.waitFor('/slow', 1, 30_000);
    worker.process.kill('SIGTERM');
    const termAt = Date.now();
    const queuedAfter = await ping(endpoint);
    const code = await worker.exited;
    expect({ code, lines: code === 0 ? [] : worker.lines }).toEqual({ code: 0, lines: [] });
    // The job it was running finished and was recorded...
    expect(await delivery(running)).toEqual({ status: 'succeeded', attempts: 1 });
    // ...and the one queued after SIGTERM was left for the next worker.
    expect(await delivery(queuedAfter)).toEqual({ status: 'pending', attempts: 0 });
    expect(await jobOf(queuedAfter)).toMatchObject({ attempts: 0, locked_by: null });
    // No job started after the worker took the signal (its own log line marks the moment).
    const stopping = worker.lines.find((l) => l.msg === 'shutting down: finishing requests and jobs in progress');
    expect(stopping).toBeDefined();
    const started = worker.lines.filter((l) => l.msg === 'job started');
    expect(started.filter((l) => l.time > stopping!.time)).toEqual([]);
    expect(stopping!.time).toBeGreaterThanOrEqual(termAt - 1000);
    // Structured job logs: start and success with id, task, organization and duration.
    const success = worker.lines.find((l) => l.msg === 'job succeeded' && l.task === 'deliver_webhook');
    expect(success).toMatchObject({ task: 'deliver_webhook', organizationId: orgId, jobId: expect.any(String), durationMs: expect.any(Number) });
    // Its heartbeat row went with it.
    const rows = await pool('worker').query('select 1 from app_private.worker_heartbeats');
    expect(rows.rows).toEqual([]);
  }, 120_000);

  test('SIGTERM: jobs taken into the local queue but not started are handed back at once, attempt included', async () => {
    receiver.answer('/held', { status: 200, delayMs: 1500 });
    const endpoint = await endpointFor('/held');
    // Queued before the worker starts: its first fetch takes them all (local queue of
    // 10 × concurrency); two run, the rest wait in the worker's memory.
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await ping(endpoint));
    const worker = await spawnWorker();
    await receiver.waitFor('/held', 1, 30_000);
    worker.process.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    const outcomes = await Promise.all(ids.map(async (id) => ({ delivery: await delivery(id), job: await jobOf(id) })));
    const done = outcomes.filter((o) => o.delivery.status === 'succeeded');
    const held = outcomes.filter((o) => o.delivery.status !== 'succeeded');
    expect(done.length).toBeGreaterThanOrEqual(1);
    expect(done.length).toBeLessThanOrEqual(2); // concurrency 2: nothing new was started after SIGTERM
    expect(held.length).toBeGreaterThanOrEqual(4);
    for (const o of held) {
      expect(o.delivery).toEqual({ status: 'pending', attempts: 0 });
      expect(o.job).toMatchObject({ attempts: 0, locked_by: null, locked_at: null });
    }
    // graphile-worker's own complaint about releasing a local queue that holds jobs is not an error
    // of ours: nothing at error level.
    expect(worker.lines.filter((l) => (l.level ?? 0) >= 50)).toEqual([]);
  }, 120_000);
});

describe('PostgreSQL restarted under load', () => {
  test('the worker reconnects and carries on: every committed change dispatched exactly once', async () => {
    const worker = await startWorker({
      connectionString: urlFor('worker'),
      concurrency: 4,
      log: testLogger('test-worker'),
      webhooks: { timeoutMs: 5000, allowPrivateNetworks: true },
      heartbeatIntervalMs: HEARTBEAT_MS,
      staleAfterMs: 10_000,
      crontab: false,
    });
    // Only the changes themselves: no webhook endpoint listens any more.
    await asVisitor(sessionOf(owner, orgId), (c) => c.query('update app_public.webhook_endpoints set enabled = false'), { commit: true });
    const transactions: string[] = [];
    const change = async (n: number) => {
      for (let attempt = 0; ; attempt++) {
        try {
          const txid = await asVisitor(
            sessionOf(owner, orgId),
            async (c) => {
              await c.query('insert into app_public.client_companies (name) values ($1)', [`Restart ${n}`]);
              return (await c.query('select pg_current_xact_id()::text as txid')).rows[0].txid as string;
            },
            { commit: true },
          );
          transactions.push(txid);
          return;
        } catch (error) {
          if (attempt > 100) throw error;
          await sleep(100); // the server is restarting; a real client retries too
        }
      }
    };
    try {
      for (let n = 0; n < 100; n++) await change(n);
      const restart = provisioned.restartServer!();
      for (let n = 100; n < 200; n++) await change(n); // during and after the restart
      await restart;
      for (let n = 200; n < 250; n++) await change(n);

      const done = await waitFor(
        'every transaction dispatched',
        async () => {
          const { rows } = await pool('owner').query<{ n: number }>(
            'select count(*)::int as n from app_private.activity_dispatches where organization_id = $1 and transaction_id = any ($2::bigint[])',
            [orgId, transactions],
          );
          return rows[0].n === transactions.length && rows[0].n;
        },
        90_000,
      );
      expect(done).toBe(250);
      expect(new Set(transactions).size).toBe(250);
      // Nothing left behind in the queue for them, and the worker is still running.
      const keys = transactions.map((txid) => `dispatch_activity:${orgId}:${txid}`);
      const left = await waitFor('their jobs completed', async () => {
        const { rows } = await pool('worker').query<{ n: number }>('select count(*)::int as n from graphile_worker._private_jobs where key = any ($1)', [keys]);
        return rows[0].n === 0 && rows;
      });
      expect(left[0].n).toBe(0);
      expect(worker.health().state).toBe('running');
    } finally {
      await worker.stop();
    }
  }, 180_000);
});
