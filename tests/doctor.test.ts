// `npm run doctor` (src/db/doctor.ts): on the run's database no check fails and the command
// exits 0 (so a schema change that breaks isolation, composite keys or FK indexes, or leaves
// duplicate indexes, fails CI); a database that is not migrated, an unindexed foreign key and a
// duplicate index each fail it; the figures docs/CURRENT_STATE_OVERVIEW.md quotes are the command's output.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, test } from '@jest/globals';
import pg from 'pg';
import { withDatabase } from '../src/db/bootstrap.ts';
import { formatChecks, runDoctor, segmentsBetween, type DoctorReport } from '../src/db/doctor.ts';
import { ROOT } from '../src/paths.ts';
import { runCli } from './support/cli.ts';
import { closePools, roleName, unique, urlFor } from './support/db.ts';
import { oneTenant } from './support/fixtures.ts';

afterAll(closePools);

const doctorCli = (args: string[], env: Record<string, string> = {}) => runCli(['doctor', ...args], { ...process.env, LOG_LEVEL: 'error', ...env });

const byId = (report: DoctorReport) => Object.fromEntries(report.checks.map((c) => [c.id, c]));

describe('npm run doctor', () => {
  test('on the run\'s database: no check fails, exit 0; --json carries every check; the human table too', async () => {
    const json = await doctorCli(['--json']);
    expect(json.stderr).toBe('');
    const report = JSON.parse(json.stdout) as DoctorReport;
    expect(report.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(json.code).toBe(0);
    const checks = byId(report);
    expect(Object.keys(checks)).toEqual(expect.arrayContaining(['tables', 'tenant_isolation', 'composite_fks', 'fk_indexes', 'migrations', 'books', 'statements', 'unused_indexes', 'invalid_indexes', 'duplicate_indexes', 'bloat', 'job_table_dead_tuples', 'long_transactions', 'replication', 'archiving', 'job_queue']));
    expect(checks.tenant_isolation!.figures.pct).toBe(100);
    expect(checks.fk_indexes!.figures).toMatchObject({ pct: 100, unindexed: [] });
    expect(checks.migrations).toMatchObject({ status: 'ok', figures: { pending: [] } });
    expect(checks.books).toMatchObject({ status: 'ok', figures: { violations: 0 } });
    expect(checks.duplicate_indexes!.figures.duplicates).toEqual([]);
    expect(checks.job_queue!.status).not.toBe('skip');
    // The statistics views of the server: every session is visible to the doctor's role.
    expect(checks.long_transactions!.figures.seesAllSessions).toBe(true);

    const human = await doctorCli(['--only', 'schema,migrations']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^ok {4}Tenant isolation \(RLS forced, visitor policies\) +100\.0% of \d+ tenant tables$/m);
    expect(human.stdout).toContain('0 fail');
  }, 120_000);

  test('a database that is not migrated fails (exit 1): no schema, every committed migration pending', async () => {
    const name = `atrium_doctor_${unique('x').slice(2).replace(/-/g, '_')}`;
    const admin = new pg.Client({ connectionString: withDatabase(urlFor('superuser'), 'postgres') });
    await admin.connect();
    try {
      await admin.query(`create database ${name}`);
      const result = await doctorCli(['--json', '--only', 'schema,migrations'], { DATABASE_URL: withDatabase(urlFor('superuser'), name) });
      const report = JSON.parse(result.stdout) as DoctorReport;
      expect(result.code).toBe(1);
      expect(byId(report).schema).toMatchObject({ status: 'fail', value: 'not migrated' });
      const committed = fs.readdirSync(path.join(ROOT, 'migrations', 'committed')).filter((f) => f.endsWith('.sql'));
      expect(byId(report).migrations).toMatchObject({ status: 'fail', value: `${committed.length} pending` });
    } finally {
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    }
  }, 120_000);

  test('an unindexed foreign key and a duplicate index fail; an index led by the organization does not count for a key on another column', async () => {
    const client = new pg.Client({ connectionString: urlFor('owner') });
    await client.connect();
    const table = `doctor_probe_${unique('t').slice(2).replace(/-/g, '_')}`;
    try {
      await client.query('begin');
      // A table of its own (nothing else locked): a key to itself, indexed only after another column.
      await client.query(`create table app_private.${table} (id int primary key, organization_id uuid, parent_id int references app_private.${table} (id))`);
      await client.query(`create index ${table}_org_parent on app_private.${table} (organization_id, parent_id)`);
      await client.query(`create index ${table}_id on app_private.${table} (id)`);
      const report = await runDoctor({ url: client, visitorRole: roleName('visitor'), pending: [], only: ['schema', 'indexes'] });
      expect(report.exitCode).toBe(1);
      const checks = byId(report);
      expect(checks.fk_indexes!.status).toBe('fail');
      expect(checks.fk_indexes!.figures.unindexed).toEqual([`app_private.${table}.${table}_parent_id_fkey`]);
      expect(checks.duplicate_indexes!.status).toBe('fail');
      expect(checks.duplicate_indexes!.figures.duplicates).toEqual([{ index: `app_private.${table}_id`, other: `app_private.${table}_pkey`, kind: 'duplicate' }]);

      await client.query(`create index ${table}_parent on app_private.${table} (parent_id)`);
      await client.query(`drop index app_private.${table}_id`);
      const fixed = byId(await runDoctor({ url: client, visitorRole: roleName('visitor'), pending: [], only: ['schema', 'indexes'] }));
      expect(fixed.fk_indexes!.figures.unindexed).toEqual([]);
      expect(fixed.duplicate_indexes!.figures.duplicates).toEqual([]);
    } finally {
      await client.query('rollback');
      await client.end();
    }
  }, 60_000);

  test('books that do not add up fail, each violation named: a payment the invoice does not count, a gap in the invoice numbers', async () => {
    const t = await oneTenant('doctor-books');
    const client = new pg.Client({ connectionString: urlFor('superuser') });
    await client.connect();
    try {
      await client.query('begin');
      // Around the triggers (this session only), as a hand-made repair or a partial restore would.
      await client.query(`set local session_replication_role = replica`);
      await client.query(`insert into app_public.payments (organization_id, invoice_id, amount, method, currency) values ($1, $2, 5, 'cash', 'USD')`, [t.orgId, t.invoiceId]);
      await client.query('update app_public.invoices set number = number + 1000 where organization_id = $1 and id = $2', [t.orgId, t.invoiceId]);
      const books = byId(await runDoctor({ url: client, visitorRole: roleName('visitor'), pending: [], only: ['books'] })).books!;
      expect(books).toMatchObject({ status: 'fail', figures: { violations: 2, byRule: { invoice_amount_paid: 1, invoice_numbers_gapless: 1 } } });
      expect(books.details).toEqual(expect.arrayContaining([expect.stringContaining(`invoice_amount_paid: invoices ${t.invoiceId} of organization ${t.orgId}`)]));
    } finally {
      await client.query('rollback');
      await client.end();
    }
  }, 60_000);

  test('WAL segments between two file names, across a log boundary', () => {
    expect(segmentsBetween('000000010000000000000003', '000000010000000000000003')).toBe(1);
    expect(segmentsBetween('0000000100000000000000FE', '000000010000000100000001')).toBe(4);
  });

  test('docs/CURRENT_STATE_OVERVIEW.md quotes `npm run doctor -- --only schema` as it is on this database', async () => {
    const text = fs.readFileSync(path.join(ROOT, 'docs', 'CURRENT_STATE_OVERVIEW.md'), 'utf8');
    const quoted = /```text\n\$ npm run doctor -- --only schema\n([\s\S]*?)```/.exec(text);
    expect(quoted).not.toBeNull();
    const report = await runDoctor({ url: urlFor('owner'), visitorRole: roleName('visitor'), pending: [], only: ['schema'] });
    expect(quoted![1]).toBe(formatChecks(report.checks));
  }, 60_000);
});
