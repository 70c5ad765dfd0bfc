// `npm start` as a newcomer runs it: no DATABASE_URL, so an embedded PostgreSQL in a fresh
// folder, migrations, API and worker; it answers GraphQL, serves GraphiQL outside production,
// loads and prints the demo data, runs the API and the job worker each in a process of its own
// (restarted if it dies: the rest goes on), and Ctrl-C (SIGINT) stops everything — worker and
// database included — and exits 0. SIGTERM at any moment of start-up (while the embedded
// PostgreSQL starts, during migrations, …) stops what has started, the database included, and
// exits 0.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, test } from '@jest/globals';
import { childrenOf } from '../bench/proc.ts';
import { ROOT } from '../src/paths.ts';
import { freePort } from '../src/free-port.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-start-'));
fs.chmodSync(tmp, 0o755);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The child processes of `npm start` (pid `parent`) running `command` (worker, api). */
function partProcesses(parent: number, command: string): number[] {
  return childrenOf(parent).filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`cli.ts\0${command}`);
    } catch {
      return false;
    }
  });
}
const workerProcesses = (parent: number) => partProcesses(parent, 'worker');

/** Processes running PostgreSQL on the data folder `dir`. */
function postgresOf(dir: string): number[] {
  return fs.readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).map(Number).filter((pid) => {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return argv.some((arg) => arg.endsWith('/postgres') || arg === 'postgres') && argv.includes(dir);
    } catch {
      return false;
    }
  });
}

test('start on an empty machine, answer GraphQL, stop cleanly on SIGINT', async () => {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'development', PORT: String(port), EMBEDDED_PG_DIR: path.join(tmp, 'pg'), EMBEDDED_PG_PORT: String(await freePort()), LOG_LEVEL: 'warn', LOG_FORMAT: 'json' };
  const child = spawn(process.execPath, [path.join(ROOT, 'src/cli.ts'), 'start'], { cwd: tmp, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const deadline = Date.now() + 60_000;
    let answer: unknown;
    while (Date.now() < deadline && answer === undefined) {
      answer = await fetch(`http://127.0.0.1:${port}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{__typename}"}' })
        .then((r) => r.json())
        .catch(() => undefined);
      if (answer === undefined) await sleep(200);
    }
    expect(answer).toEqual({ data: { __typename: 'Query' } });
    while (Date.now() < deadline && !output.includes('Press Ctrl-C')) await sleep(100);
    expect(output).toContain(`GraphQL:  http://127.0.0.1:${port}/graphql`);
    // The empty embedded database got the demo data, and its sign-ins work.
    expect(output).toContain('Demo sign-ins (password for all: atrium-demo-password)');
    expect(output).toMatch(/owner@northwind\.example +owner/);
    const login = await fetch(`http://127.0.0.1:${port}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'mutation { login(input: { email: "viewer@atlas.example", password: "atrium-demo-password" }) { accessToken } }' }),
    }).then((r) => r.json() as Promise<{ data: { login: { accessToken: string } } }>);
    expect(login.data.login.accessToken).toEqual(expect.any(String));
    const graphiql = await fetch(`http://127.0.0.1:${port}/graphiql`);
    expect(graphiql.status).toBe(200);
    expect(graphiql.headers.get('content-type')).toContain('text/html');
    const ready = await (await fetch(`http://127.0.0.1:${port}/readyz`)).json();
    expect(ready).toMatchObject({ status: 'ready', checks: { database: 'ok', migrations: 'current', worker: 'running' } });
    expect(fs.existsSync(path.join(tmp, 'pg', 'postmaster.pid'))).toBe(true);

    // The job worker runs in a process of its own (an API flood cannot take jobs down with it);
    // killed, it is started again, and the API answers throughout.
    const workerPid = Number(/the worker runs in its own process \(pid (\d+)\)/.exec(output)?.[1]);
    expect(workerProcesses(child.pid!)).toEqual([workerPid]);
    process.kill(workerPid, 'SIGKILL');
    let replacement: number[] = [];
    while (Date.now() < deadline && (replacement = workerProcesses(child.pid!).filter((p) => p !== workerPid)).length === 0) await sleep(100);
    expect(replacement).toHaveLength(1);
    expect(output).toContain('the job worker process exited; restarting it');
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);

    // So does the API process: killed, it is started again on the same port and answers again;
    // the worker and the database went on.
    const apiPid = Number(/API: +runs in its own process \(pid (\d+)\)/.exec(output)?.[1]);
    expect(partProcesses(child.pid!, 'api')).toEqual([apiPid]);
    process.kill(apiPid, 'SIGKILL');
    let apiReplacement: number[] = [];
    while (Date.now() < deadline && (apiReplacement = partProcesses(child.pid!, 'api').filter((p) => p !== apiPid)).length === 0) await sleep(100);
    expect(apiReplacement).toHaveLength(1);
    let again: unknown;
    while (Date.now() < deadline && again === undefined) {
      again = await fetch(`http://127.0.0.1:${port}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{__typename}"}' })
        .then((r) => r.json())
        .catch(() => undefined);
      if (again === undefined) await sleep(200);
    }
    expect(again).toEqual({ data: { __typename: 'Query' } });
    expect(output).toContain('the API process exited; restarting it');
    expect(workerProcesses(child.pid!)).toEqual(replacement);
    // Its /readyz reports the worker process's health again (passed on by the parent every 2 s).
    let readyAgain: unknown;
    while (Date.now() < deadline && (readyAgain = await (await fetch(`http://127.0.0.1:${port}/readyz`)).json()) && (readyAgain as { status: string }).status !== 'ready') await sleep(200);
    expect(readyAgain).toMatchObject({ status: 'ready', checks: { database: 'ok', worker: 'running' } });

    child.kill('SIGINT');
    const code = await exited;
    expect({ code, output: code === 0 ? '' : output }).toEqual({ code: 0, output: '' });
    expect(fs.existsSync(path.join(tmp, 'pg', 'postmaster.pid'))).toBe(false); // the database stopped too
    expect(fs.existsSync(`/proc/${replacement[0]}`)).toBe(false); // and the worker process
    expect(fs.existsSync(`/proc/${apiReplacement[0]}`)).toBe(false); // and the API process
  } finally {
    child.kill('SIGKILL');
  }
}, 120_000);

// The moments of start-up, each named by the log line that begins it.
const MOMENTS = [
  ['while initdb prepares the empty data folder', 'starting the embedded PostgreSQL'],
  ['while the embedded PostgreSQL starts', 'initialised embedded PostgreSQL'],
  ['during migrations', "Running migration '000002"],
  ['while the demo data loads', 'empty embedded database: loading the demo data'],
  ['while the API and worker processes start', 'API process started'],
] as const;

describe('SIGTERM during start-up stops what has started and exits 0', () => {
  test.each(MOMENTS)('%s', async (_moment, line) => {
    const dir = fs.mkdtempSync(path.join(tmp, 'signal-'));
    fs.chmodSync(dir, 0o755); // the embedded server runs as the OS user "postgres"
    const pgDir = path.join(dir, 'pg');
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'development', PORT: '0', EMBEDDED_PG_DIR: pgDir, EMBEDDED_PG_PORT: String(await freePort()), LOG_LEVEL: 'info', LOG_FORMAT: 'json' };
    const child = spawn(process.execPath, [path.join(ROOT, 'src/cli.ts'), 'start'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let signalled = false;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const onData = (d: Buffer) => {
      output += d;
      if (!signalled && output.includes(line)) {
        signalled = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    try {
      const { code, signal } = await exited;
      expect({ signalled, code, signal, output: code === 0 ? '' : output.slice(-3000) }).toEqual({ signalled: true, code: 0, signal: null, output: '' });
      expect(output).toMatch(/stopped during start-up|"msg":"stopped"/);
      // No PostgreSQL is left running on that data folder, and no process of the app (each
      // writes its pid on its log lines).
      const pids = new Set([...output.matchAll(/"pid":(\d+)/g)].map((m) => Number(m[1])));
      const leftovers = { postgres: postgresOf(pgDir), processes: [...pids].filter((pid) => fs.existsSync(`/proc/${pid}`)) };
      expect(leftovers).toEqual({ postgres: [], processes: [] });
    } finally {
      child.kill('SIGKILL');
    }
  }, 90_000);
});
