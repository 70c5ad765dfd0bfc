// `npm start` as a newcomer runs it: no DATABASE_URL, so an embedded PostgreSQL in a fresh
// folder, migrations, API and worker; it answers GraphQL, serves GraphiQL outside production,
// loads and prints the demo data, runs the job worker in a process of its own (restarted if it
// dies), and Ctrl-C (SIGINT) stops everything — worker and database included — and exits 0.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, expect, test } from '@jest/globals';
import { childrenOf } from '../src/bench/proc.ts';
import { ROOT } from '../src/paths.ts';
import { freePort } from './support/provision.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-start-'));
fs.chmodSync(tmp, 0o755);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The job worker processes `npm start` (pid `parent`) runs. */
function workerProcesses(parent: number): number[] {
  return childrenOf(parent).filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('cli.ts\0worker');
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

    child.kill('SIGINT');
    const code = await exited;
    expect({ code, output: code === 0 ? '' : output }).toEqual({ code: 0, output: '' });
    expect(fs.existsSync(path.join(tmp, 'pg', 'postmaster.pid'))).toBe(false); // the database stopped too
    expect(fs.existsSync(`/proc/${replacement[0]}`)).toBe(false); // and the worker process
  } finally {
    child.kill('SIGKILL');
  }
}, 90_000);
