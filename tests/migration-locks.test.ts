// Applying the latest committed migration to a live database does not hold up its writers: on a
// database migrated up to the one before it, with the bench's dataset (src/db/dataset.ts) and a
// stream of writes through the API, the latest migration is applied as `npm start` applies it
// (runMigrations, lock_timeout 5s: docs/MIGRATIONS.md), and no write that overlaps it waits longer
// than that lock_timeout. A migration that locks a table the writers use for longer would show
// here as a write of more than 5 s, or as the migration failing on its lock_timeout.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, test } from '@jest/globals';
import pg from 'pg';
import { createTokenService } from '../src/auth/tokens.ts';
import { generateDataset } from '../src/db/dataset.ts';
import { openDatabase, withDatabase } from '../src/db/bootstrap.ts';
import { MIGRATION_LOCK_TIMEOUT, runMigrations } from '../src/db/migrations.ts';
import { startAtrium, type Atrium } from '../src/index.ts';
import { MIGRATIONS_DIR } from '../src/paths.ts';
import { gql } from './support/app.ts';
import { closePools, pool, testConfig, unique } from './support/db.ts';
import { testLogger } from './support/log.ts';

// npm test runs it on a small dataset; MIGRATION_LOCKS_DATASET=bench on the bench's default size.
const DATASET = process.env.MIGRATION_LOCKS_DATASET === 'bench' ? { orgs: 100, rows: 2000 } : { orgs: 3, rows: 300 };
const scratch = unique('atrium_locks').replace('-', '_');
const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-migrations-'));
let atrium: Atrium | undefined;

afterAll(async () => {
  await atrium?.stop();
  fs.rmSync(folder, { recursive: true, force: true });
  await pool('superuser').query(`drop database if exists ${scratch} with (force)`);
  await closePools();
});

test('the latest migration, applied under a stream of API writes, holds no write up longer than lock_timeout', async () => {
  const log = testLogger('migration-locks', 'error');
  const committed = fs.readdirSync(path.join(MIGRATIONS_DIR, 'committed')).filter((f) => f.endsWith('.sql')).sort();
  const latest = committed.at(-1)!;
  // Every migration but the latest.
  fs.mkdirSync(path.join(folder, 'committed'));
  for (const file of committed.slice(0, -1)) fs.copyFileSync(path.join(MIGRATIONS_DIR, 'committed', file), path.join(folder, 'committed', file));
  fs.writeFileSync(path.join(folder, 'current.sql'), '');

  const config = testConfig({ DATABASE_URL: withDatabase(process.env.DATABASE_URL!, scratch), RATE_LIMITS: 'false' });
  const db = await openDatabase(config, log);
  await runMigrations(db, log, { current: false, migrationsFolder: folder });
  const dataset = await generateDataset(withDatabase(process.env.DATABASE_URL!, scratch), DATASET);

  atrium = await startAtrium(config, log, { api: true, worker: false, migrate: false });
  const tokens = createTokenService(db.jwtSecret, 3600);
  const owner = new pg.Client({ connectionString: db.ownerUrl });
  await owner.connect();
  const writers = await Promise.all(
    dataset.orgs.map(async (org) => ({
      org: org.id,
      token: (await tokens.sign({ userId: org.ownerUserId, sessionId: org.sessionId, organizationId: org.id })).token,
      tasks: (await owner.query<{ id: string }>('select id from app_public.tasks where organization_id = $1 limit 50', [org.id])).rows.map((r) => r.id),
    })),
  );
  await owner.end();

  const writes: Array<{ start: number; end: number }> = [];
  let stop = false;
  const write = async (w: number) => {
    const { org, token, tasks } = writers[w % writers.length]!;
    for (let i = 0; !stop; i++) {
      const start = Date.now();
      const body =
        i % 2 === 0
          ? { query: 'mutation ($o: UUID!, $id: UUID!, $s: TaskStatus!) { updateTask(input: { organizationId: $o, rowId: $id, patch: { status: $s } }) { task { rowId } } }', variables: { o: org, id: tasks[i % tasks.length], s: i % 4 === 0 ? 'in_progress' : 'todo' } }
          : { query: 'mutation ($n: String!) { createClientCompany(input: { clientCompany: { name: $n } }) { clientCompany { rowId } } }', variables: { n: `Lock test ${w}-${i}` } };
      expect((await gql(atrium!.url!, body.query, body.variables, token)).errors).toBeUndefined();
      writes.push({ start, end: Date.now() });
    }
  };
  const streams = Array.from({ length: 3 }, (_, w) => write(w));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const migrationStart = Date.now();
  await runMigrations(db, log, { current: false });
  const migrationEnd = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 500));
  stop = true;
  await Promise.all(streams);

  const check = new pg.Client({ connectionString: db.ownerUrl });
  await check.connect();
  const { rows } = await check.query<{ filename: string }>('select filename from graphile_migrate.migrations order by filename desc limit 1');
  await check.end();
  expect(rows[0]!.filename).toBe(`${latest.slice(0, 6)}.sql`);
  const during = writes.filter((w) => w.end >= migrationStart && w.start <= migrationEnd);
  expect(during.length).toBeGreaterThan(0);
  const longest = Math.max(...during.map((w) => w.end - w.start));
  const lockTimeoutMs = Number.parseInt(MIGRATION_LOCK_TIMEOUT, 10) * 1000;
  expect({ latest, longestWriteMs: longest <= lockTimeoutMs ? 'within lock_timeout' : longest }).toEqual({ latest, longestWriteMs: 'within lock_timeout' });
  await db.stop();
}, DATASET.orgs > 3 ? 1_800_000 : 300_000);
