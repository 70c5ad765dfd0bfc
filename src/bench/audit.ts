// 2. What auditing costs: single-row inserts, single-row updates and a 1,000-row update on three
// copies of one tenant table — without the audit trigger, with the audit trigger only, and with
// the production trigger (audit + outbox job) — interleaved operation by operation. Throughput is
// operations per second of time spent in them; the ratio is against the table without audit.
import pg from 'pg';
import type { BenchContext } from './context.ts';
import { stats, type Row, type Section } from './stats.ts';

type Variant = 'plain' | 'audit' | 'full';
const VARIANTS: Variant[] = ['plain', 'audit', 'full'];
const LABEL: Record<Variant, string> = { plain: 'no audit', audit: 'audit trigger', full: 'audit + outbox job' };

async function setUp(client: pg.Client): Promise<boolean> {
  await client.query('create schema if not exists bench');
  for (const v of VARIANTS) {
    await client.query(`drop table if exists bench.items_${v}`);
    await client.query(`
      create table bench.items_${v} (
        organization_id uuid not null references app_public.organizations,
        id uuid not null default gen_random_uuid(),
        name text not null,
        hits integer not null default 0,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        primary key (organization_id, id)
      )`);
    await client.query(`call app_private.attach_updated_at('bench.items_${v}')`);
  }
  await client.query(`call app_private.attach_audit('bench.items_full')`);
  // The audit trigger without its outbox step: the production function with the job left out.
  const { rows } = await client.query<{ def: string }>(`select pg_get_functiondef('app_private.tg__audit'::regproc) as def`);
  const start = rows[0]!.def.indexOf('  if v_orgs is not null then');
  const end = rows[0]!.def.indexOf('  end if;', start);
  if (start < 0 || end < 0) return false;
  const auditOnly = rows[0]!.def.slice(0, start) + rows[0]!.def.slice(end + '  end if;'.length);
  await client.query(auditOnly.replace(/FUNCTION app_private\.tg__audit\(\)/i, 'FUNCTION bench.tg__audit_only()'));
  for (const op of ['insert', 'update', 'delete']) {
    const transition = op === 'insert' ? 'new table as new_rows' : op === 'delete' ? 'old table as old_rows' : 'old table as old_rows new table as new_rows';
    await client.query(`create trigger tg_items_audit__audit_${op} after ${op} on bench.items_audit referencing ${transition} for each statement execute function bench.tg__audit_only('organization_id')`);
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
    const haveAuditOnly = await setUp(client);
    if (!haveAuditOnly) notes.push('the audit-only variant could not be derived from app_private.tg__audit; only "audit + outbox job" was measured');
    const variants = haveAuditOnly ? VARIANTS : (['plain', 'full'] as Variant[]);
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
      for (const v of variants) {
        const ratio = throughput(v) / base;
        const target = v === 'audit' ? 0.8 : v === 'full' ? 0.7 : undefined;
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

    await run('single-row insert', singles, (v, i) => client.query({ name: `ins_${v}`, text: `insert into bench.items_${v} (organization_id, name) values ($1, $2)`, values: [org, `item ${i}`] }));
    const ids = new Map<Variant, string[]>();
    for (const v of variants) ids.set(v, (await client.query<{ id: string }>(`select id from bench.items_${v} limit 1000`)).rows.map((r) => r.id));
    await run('single-row update', singles, (v, i) => {
      const list = ids.get(v)!;
      return client.query({ name: `upd_${v}`, text: `update bench.items_${v} set hits = hits + 1 where organization_id = $1 and id = $2`, values: [org, list[Math.abs(i) % list.length]] });
    });
    await run('1,000-row update', bulks, (v) => client.query({ name: `bulk_${v}`, text: `update bench.items_${v} set hits = hits + 1 where organization_id = $1 and id = any ($2::uuid[])`, values: [org, ids.get(v)!] }));
    notes.push(`${singles} single-row operations and ${bulks} bulk updates per variant, each in its own transaction (autocommit), interleaved; run as the owner (the trigger's cost is the same for every role).`);
  } finally {
    await client.query(`delete from graphile_worker._private_jobs j using graphile_worker._private_tasks t where t.id = j.task_id and t.identifier = 'dispatch_activity'`).catch(() => undefined);
    await client.query('drop schema if exists bench cascade').catch(() => undefined);
    await client.end();
  }
  return { id: 'audit', title: '2. Audit: writes with the audit trigger (and outbox job) vs without', rows, notes };
}
