// Migrations apply from nothing: the developer commands themselves (`npm run migrate -- reset
// --erase`, then `watch --once` for current.sql) rebuild a scratch database on the test server
// from the committed migrations, including the job queue schema installed by the .gmrc hook.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, test } from '@jest/globals';
import pg from 'pg';
import { withCredentials, withDatabase } from '../src/db/bootstrap.ts';
import { runMigrations } from '../src/db/migrations.ts';
import { MIGRATIONS_DIR, ROOT } from '../src/paths.ts';
import { closePools, pool, testConfig, unique, urlFor } from './support/db.ts';
import { testLogger } from './support/log.ts';

const run = promisify(execFile);
const scratch = unique('atrium_mig').replace('-', '_');

afterAll(async () => {
  await pool('superuser').query(`drop database if exists ${scratch} with (force)`);
  await pool('superuser').query(`drop database if exists ${scratch}_shadow with (force)`);
  await closePools();
});

test('reset + every committed migration + current.sql build a working schema from an empty database', async () => {
  const env = { ...process.env, DATABASE_URL: withDatabase(process.env.DATABASE_URL!, scratch), LOG_LEVEL: 'warn' };
  const cli = (...args: string[]) => run(process.execPath, [path.join(ROOT, 'src/cli.ts'), 'migrate', ...args], { cwd: ROOT, env, maxBuffer: 20 * 1024 * 1024 });

  const reset = await cli('reset', '--erase');
  const committed = fs.readdirSync(path.join(MIGRATIONS_DIR, 'committed')).filter((f) => f.endsWith('.sql'));
  expect(reset.stdout + reset.stderr).toMatch(committed.length > 0 ? `${committed.length} committed migrations executed` : 'no committed migrations');
  await cli('watch', '--once');

  const owner = withCredentials(env.DATABASE_URL, process.env.DATABASE_OWNER!, process.env.DATABASE_OWNER_PASSWORD);
  const client = new pg.Client({ connectionString: owner });
  await client.connect();
  try {
    const { rows: migrations } = await client.query('select filename from graphile_migrate.migrations order by filename');
    expect(migrations.map((m) => m.filename)).toEqual(committed.map((f) => `${f.slice(0, 6)}.sql`).sort()); // stored without the message slug
    const { rows: tables } = await client.query(`select count(*)::int as n from pg_tables where schemaname = 'app_public'`);
    expect(tables[0].n).toBeGreaterThanOrEqual(6);
    const { rows: queue } = await client.query(`select nspowner::regrole::text as owner from pg_namespace where nspname = 'graphile_worker'`);
    expect(queue).toEqual([{ owner: process.env.DATABASE_WORKER }]);
    const { rows: jobsTable } = await client.query(`select to_regclass('graphile_worker._private_jobs') is not null as ok`);
    expect(jobsTable).toEqual([{ ok: true }]);
  } finally {
    await client.end();
  }
}, 120_000);

test('processes starting together take turns migrating instead of failing on the lock', async () => {
  const target = { ownerUrl: urlFor('owner'), roles: testConfig().database.roles };
  const starts = await Promise.allSettled(Array.from({ length: 4 }, () => runMigrations(target, testLogger('test', 'error'), { current: true })));
  expect(starts.map((s) => (s.status === 'rejected' ? String(s.reason) : s.status))).toEqual(Array(4).fill('fulfilled'));
}, 120_000);
