// 2. What auditing costs: single-row inserts, single-row updates and a 1,000-row update on four
// copies of one tenant table — without the audit trigger, with the audit trigger only, with the
// production trigger (audit + outbox job), and with the production trigger as it was before
// personal data was classified (the last committed migration defining it before the one whose
// trigger reads app_private.data_columns) — interleaved operation by operation. Throughput is
// operations per second of time spent in them; the ratio is against the table without audit, and
// the production trigger's also against the previous one. The tables have a kept and a masked column and name a
// parent, so the trigger does all its work. Then time travel: app_public.record_as_of and the
// first page of app_public.record_history on a record with 1,000 versions, as the API's visitor.
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { ROOT } from '../src/paths.ts';
import type { BenchContext } from './context.ts';
import { stats, timeEach, type Row, type Section } from './stats.ts';

type Variant = 'plain' | 'previous' | 'audit' | 'full';
const VARIANTS: Variant[] = ['plain', 'previous', 'audit', 'full'];
const LABEL: Record<Variant, string> = { plain: 'no audit', previous: 'previous audit + outbox job', audit: 'audit trigger', full: 'audit + outbox job' };

/**
 * The audit trigger function as it was before personal data was classified: the last committed
 * migration defining it before the first one whose trigger reads the registry
 * (app_private.data_columns). Later migrations' triggers take the classification from their
 * arguments instead, so "does not mention data_columns" alone would pick them.
 */
function previousTrigger(): { sql: string; file: string } | undefined {
  const dir = path.join(ROOT, 'migrations', 'committed');
  let previous: { sql: string; file: string } | undefined;
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.sql')).sort()) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    const start = text.indexOf('create or replace function app_private.tg__audit()');
    if (start < 0) continue;
    const end = text.indexOf('\n$$;', text.indexOf('as $$', start));
    const sql = text.slice(start, end + 4);
    if (sql.includes('data_columns')) return previous;
    previous = { sql, file };
  }
  return undefined;
}

async function setUp(client: pg.Client): Promise<boolean> {
  await client.query('create schema if not exists bench');
  for (const v of VARIANTS) {
    await client.query(`drop table if exists bench.items_${v}`);
    await client.query(`
      create table bench.items_${v} (
        organization_id uuid not null references app_public.organizations,
        id uuid not null default gen_random_uuid(),
        name text not null,
        notes text,
        hits integer not null default 0,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        primary key (organization_id, id)
      )`);
    await client.query(`call app_private.attach_updated_at('bench.items_${v}')`);
    await client.query(`call app_private.classify_columns('bench.items_${v}', '{"name": "free_text", "notes": ["free_text", "mask"]}')`);
    await client.query(`call app_private.set_audit_parent('bench.items_${v}', 'organization_id', 'app_public.organizations')`);
  }
  await client.query(`call app_private.attach_audit('bench.items_full')`);
  const previous = previousTrigger();
  if (!previous) return false;
  await client.query(previous.sql.replace('function app_private.tg__audit()', 'function bench.tg__audit_previous()'));
  for (const op of ['insert', 'update', 'delete']) {
    const transition = op === 'insert' ? 'new table as new_rows' : op === 'delete' ? 'old table as old_rows' : 'old table as old_rows new table as new_rows';
    await client.query(`create trigger tg_items_previous__audit_${op} after ${op} on bench.items_previous referencing ${transition} for each statement execute function bench.tg__audit_previous('organization_id')`);
  }
  // The audit trigger without its outbox step: the production function with the job left out.
  const { rows } = await client.query<{ def: string }>(`select pg_get_functiondef('app_private.tg__audit'::regproc) as def`);
  const start = rows[0]!.def.indexOf('  if v_orgs is not null then');
  const end = rows[0]!.def.indexOf('  end if;', start);
  if (start < 0 || end < 0) return false;
  const auditOnly = rows[0]!.def.slice(0, start) + rows[0]!.def.slice(end + '  end if;'.length);
  await client.query(auditOnly.replace(/FUNCTION app_private\.tg__audit\(\)/i, 'FUNCTION bench.tg__audit_only()'));
  // With the arguments app_private.attach_audit gives the production trigger (the classification and parent).
  const { rows: argRows } = await client.query<{ args: string }>(
    `select string_agg(quote_literal(a), ', ' order by i) as args from unnest(app_private.audit_arguments('bench.items_audit', 'organization_id', '{}')) with ordinality as u(a, i)`,
  );
  for (const op of ['insert', 'update', 'delete']) {
    const transition = op === 'insert' ? 'new table as new_rows' : op === 'delete' ? 'old table as old_rows' : 'old table as old_rows new table as new_rows';
    await client.query(`create trigger tg_items_audit__audit_${op} after ${op} on bench.items_audit referencing ${transition} for each statement execute function bench.tg__audit_only(${argRows[0]!.args})`);
  }
  return true;
}

export async function auditSection(ctx: BenchContext): Promise<Section> {
  const { db, options } = ctx;
  const client = new pg.Client({ connectionString: db.ownerUrl });
  await client.connect();
  const notes: string[] = [];
  const rows: Row[] = [];
  try {
    const haveAll = await setUp(client);
    if (!haveAll) notes.push('the audit-only or previous variant could not be derived; only "audit + outbox job" was measured');
    const variants = haveAll ? VARIANTS : (['plain', 'full'] as Variant[]);
    if (haveAll) notes.push(`"previous": app_private.tg__audit as defined in migrations/committed/${previousTrigger()!.file}.`);
    const org = ctx.dataset.orgs[0]!.id;
    const singles = options.smoke ? 20 : Math.max(200, options.iterations);
    const bulks = options.smoke ? 2 : 30;
    // 1,000 rows per table for the bulk update.
    for (const v of variants) await client.query(`insert into bench.items_${v} (organization_id, name) select $1, 'seed ' || g from generate_series(1, 1000) g`, [org]);

    const run = async (label: string, count: number, op: (v: Variant, i: number) => Promise<unknown>) => {
      const times = new Map<Variant, number[]>(variants.map((v) => [v, []]));
      for (let i = -Math.min(20, count); i < count; i++) {
        const order = i % 2 === 0 ? variants : [...variants].reverse();
        for (const v of order) {
          const t = process.hrtime.bigint();
          await op(v, i);
          const ms = Number(process.hrtime.bigint() - t) / 1e6;
          if (i >= 0) times.get(v)!.push(ms);
          if (process.env.BENCH_DEBUG && label.startsWith('1,000')) process.stderr.write(`${v}:${ms.toFixed(0)} `);
        }
      }
      const throughput = (v: Variant) => (count / times.get(v)!.reduce((a, b) => a + b, 0)) * 1000;
      const base = throughput('plain');
      if (variants.includes('previous')) {
        const ratio = throughput('full') / throughput('previous');
        const target = label.startsWith('single') ? 0.9 : undefined;
        rows.push({
          name: `${label} — audit + outbox job vs the previous trigger`,
          unit: 'ops/s',
          ours: throughput('full'),
          baseline: throughput('previous'),
          baselineLabel: 'previous trigger',
          ratio: { value: ratio },
          target: target ? `≥ ${target.toFixed(2)}× (at most 10% slower)` : undefined,
          pass: target ? ratio >= target : undefined,
        });
      }
      for (const v of variants) {
        const ratio = throughput(v) / base;
        const target = v === 'audit' ? 0.8 : v === 'full' || v === 'previous' ? 0.7 : undefined;
        rows.push({
          name: `${label} — ${LABEL[v]}`,
          unit: 'ops/s',
          ours: throughput(v),
          baseline: v === 'plain' ? undefined : base,
          baselineLabel: v === 'plain' ? undefined : 'no audit',
          ratio: v === 'plain' ? undefined : { value: ratio },
          target: target ? `≥ ${target.toFixed(2)}×` : undefined,
          pass: target ? ratio >= target : undefined,
          note: `latency p50/p95 ${stats(times.get(v)!).p50.toFixed(3)}/${stats(times.get(v)!).p95.toFixed(3)} ms`,
        });
      }
    };

    await run('single-row insert', singles, (v, i) => client.query({ name: `ins_${v}`, text: `insert into bench.items_${v} (organization_id, name, notes) values ($1, $2, $3)`, values: [org, `item ${i}`, `note ${i}`] }));
    const ids = new Map<Variant, string[]>();
    for (const v of variants) ids.set(v, (await client.query<{ id: string }>(`select id from bench.items_${v} limit 1000`)).rows.map((r) => r.id));
    await run('single-row update', singles, (v, i) => {
      const list = ids.get(v)!;
      return client.query({ name: `upd_${v}`, text: `update bench.items_${v} set hits = hits + 1 where organization_id = $1 and id = $2`, values: [org, list[Math.abs(i) % list.length]] });
    });
    await run('1,000-row update', bulks, (v) => client.query({ name: `bulk_${v}`, text: `update bench.items_${v} set hits = hits + 1 where organization_id = $1 and id = any ($2::uuid[])`, values: [org, ids.get(v)!] }));
    notes.push(`${singles} single-row operations and ${bulks} bulk updates per variant, each in its own transaction (autocommit), interleaved; run as the owner (the trigger's cost is the same for every role).`);
    rows.push(...(await timeTravel(ctx, client, options.smoke ? 50 : 1000, options.smoke ? 20 : Math.max(200, options.iterations))));
  } finally {
    await client.query(`delete from app_private.data_columns where schema_name = 'bench'`).catch(() => undefined);
    await client.query(`delete from app_private.audit_parents where schema_name = 'bench'`).catch(() => undefined);
    await client.query(`delete from graphile_worker._private_jobs j using graphile_worker._private_tasks t where t.id = j.task_id and t.identifier = 'dispatch_activity'`).catch(() => undefined);
    await client.query('drop schema if exists bench cascade').catch(() => undefined);
    await client.end();
  }
  return { id: 'audit', title: '2. Audit: writes with the audit trigger (and outbox job) vs without', rows, notes };
}

/** record_as_of at random moments and the first page of record_history, on a client company with `versions` versions, as the visitor. */
async function timeTravel(ctx: BenchContext, owner: pg.Client, versions: number, samples: number): Promise<Row[]> {
  const org = ctx.dataset.orgs[0]!;
  const { rows } = await owner.query<{ id: string }>(`insert into app_public.client_companies (organization_id, name) values ($1, 'Versions 0') returning id`, [org.id]);
  const id = rows[0]!.id;
  for (let i = 1; i < versions; i++) await owner.query({ name: 'tt_upd', text: 'update app_public.client_companies set name = $2 where organization_id = $1 and id = $3', values: [org.id, `Versions ${i}`, id] });
  const { rows: span } = await owner.query<{ first: Date; last: Date; n: number }>(
    `select min(occurred_at) as first, max(occurred_at) as last, count(*)::int as n from app_public.activity_events where organization_id = $1 and table_name = 'client_companies' and record_id = $2`, [org.id, id]);
  const { first, last, n } = span[0]!;
  const visitor = new pg.Client({ connectionString: ctx.db.authenticatorUrl });
  await visitor.connect();
  try {
    await visitor.query('begin');
    await visitor.query('select set_config(key, value, true) from json_each_text($1)', [
      JSON.stringify({ role: ctx.db.roles.visitor, 'app.user_id': org.ownerUserId, 'app.session_id': org.sessionId, 'app.org_id': org.id }),
    ]);
    let seed = 7;
    const at = () => new Date(first.getTime() + 1 + ((seed = (seed * 48271) % 2147483647) / 2147483647) * (last.getTime() - first.getTime()));
    const asOf = await timeEach(samples, async () => {
      const r = await visitor.query({ name: 'tt_asof', text: `select app_public.record_as_of('client_companies', $1, $2) as r`, values: [id, at()] });
      if (!r.rows[0]?.r) throw new Error('record_as_of found no version');
    });
    const page = await timeEach(samples, () => visitor.query({ name: 'tt_hist', text: `select * from app_public.record_history('client_companies', $1) limit 20`, values: [id] }));
    await visitor.query('commit');
    return [
      { name: `time travel: recordAsOf on a record with ${n} versions (visitor)`, unit: 'ms', ours: stats(asOf), target: 'p95 < 20 ms', pass: stats(asOf).p95 < 20 },
      { name: `time travel: first 20 of recordHistory on a record with ${n} versions (visitor)`, unit: 'ms', ours: stats(page) },
    ];
  } finally {
    await visitor.end();
    await owner.query(`delete from app_public.client_companies where organization_id = $1 and id = $2`, [org.id, id]).catch(() => undefined);
  }
}
