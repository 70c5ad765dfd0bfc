// The embedded PostgreSQL behind `npm start` without DATABASE_URL: data survives a restart, a
// server left behind by a killed run is taken over, and one in use by a live run is refused.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { freePort } from '../src/free-port.ts';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-embedded-'));
  fs.chmodSync(tmp, 0o755);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const query = async (url: string, sql: string) => {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
};

test('a restart keeps the data; a server orphaned by a killed run is stopped and restarted', async () => {
  const dir = path.join(tmp, 'keep');
  const port = await freePort();
  const first = await startEmbeddedPostgres({ dir, port, superuserPassword: 'pw', fast: true });
  expect(Number.parseInt(first.version, 10)).toBeGreaterThanOrEqual(15);
  await query(first.superuserUrl(), 'create table kept (v text); insert into kept values ($$still here$$)');
  await first.stop();

  const second = await startEmbeddedPostgres({ dir, port, superuserPassword: 'pw', fast: true });
  expect(await query(second.superuserUrl(), 'select v from kept')).toEqual([{ v: 'still here' }]);
  // Leave it running and "forget" it, as a killed process would; the next start takes over.
  const third = await startEmbeddedPostgres({ dir, port, superuserPassword: 'pw', fast: true });
  expect(await query(third.superuserUrl(), 'select v from kept')).toEqual([{ v: 'still here' }]);
  await third.stop();
}, 60_000);

test('a data folder in use by another live process is refused with a clear error', async () => {
  const dir = path.join(tmp, 'busy');
  const server = await startEmbeddedPostgres({ dir, port: await freePort(), superuserPassword: 'pw', fast: true });
  const other = spawn('sleep', ['30']);
  try {
    fs.writeFileSync(path.join(dir, 'atrium.owner.pid'), `${other.pid}\n`);
    await expect(startEmbeddedPostgres({ dir, port: await freePort(), superuserPassword: 'pw', fast: true })).rejects.toThrow(/in use by another Atrium process/);
  } finally {
    other.kill();
    await server.stop();
  }
}, 60_000);

test('as root, a data folder the postgres user cannot reach is moved to the fallback location (or refused)', async () => {
  const hidden = path.join(tmp, 'private');
  fs.mkdirSync(hidden, { mode: 0o700 });
  fs.chmodSync(hidden, 0o700);
  const dir = path.join(hidden, 'pg');
  if (process.getuid?.() !== 0) return; // only root runs PostgreSQL as another OS user
  await expect(startEmbeddedPostgres({ dir, port: await freePort(), superuserPassword: 'pw', fast: true })).rejects.toThrow(/cannot enter .*private/);
  const fallbackDir = path.join(tmp, 'fallback', 'pg');
  const server = await startEmbeddedPostgres({ dir, fallbackDir, port: await freePort(), superuserPassword: 'pw', fast: true });
  try {
    expect(server.dir).toBe(fallbackDir);
    expect(fs.existsSync(path.join(fallbackDir, 'PG_VERSION'))).toBe(true);
  } finally {
    await server.stop();
  }
}, 60_000);
