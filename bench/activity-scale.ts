// The activity log at scale: audited writes and the timeline reads measured on the log as the
// dataset left it, then again after the log has grown to --events events (default 10,000,000)
// spread over the last 24 months and every organization (a tenth of them in the measured one),
// with their month partitions (sql/functions/activity_partitions.sql). Then the cost of retention
// on that log: a month dropped whole (sql/functions/activity_retention.sql) beside the same number
// of events deleted in batches.
//
// The events are written straight into the log in chunks (the audit trigger's own cost is the
// audit section's). Each measurement reads a vacuumed, analyzed log, as autovacuum would leave it,
// and starts from a checkpoint. Writes are single-row updates of an audited record (autocommit,
// as the owner: the trigger costs the same for every role); reads are the visitor's, in the
// organization, through row-level security: the newest 50 events (the activity feed), the last
// hour's changes (activityBetween), the first 20 versions of a record (recordHistory).
import pg from 'pg';
import type { BenchContext } from './context.ts';
import { stats, timeEach, type Row, type Section, type Stats } from './stats.ts';

const MONTHS = 24;
const CHUNK = 500_000;

interface Phase {
  writes: number[];
  feed: number[];
  between: number[];
  history: number[];
  events: number;
}

export async function activityScaleSection(ctx: BenchContext): Promise<Section> {
  const { db, options } = ctx;
  const org = ctx.dataset.orgs[0]!;
  const owner = new pg.Client({ connectionString: db.ownerUrl });
  const visitor = new pg.Client({ connectionString: db.authenticatorUrl });
  await owner.connect();
  await visitor.connect();
  const notes: string[] = [];
  const samples = options.smoke ? 20 : Math.max(500, options.iterations);
  try {
    const { rows: made } = await owner.query<{ id: string }>(`insert into app_public.client_companies (organization_id, name) values ($1, 'Scale 0') returning id`, [org.id]);
    const companyId = made[0]!.id;
    // The record whose history is read: 50 versions, the same before and after.
    const { rows: kept } = await owner.query<{ id: string }>(`insert into app_public.client_companies (organization_id, name) values ($1, 'History 0') returning id`, [org.id]);
    const historyId = kept[0]!.id;
    for (let i = 1; i < 50; i++) await owner.query('update app_public.client_companies set name = $3 where organization_id = $1 and id = $2', [org.id, historyId, `History ${i}`]);

    // Both phases start from a checkpoint: growing the log (and vacuuming it) leaves gigabytes of
    // dirty pages that the checkpointer would otherwise write back during the second phase only.
    const checkpoint = async () => {
      const su = new pg.Client({ connectionString: db.superuserUrl });
      await su.connect();
      try {
        await su.query('checkpoint');
      } finally {
        await su.end();
      }
    };
    const measure = async (): Promise<Phase> => {
      await checkpoint();
      const writes = await timeEach(samples, (i) =>
        owner.query({ name: 'scale_upd', text: 'update app_public.client_companies set name = $3 where organization_id = $1 and id = $2', values: [org.id, companyId, `Scale ${i}`] }),
      );
      await visitor.query('begin');
      await visitor.query('select set_config(key, value, true) from json_each_text($1)', [
        JSON.stringify({ role: db.roles.visitor, 'app.user_id': org.ownerUserId, 'app.session_id': org.sessionId, 'app.org_id': org.id }),
      ]);
      const feed = await timeEach(samples, async () => {
        const r = await visitor.query({ name: 'scale_feed', text: 'select id, occurred_at, action, table_name, record_id, changed_columns from app_public.activity_events order by occurred_at desc, seq desc limit 50' });
        if (r.rowCount !== 50) throw new Error(`the activity feed returned ${r.rowCount} events, not 50`);
      });
      const between = await timeEach(samples, () => visitor.query({ name: 'scale_between', text: `select id, action, table_name from app_public.activity_between(now() - interval '1 hour', now()) limit 200` }));
      const history = await timeEach(samples, () => visitor.query({ name: 'scale_hist', text: `select * from app_public.record_history('client_companies', $1) limit 20`, values: [historyId] }));
      await visitor.query('commit');
      const { rows } = await owner.query<{ n: string }>('select count(*) as n from app_public.activity_events');
      return { writes, feed, between, history, events: Number(rows[0]!.n) };
    };

    // The months first, so that before and after differ by the events alone; recordHistory looks
    // in every month's index, so its cost with few months and with them is a figure of its own.
    const historyOnly = async () => {
      await visitor.query('begin');
      await visitor.query('select set_config(key, value, true) from json_each_text($1)', [
        JSON.stringify({ role: db.roles.visitor, 'app.user_id': org.ownerUserId, 'app.session_id': org.sessionId, 'app.org_id': org.id }),
      ]);
      const ms = await timeEach(samples, () => visitor.query({ name: 'scale_hist', text: `select * from app_public.record_history('client_companies', $1) limit 20`, values: [historyId] }));
      await visitor.query('commit');
      return ms;
    };
    const months = async () => Number((await owner.query<{ n: string }>(`select count(*) as n from pg_inherits where inhparent = 'app_public.activity_events'::regclass`)).rows[0]!.n);
    // Every phase reads a vacuumed, analyzed log, as the grown one is: the dataset's events have
    // just been loaded, and a plan made on missing statistics would make "before" slow.
    await owner.query('vacuum analyze app_public.activity_events');
    const fewMonths = await months();
    const historyFewMonths = await historyOnly();
    await owner.query(`call app_private.ensure_activity_partitions(3, (date_trunc('month', now()) - make_interval(months => ${MONTHS}))::date)`);
    const manyMonths = await months();
    await owner.query('vacuum analyze app_public.activity_events');
    const before = await measure();
    const target = Math.max(options.activityEvents, before.events);
    const loadSeconds = await grow(owner, ctx.dataset.orgs.map((o) => o.id), org.id, target - before.events);
    const after = await measure();
    notes.push(
      `Before: ${before.events.toLocaleString('en')} events (the dataset's); after: ${after.events.toLocaleString('en')} events over ${MONTHS} months and ${ctx.dataset.orgs.length} organizations, a tenth in the measured one ` +
        `(${(target - before.events).toLocaleString('en')} written in ${loadSeconds.toFixed(0)} s, in chunks of ${CHUNK.toLocaleString('en')}; then VACUUM ANALYZE). ${samples} samples per figure.`,
    );

    const rows: Row[] = [
      throughputRow('audited single-row update', before, after),
      latencyRow('activity feed: newest 50 events (visitor)', before.feed, after.feed),
      latencyRow('activityBetween: the last hour (visitor)', before.between, after.between),
      latencyRow('recordHistory: first 20 of a record\'s 50 versions (visitor)', before.history, after.history),
      {
        name: `recordHistory: the same, with ${manyMonths} partitions (months) vs ${fewMonths}, no events added`,
        unit: 'ms',
        ours: stats(before.history),
        baseline: stats(historyFewMonths),
        baselineLabel: `${fewMonths} partitions`,
        ratio: { p50: stats(before.history).p50 / stats(historyFewMonths).p50, p95: stats(before.history).p95 / stats(historyFewMonths).p95 },
        note: 'a record\'s events are looked up in each month\'s index (one index descent per partition kept)',
      },
      ...(await retentionCost(owner, db.workerUrl, ctx.dataset.orgs[1]?.id ?? org.id, options.smoke ? 2_000 : 100_000)),
    ];
    return { id: 'activity', title: `2c. The activity log at ${after.events.toLocaleString('en')} events: writes, timeline reads, retention`, rows, notes };
  } finally {
    await visitor.end().catch(() => undefined);
    await owner.end();
  }
}

const throughputRow = (name: string, before: Phase, after: Phase): Row => {
  const ops = (ms: number[]) => (ms.length / ms.reduce((a, b) => a + b, 0)) * 1000;
  const ratio = ops(after.writes) / ops(before.writes);
  return {
    name: `${name} at ${after.events.toLocaleString('en')} events vs at ${before.events.toLocaleString('en')}`,
    unit: 'ops/s',
    ours: ops(after.writes),
    baseline: ops(before.writes),
    baselineLabel: 'before the log grew',
    ratio: { value: ratio },
    target: '≥ 0.80× (flat)',
    pass: ratio >= 0.8,
    note: `latency p50/p95 ${fmt(stats(after.writes))} ms (before ${fmt(stats(before.writes))})`,
  };
};

const latencyRow = (name: string, before: number[], after: number[]): Row => {
  const a = stats(after);
  const b = stats(before);
  return {
    name,
    unit: 'ms',
    ours: a,
    baseline: b,
    baselineLabel: 'before the log grew',
    ratio: { p50: a.p50 / b.p50, p95: a.p95 / b.p95 },
    target: 'p95 ≤ 1.25× before, or under 2 ms (flat)',
    pass: a.p95 <= 1.25 * b.p95 || a.p95 < 2,
  };
};
const fmt = (s: Stats) => `${s.p50.toFixed(3)}/${s.p95.toFixed(3)}`;

/**
 * Writes `count` events into the log: a tenth for `measured`, the rest spread over `orgs`, at
 * random moments of the last MONTHS months (their partitions made before). Returns the seconds.
 */
async function grow(owner: pg.Client, orgs: string[], measured: string, count: number): Promise<number> {
  const started = process.hrtime.bigint();
  if (count > 0) {
    await owner.query('set synchronous_commit = off');
    for (let done = 0; done < count; done += CHUNK) {
      const n = Math.min(CHUNK, count - done);
      // Table names of the dataset's kinds, with parents where the audit trigger writes them.
      await owner.query(
        `insert into app_public.activity_events (organization_id, occurred_at, action, table_name, record_id, old_values, new_values, changed_columns, parent_table, parent_id)
         select case when g % 10 = 0 then $1::uuid else ($2::uuid[])[1 + (g / 10) % cardinality($2::uuid[])] end,
           now() - make_interval(secs => (hashint4(g + $4) & 2147483647)::float8 / 2147483647 * ${MONTHS * 30 * 86400}),
           (array['insert', 'update', 'update', 'update', 'soft_delete'])[1 + g % 5],
           t.name, gen_random_uuid(),
           case when g % 5 in (1, 2, 3) then jsonb_build_object('name', 'Before ' || g, 'status', 'open') end,
           jsonb_build_object('name', 'After ' || g, 'status', 'done', 'hours', g % 40),
           case when g % 5 in (1, 2, 3) then array['name', 'status'] end,
           t.parent, case when t.parent is not null then gen_random_uuid() end
         from generate_series(1, $3::int) g
         cross join lateral (select (array['tasks', 'time_entries', 'contacts', 'invoices', 'deals', 'invoice_line_items'])[1 + g % 6] as name) k
         cross join lateral (select k.name, case k.name when 'tasks' then 'projects' when 'time_entries' then 'engagements' when 'invoice_line_items' then 'invoices' end as parent) t`,
        [measured, orgs, n, done],
      );
    }
    await owner.query('set synchronous_commit = on');
    await owner.query('vacuum analyze app_public.activity_events');
  }
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/**
 * Retention on the grown log: `count` events of one organization deleted in batches of 1,000
 * through the retention door (as tenant_daily does), beside one month of the log dropped whole
 * (as daily_maintenance does), both on events written for the purpose 8 years back.
 */
async function retentionCost(owner: pg.Client, workerUrl: string, orgId: string, count: number): Promise<Row[]> {
  // A month 8 years back of `count` ordinary events of `orgId`, and 3 years back another `count`.
  const month = async (yearsBack: number) => {
    const { rows } = await owner.query<{ m: string }>(`select to_char(date_trunc('month', now() - make_interval(years => $1)), 'YYYY-MM-DD') as m`, [yearsBack]);
    const start = rows[0]!.m;
    // (In the writers' lock order, as ensure_activity_partitions.)
    await owner.query(`lock table app_public.organizations in share row exclusive mode; create table if not exists app_partitions.activity_events_${start.slice(0, 7).replace('-', '_')} partition of app_public.activity_events for values from ('${start}') to ('${start}'::date + interval '1 month')`);
    await owner.query(
      `insert into app_public.activity_events (organization_id, occurred_at, action, table_name, record_id, new_values)
       select $1, $2::timestamptz + make_interval(secs => g % (27 * 86400)), 'update', 'tasks', gen_random_uuid(), jsonb_build_object('name', 'Old ' || g) from generate_series(1, $3::int) g`,
      [orgId, start, count],
    );
    await owner.query('analyze app_public.activity_events');
    return start;
  };
  await month(8);
  await owner.query('update app_public.organizations set activity_retention_days = 365, country_code = null, financial_activity_retention_years = null where id = $1', [orgId]);
  // Row deletes: the worker inside the organization, each batch its own transaction (tenant_daily).
  const worker = new pg.Client({ connectionString: workerUrl });
  await worker.connect();
  const t0 = process.hrtime.bigint();
  let deleted = 0;
  try {
    for (;;) {
      await worker.query('begin');
      await worker.query(`select set_config('app.org_id', $1, true)`, [orgId]);
      const { rows } = await worker.query<{ n: number }>(`select app_private.purge_tenant_rows('activity_events', 1000) as n`);
      await worker.query('commit');
      deleted += rows[0]!.n;
      if (rows[0]!.n < 1000) break;
    }
  } finally {
    await worker.end();
  }
  const rowSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await month(9);
  // Every other organization keeps less than 9 years here; drop what has expired for everyone.
  await owner.query(`update app_public.organizations set country_code = 'DK', financial_activity_retention_years = null, activity_retention_days = least(activity_retention_days, 730)`);
  const t1 = process.hrtime.bigint();
  const { rows: dropped } = await owner.query<{ m: string }>('select m from app_private.drop_expired_activity_partitions() as m');
  const dropSeconds = Number(process.hrtime.bigint() - t1) / 1e9;
  const { rows: record } = await owner.query<{ events: string }>('select sum(events) as events from app_private.activity_partition_drops');
  return [
    { name: `retention: ${deleted.toLocaleString('en')} expired events deleted in batches of 1,000 through the door`, unit: 'ops/s', ours: deleted / rowSeconds, note: `${rowSeconds.toFixed(2)} s` },
    {
      name: `retention: ${dropped.length} month(s) holding ${Number(record[0]!.events ?? 0).toLocaleString('en')} events dropped whole`,
      unit: 'ops/s',
      ours: Number(record[0]!.events ?? 0) / dropSeconds,
      note: `${dropSeconds.toFixed(2)} s, counting the events for the record`,
    },
  ];
}
