// The migration gate (src/db/migration-lint.ts, .squawk.toml) and the runner's lock_timeout
// (src/db/migrations.ts): every migration from 000028 on and migrations/current.sql pass it; it
// does fail on the statements that lock a large, busy table, so that passing it means something;
// and every migration runs with lock_timeout, those outside a transaction included.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, test } from '@jest/globals';
import pg from 'pg';
import { compileMigration, countStatements, formatViolations, gateTargets, GATE_FROM, lintMigrations, SQUAWK_CONFIG } from '../src/db/migration-lint.ts';
import { MIGRATION_LOCK_TIMEOUT, migrationSettings } from '../src/db/migrations.ts';
import { createLogger } from '../src/log.ts';
import { MIGRATIONS_DIR } from '../src/paths.ts';
import { closePools, testConfig, urlFor } from './support/db.ts';

afterAll(closePools);

const rules = async (sql: string) => (await lintMigrations([await compileMigration('migrations/example.sql', sql)])).map((v) => v.rule);
const timeouts = ["set local statement_timeout = '60s';"];

describe('the migration gate', () => {
  test('every migration from 000028 on, and current.sql, compiled as they run, pass it', async () => {
    const targets = await gateTargets();
    const committed = fs.readdirSync(path.join(MIGRATIONS_DIR, 'committed')).filter((f) => Number(f.slice(0, 6)) >= GATE_FROM);
    expect(targets.filter((t) => t.name.includes('committed')).map((t) => path.basename(t.name))).toEqual(committed.sort());
    // Compiled: includes expanded and role names filled in, as graphile-migrate sends them.
    for (const t of targets) {
      expect(t.sql).not.toMatch(/^--!\s*include/m);
      expect(t.sql).not.toMatch(/:DATABASE_[A-Z]+/);
    }
    expect(formatViolations(await lintMigrations(targets))).toBe('');
  });

  test('fails an index built in place, a constraint validated while it is added, a transaction without statement_timeout', async () => {
    expect(await rules([
      'create index if not exists tasks_title_idx on app_public.tasks (title);',
      'alter table app_public.tasks add constraint tasks_title_length check (length(title) < 500);',
    ].join('\n'))).toEqual(expect.arrayContaining([
      'require-concurrent-index-creation',
      'constraint-missing-not-valid',
      'require-statement-timeout',
    ]));
  });

  test('fails a constraint added NOT VALID and validated in the same transaction (the lock of the first holds through the second)', async () => {
    expect(await rules([
      ...timeouts,
      'alter table app_public.tasks add constraint tasks_title_length check (length(title) < 500) not valid;',
      'alter table app_public.tasks validate constraint tasks_title_length;',
    ].join('\n'))).toContain('constraint-missing-not-valid');
  });

  test('fails CONCURRENTLY inside the migration\'s transaction, and a migration outside a transaction with more than one statement', async () => {
    expect(await rules([...timeouts, 'create index concurrently if not exists tasks_title_idx on app_public.tasks (title);'].join('\n')))
      .toContain('ban-concurrent-index-creation-in-transaction');
    expect(await rules([
      '--! no-transaction',
      "set statement_timeout = '30min';",
      'create index concurrently if not exists tasks_title_idx on app_public.tasks (title);',
    ].join('\n'))).toContain('one-statement-without-transaction');
    // The pattern of docs/MIGRATIONS.md passes: one concurrent build.
    expect(await rules('--! no-transaction\ncreate index concurrently if not exists tasks_title_idx on app_public.tasks (title);')).toEqual([]);
  });

  test('passes the safe forms: a constraint added NOT VALID in one migration and validated in the next, an index built CONCURRENTLY in a migration of its own', async () => {
    expect(await rules([...timeouts, 'alter table app_public.tasks add constraint tasks_title_length check (length(title) < 500) not valid;'].join('\n'))).toEqual([]);
    expect(await rules([...timeouts, 'alter table app_public.tasks validate constraint tasks_title_length;'].join('\n'))).toEqual([]);
    expect(await rules(['--! no-transaction', 'create index concurrently if not exists tasks_title_idx on app_public.tasks (title);'].join('\n'))).toEqual([]);
  });

  test('counts statements past comments, strings and function bodies', () => {
    expect(countStatements(`-- a; comment\ncreate function f() returns text language sql as $$ select 'a;b'; $$;\n/* x; */ select ';' as "a;b"`)).toBe(2);
    expect(countStatements('select 1')).toBe(1);
    expect(countStatements('-- only a comment;\n')).toBe(0);
  });

  test('every rule left out in .squawk.toml says why on the lines above it', () => {
    const text = fs.readFileSync(SQUAWK_CONFIG, 'utf8');
    const lines = (/excluded_rules\s*=\s*\[([\s\S]*?)\]/.exec(text)?.[1] ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
    const excluded = lines.filter((l) => l.startsWith('"'));
    expect(excluded.length).toBeLessThanOrEqual(5);
    for (const rule of excluded) {
      expect({ rule, reason: (lines[lines.indexOf(rule) - 1] ?? '').startsWith('#') }).toEqual({ rule, reason: true });
    }
  });
});

describe('the runner', () => {
  test(`runs every migration with lock_timeout ${MIGRATION_LOCK_TIMEOUT}, keeping the connection's own options`, async () => {
    const url = new URL(urlFor('owner'));
    url.searchParams.set('options', '-c application_name=atrium-migrate-test');
    const settings = migrationSettings({ ownerUrl: url.toString(), roles: testConfig().database.roles }, createLogger('silent'));
    const client = new pg.Client({ connectionString: settings.connectionString });
    await client.connect();
    try {
      const { rows } = await client.query<{ lock_timeout: string; app: string }>(`select current_setting('lock_timeout') as lock_timeout, current_setting('application_name') as app`);
      expect(rows[0]).toEqual({ lock_timeout: MIGRATION_LOCK_TIMEOUT, app: 'atrium-migrate-test' });
    } finally {
      await client.end();
    }
  });
});
