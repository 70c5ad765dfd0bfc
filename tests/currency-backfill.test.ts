// Documents written before currencies were recorded (sql/functions/currencies.sql): migration
// 000045 fills them with their organization's currency through app_private.fill_document_currencies,
// which commits batch by batch (so it is called outside a transaction, as a `--! no-transaction`
// migration calls it). On a scratch database with the demo data, every currency is taken away
// (as before migration 000044), the procedure is called on its own connection in batches of 3,
// and every document has its organization's currency again, each fill an audited change, the
// books still adding up.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, test } from '@jest/globals';
import pg from 'pg';
import { openDatabase, withDatabase } from '../src/db/bootstrap.ts';
import { runMigrations } from '../src/db/migrations.ts';
import { seedDemoData } from '../src/db/seed.ts';
import { createLocalStorage } from '../src/storage/local.ts';
import { closePools, pool, testConfig, unique } from './support/db.ts';
import { testLogger } from './support/log.ts';

const scratch = unique('atrium_backfill').replace('-', '_');
const files = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-backfill-'));

afterAll(async () => {
  fs.rmSync(files, { recursive: true, force: true });
  await pool('superuser').query(`drop database if exists ${scratch} with (force)`);
  await closePools();
});

test('documents without a currency get their organization\'s, batch by batch, each an audited change; the books still add up', async () => {
  const log = testLogger('currency-backfill', 'error');
  const config = testConfig({ DATABASE_URL: withDatabase(process.env.DATABASE_URL!, scratch) });
  const db = await openDatabase(config, log);
  await runMigrations(db, log, { current: false });
  await seedDemoData(db, log, createLocalStorage({ dir: files, baseUrl: 'http://localhost', signingKey: randomBytes(32) }));

  const su = new pg.Client({ connectionString: withDatabase(process.env.DATABASE_URL!, scratch) });
  await su.connect();
  try {
    const tables = (await su.query<{ table_name: string }>('select table_name from app_private.currency_sources order by 1')).rows.map((r) => r.table_name);
    expect(tables).toEqual(['bill_rates', 'bills', 'budgets', 'contracts', 'credit_notes', 'engagements', 'expenses', 'invoice_schedules', 'invoices', 'payments', 'proposals', 'refunds']);
    // As before migration 000044: no currency anywhere (the column and its checks as 000044 added them).
    for (const t of tables) {
      await su.query(`alter table app_public.${t} alter column currency drop not null`);
      await su.query(`alter table app_public.${t} drop constraint ${t}_currency_format`);
    }
    await su.query('begin');
    await su.query('set local session_replication_role = replica');
    for (const t of tables) await su.query(`update app_public.${t} set currency = null`);
    await su.query('commit');
    const nulls = async () => {
      let n = 0;
      for (const t of tables) n += (await su.query<{ n: number }>(`select count(*)::int as n from app_public.${t} where currency is null`)).rows[0]!.n;
      return n;
    };
    const documents = await nulls();
    expect(documents).toBeGreaterThan(30);
    const before = (await su.query<{ n: number }>('select count(*)::int as n from app_public.activity_events')).rows[0]!.n;

    // Outside a transaction, as the migration runs it (a procedure that commits).
    const owner = new pg.Client({ connectionString: db.ownerUrl });
    await owner.connect();
    try {
      await owner.query('call app_private.fill_document_currencies(3)');
    } finally {
      await owner.end();
    }

    expect(await nulls()).toBe(0);
    for (const t of tables) {
      const { rows } = await su.query<{ n: number }>(
        `select count(*)::int as n from app_public.${t} d join app_public.organizations o on o.id = d.organization_id where d.currency is distinct from o.currency::text`,
      );
      expect({ table: t, otherCurrency: rows[0]!.n }).toEqual({ table: t, otherCurrency: 0 });
    }
    const after = (await su.query<{ n: number }>('select count(*)::int as n from app_public.activity_events')).rows[0]!.n;
    expect(after - before).toBe(documents);
    expect((await su.query('select * from app_private.books_violations()')).rows).toEqual([]);
  } finally {
    await su.end();
  }
}, 300_000);
