// Scheduled invoicing (sql/functions/invoice_schedules.sql, src/worker/tasks/scheduled_invoicing.ts
// and tenant_invoicing.ts): every due period of a schedule gets exactly one invoice — however late
// the run (catch-up), however many runs at once — sent at once when the schedule says so, per
// organization, under row-level security, and only by the job worker.
import { afterAll, describe, expect, test } from '@jest/globals';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { startWorker } from '../src/worker/index.ts';
import { asVisitor, asWorker, closePools, pgError, pool, urlFor } from './support/db.ts';
import { commitAs, one } from './support/fixtures.ts';
import { asWorkerCommitted, openWorkerTransaction, smallOrg, type SmallOrg } from './support/jobs.ts';
import { testLogger } from './support/log.ts';

afterAll(closePools);

interface Schedule {
  kind?: 'recurring' | 'fixed' | 'milestone';
  amount?: number;
  frequency?: string | null;
  next_run_on?: string | null;
  ends_on?: string | null;
  milestone_id?: string | null;
  auto_send?: boolean;
  tax_rate?: number;
}

/** A schedule of the organization's engagement, created by its owner as through the API. */
const newSchedule = (org: SmallOrg, s: Schedule): Promise<string> =>
  commitAs(org.own, async (c) =>
    (
      await one<{ id: string }>(
        c,
        `insert into app_public.invoice_schedules (engagement_id, kind, description, amount, frequency, next_run_on, ends_on, milestone_id, auto_send, tax_rate)
         values ($1, $2, 'Retainer', $3, $4, $5, $6, $7, $8, $9) returning id`,
        [org.engagementId, s.kind ?? 'recurring', s.amount ?? 500, s.kind && s.kind !== 'recurring' ? null : (s.frequency ?? 'monthly'), s.next_run_on ?? null, s.ends_on ?? null, s.milestone_id ?? null, s.auto_send ?? false, s.tax_rate ?? 0],
      )
    ).id,
  );

const generate = async (c: pg.PoolClient, day: string) => (await one<{ n: number }>(c, 'select app_private.generate_scheduled_invoices($1) as n', [day])).n;

/** The schedule's invoices (read on `c`, or committed ones as the owner role), oldest period first. */
async function invoicesOf(scheduleId: string, c?: pg.PoolClient) {
  const { rows } = await (c ?? pool('owner')).query<{
    id: string; status: string; number: number | null; period_start: string; period_end: string | null; total: string; issued_on: string | null; due_on: string | null; lines: string[];
  }>(
    `select i.id, i.status, i.number, i.period_start::text, i.period_end::text, i.total::text, i.issued_on::text, i.due_on::text,
       array(select l.description || ' ' || l.quantity || ' × ' || l.unit_price from app_public.invoice_line_items l
             where l.organization_id = i.organization_id and l.invoice_id = i.id order by l.position) as lines
     from app_public.invoices i where i.schedule_id = $1 order by i.period_start`,
    [scheduleId],
  );
  return rows;
}

const scheduleRow = async (c: pg.PoolClient | pg.Pool, id: string) =>
  one<{ next_run_on: string; anchor_on: string | null; active: boolean; last_invoiced_at: Date | null }>(
    c as pg.PoolClient,
    'select next_run_on::text, anchor_on::text, active, last_invoiced_at from app_public.invoice_schedules where id = $1',
    [id],
  );

describe('periods', () => {
  test('a late run bills every missed period once, each on its own invoice, and month ends do not drift', async () => {
    const org = await smallOrg('catch-up');
    const id = await newSchedule(org, { next_run_on: '2026-01-31', amount: 500, tax_rate: 10 });
    await asWorker(org.orgId, async (c) => {
      expect(await generate(c, '2026-01-30')).toBe(0); // not due yet
      expect(await generate(c, '2026-04-30')).toBe(4); // the worker was down since January
      const invoices = await invoicesOf(id, c);
      expect(invoices.map((i) => [i.period_start, i.period_end])).toEqual([
        ['2026-01-31', '2026-02-27'],
        ['2026-02-28', '2026-03-30'],
        ['2026-03-31', '2026-04-29'],
        ['2026-04-30', '2026-05-30'],
      ]);
      for (const invoice of invoices) {
        expect(invoice).toMatchObject({ status: 'draft', number: null, total: '550.00', issued_on: null });
      }
      expect(invoices[0].lines).toEqual(['Retainer, 2026-01-31 – 2026-02-27 1.00 × 500.00']);
      expect(await scheduleRow(c, id)).toMatchObject({ next_run_on: '2026-05-31', anchor_on: '2026-01-31', active: true });
      expect((await scheduleRow(c, id)).last_invoiced_at).toBeInstanceOf(Date);
      // The same day again, or a backfilled earlier day, creates nothing.
      expect(await generate(c, '2026-04-30')).toBe(0);
      expect(await generate(c, '2026-03-01')).toBe(0);
      expect(await generate(c, '2026-05-31')).toBe(1);
      expect((await invoicesOf(id, c)).length).toBe(5);
    });
  });

  test('a recurring schedule bills no period starting after ends_on, then becomes inactive', async () => {
    const org = await smallOrg('ends-on');
    const id = await newSchedule(org, { frequency: 'weekly', next_run_on: '2026-03-02', ends_on: '2026-03-20' });
    await asWorker(org.orgId, async (c) => {
      expect(await generate(c, '2026-12-31')).toBe(3);
      expect((await invoicesOf(id, c)).map((i) => i.period_start)).toEqual(['2026-03-02', '2026-03-09', '2026-03-16']);
      expect(await scheduleRow(c, id)).toMatchObject({ active: false, next_run_on: '2026-03-16' });
      expect(await generate(c, '2027-12-31')).toBe(0);
    });
  });

  test('a fixed schedule bills once on its date, then becomes inactive', async () => {
    const org = await smallOrg('fixed');
    const id = await newSchedule(org, { kind: 'fixed', next_run_on: '2026-03-15', amount: 1200 });
    await asWorker(org.orgId, async (c) => {
      expect(await generate(c, '2026-03-14')).toBe(0);
      expect(await generate(c, '2026-03-15')).toBe(1);
      expect(await invoicesOf(id, c)).toMatchObject([{ period_start: '2026-03-15', period_end: null, total: '1200.00', lines: ['Retainer 1.00 × 1200.00'] }]);
      expect(await scheduleRow(c, id)).toMatchObject({ active: false });
      expect(await generate(c, '2026-12-31')).toBe(0);
    });
  });

  test('a milestone schedule bills once its milestone is reached, once', async () => {
    const org = await smallOrg('milestone');
    const milestoneId = await commitAs(org.own, async (c) => {
      const project = await one<{ id: string }>(c, `insert into app_public.projects (engagement_id, name) values ($1, 'Website') returning id`, [org.engagementId]);
      return (await one<{ id: string }>(c, `insert into app_public.milestones (project_id, name) values ($1, 'Launch') returning id`, [project.id])).id;
    });
    const id = await newSchedule(org, { kind: 'milestone', milestone_id: milestoneId, amount: 3000 });
    await asWorker(org.orgId, async (c) => {
      expect(await generate(c, '2026-12-31')).toBe(0); // still open
      await c.query(`update app_public.milestones set status = 'reached' where id = $1`, [milestoneId]);
      expect(await generate(c, '2026-12-31')).toBe(1);
      const reachedOn = (await one<{ d: string }>(c, `select (reached_at at time zone 'UTC')::date::text as d from app_public.milestones where id = $1`, [milestoneId])).d;
      expect(await invoicesOf(id, c)).toMatchObject([{ period_start: reachedOn, total: '3000.00' }]);
      expect(await generate(c, '2026-12-31')).toBe(0);
    });
  });

  test('moving next_run_on off the rhythm re-anchors the schedule there; the anchor is not the visitor\'s to write', async () => {
    const org = await smallOrg('anchor');
    const id = await newSchedule(org, { next_run_on: '2026-01-31' });
    await commitAs(org.own, (c) => c.query(`update app_public.invoice_schedules set next_run_on = '2026-03-31' where id = $1`, [id]));
    expect(await scheduleRow(pool('owner'), id)).toMatchObject({ anchor_on: '2026-01-31' }); // on the rhythm
    await commitAs(org.own, (c) => c.query(`update app_public.invoice_schedules set next_run_on = '2026-06-15' where id = $1`, [id]));
    expect(await scheduleRow(pool('owner'), id)).toMatchObject({ anchor_on: '2026-06-15' });
    expect((await pgError(asVisitor(org.own, (c) => c.query(`update app_public.invoice_schedules set anchor_on = '2026-01-01' where id = $1`, [id])))).code).toBe('42501');
    expect((await pgError(asVisitor(org.own, (c) => c.query(`update app_public.invoices set period_start = '2026-01-01' where schedule_id = $1`, [id])))).code).toBe('42501');
  });

  test('schedules of a cancelled engagement, inactive or deleted schedules bill nothing', async () => {
    const org = await smallOrg('not-due');
    const inactive = await newSchedule(org, { next_run_on: '2026-01-01' });
    const deleted = await newSchedule(org, { next_run_on: '2026-01-01' });
    await commitAs(org.own, async (c) => {
      await c.query('update app_public.invoice_schedules set active = false where id = $1', [inactive]);
      await c.query('select app_public.soft_delete_invoice_schedule($1)', [deleted]);
    });
    const live = await newSchedule(org, { next_run_on: '2026-01-01' });
    await asWorker(org.orgId, async (c) => {
      expect(await generate(c, '2026-01-31')).toBe(1);
      expect((await invoicesOf(live, c)).length).toBe(1);
      expect([...(await invoicesOf(inactive, c)), ...(await invoicesOf(deleted, c))]).toEqual([]);
      await c.query(`update app_public.engagements set status = 'cancelled' where id = $1`, [org.engagementId]);
      expect(await generate(c, '2026-06-30')).toBe(0);
      expect((await invoicesOf(live, c)).length).toBe(1);
    });
  });
});

describe('exactly once', () => {
  test('two workers generating at the same time create each period\'s invoice once', async () => {
    const org = await smallOrg('parallel');
    const id = await newSchedule(org, { frequency: 'weekly', next_run_on: '2026-01-05' });
    const first = await openWorkerTransaction(org.orgId);
    const second = await openWorkerTransaction(org.orgId);
    try {
      const secondPid = (await one<{ pid: number }>(second, 'select pg_backend_pid() as pid')).pid;
      const one1 = await generate(first, '2026-03-01'); // 8 weeks, not committed yet
      let settled = false;
      const running = generate(second, '2026-03-01').finally(() => (settled = true));
      // The second run waits for the first (its lock on the schedule), whatever the timing.
      while (!settled) {
        const { rows } = await pool('owner').query(`select wait_event_type from pg_stat_activity where pid = $1`, [secondPid]);
        if (rows[0]?.wait_event_type === 'Lock') break;
        await sleep(20);
      }
      await first.query('commit');
      const two = await running;
      await second.query('commit');
      expect([one1, two]).toEqual([8, 0]);
    } finally {
      // Closed, not returned to the pool: a failed run must not leave a transaction open.
      first.release(true);
      second.release(true);
    }
    const invoices = await invoicesOf(id);
    expect(invoices.length).toBe(8);
    expect(new Set(invoices.map((i) => i.period_start)).size).toBe(8);
  });

  test('the database admits one invoice per schedule and period (unique constraint)', async () => {
    const org = await smallOrg('unique');
    const id = await newSchedule(org, { kind: 'fixed', next_run_on: '2026-02-01' });
    await asWorkerCommitted(org.orgId, (c) => generate(c, '2026-02-01'));
    const error = await pgError(
      pool('owner').query(
        `insert into app_public.invoices (organization_id, client_company_id, engagement_id, schedule_id, period_start)
         values ($1, $2, $3, $4, '2026-02-01')`,
        [org.orgId, org.clientId, org.engagementId, id],
      ),
    );
    expect(error).toMatchObject({ code: '23505', constraint: 'invoices_organization_id_schedule_id_period_start_key' });
  });
});

describe('auto_send', () => {
  test('generated invoices are sent through sendInvoice: numbered without gaps, dated, audited, dispatched', async () => {
    const org = await smallOrg('auto-send');
    const id = await newSchedule(org, { next_run_on: '2026-01-01', auto_send: true, tax_rate: 20 });
    const manual = await newSchedule(org, { next_run_on: '2026-01-01' });
    await asWorker(org.orgId, async (c) => {
      expect(await generate(c, '2026-02-15')).toBe(4);
      const terms = await one<{ today: string; due: string }>(
        c,
        'select current_date::text as today, (current_date + payment_terms_days)::text as due from app_public.organizations where id = $1',
        [org.orgId],
      );
      const sent = await invoicesOf(id, c);
      expect(sent).toMatchObject([
        { status: 'sent', number: 1, total: '600.00', issued_on: terms.today, due_on: terms.due },
        { status: 'sent', number: 2, total: '600.00', issued_on: terms.today, due_on: terms.due },
      ]);
      expect((await invoicesOf(manual, c)).map((i) => i.status)).toEqual(['draft', 'draft']);
      // The send is the audited status change, with its outbox job, as when a person sends.
      const txid = (await one<{ txid: string }>(c, 'select pg_current_xact_id()::text as txid')).txid;
      const events = await c.query(
        `select new_values ->> 'number' as number from app_public.activity_events
         where transaction_id = $1 and table_name = 'invoices' and action = 'update' and record_id = any ($2)
           and old_values ->> 'status' = 'draft' and new_values ->> 'status' = 'sent'
         order by 1`,
        [txid, sent.map((i) => i.id)],
      );
      expect(events.rows).toEqual([{ number: '1' }, { number: '2' }]);
      const job = await c.query('select 1 from graphile_worker.jobs where key = $1', [`dispatch_activity:${org.orgId}:${txid}`]);
      expect(job.rowCount).toBe(1);
      // The next invoice a person sends continues the numbers.
      const next = await one<{ number: number }>(c, 'select number from app_public.send_invoice($1)', [(await invoicesOf(manual, c))[0].id]);
      expect(next.number).toBe(3);
    });
  });
});

describe('who and where', () => {
  test('only the worker, inside an organization, generates invoices or fans out', async () => {
    const org = await smallOrg('who');
    expect((await pgError(asVisitor(org.own, (c) => c.query(`select app_private.generate_scheduled_invoices('2026-06-30')`)))).code).toBe('42501');
    expect((await pgError(asVisitor(org.own, (c) => c.query(`select app_private.enqueue_scheduled_invoicing('2026-06-30')`)))).code).toBe('42501');
    expect((await pgError(asWorker(null, (c) => c.query(`select app_private.generate_scheduled_invoices('2026-06-30')`)))).code).toBe('AT402');
  });

  test("a job for one organization bills that organization's schedules only", async () => {
    const [a, b] = await Promise.all([smallOrg('rls-a'), smallOrg('rls-b')]);
    const [ofA, ofB] = await Promise.all([newSchedule(a, { next_run_on: '2026-01-01' }), newSchedule(b, { next_run_on: '2026-01-01' })]);
    await asWorkerCommitted(a.orgId, (c) => generate(c, '2026-03-31'));
    expect((await invoicesOf(ofA)).length).toBe(3);
    expect(await invoicesOf(ofB)).toEqual([]);
    expect(await scheduleRow(pool('owner'), ofB)).toMatchObject({ next_run_on: '2026-01-01', last_invoiced_at: null });
  });

  test('the fan-out enqueues one job per organization with a due schedule, once per day', async () => {
    const [due, idle] = await Promise.all([smallOrg('fan-due'), smallOrg('fan-idle')]);
    await newSchedule(due, { next_run_on: '2031-01-01' });
    await newSchedule(idle, { next_run_on: '2031-01-02' });
    await asWorker(null, async (c) => {
      await c.query(`select app_private.enqueue_scheduled_invoicing('2031-01-01')`);
      const second = (await one<{ n: number }>(c, `select app_private.enqueue_scheduled_invoicing('2031-01-01') as n`)).n;
      const jobs = await one<{ n: number; keys: number }>(c, `select count(*)::int as n, count(distinct key)::int as keys from graphile_worker.jobs where key like 'tenant_invoicing:%:2031-01-01'`);
      expect(jobs).toEqual({ n: second, keys: second });
      const mine = await c.query<{ key: string; payload: unknown }>(`select key, payload from graphile_worker._private_jobs where key = any ($1)`, [[`tenant_invoicing:${due.orgId}:2031-01-01`, `tenant_invoicing:${idle.orgId}:2031-01-01`]]);
      expect(mine.rows).toEqual([{ key: `tenant_invoicing:${due.orgId}:2031-01-01`, payload: { organization_id: due.orgId, day: '2031-01-01' } }]);
    });
  });

  test('the worker runs a tenant_invoicing job', async () => {
    const org = await smallOrg('job');
    const id = await newSchedule(org, { frequency: 'quarterly', next_run_on: '2026-01-01', auto_send: true });
    const worker = await startWorker({ connectionString: urlFor('worker'), concurrency: 2, log: testLogger('test-worker') });
    try {
      await pool('worker').query(`select graphile_worker.add_job('tenant_invoicing', json_build_object('organization_id', $1::uuid, 'day', '2026-07-01'))`, [org.orgId]);
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && (await invoicesOf(id)).length < 3) await sleep(200);
      expect((await invoicesOf(id)).map((i) => [i.period_start, i.status, i.number])).toEqual([
        ['2026-01-01', 'sent', 1],
        ['2026-04-01', 'sent', 2],
        ['2026-07-01', 'sent', 3],
      ]);
    } finally {
      await worker.stop();
    }
  }, 60_000);
});

describe('invoicing a schedule now', () => {
  test('a due schedule is billed at once as the job would today (every due period; advanced or ended); one with nothing due is refused; the job then bills nothing twice', async () => {
    const org = await smallOrg('now');
    const day = new Date();
    const iso = (d: Date) => d.toISOString().slice(0, 10);
    const monthsAgo = (n: number) => iso(new Date(Date.UTC(day.getUTCFullYear(), day.getUTCMonth() - n, 1)));
    const recurring = await newSchedule(org, { next_run_on: monthsAgo(2) });
    const later = await newSchedule(org, { kind: 'fixed', next_run_on: '2999-01-01' });
    const made = await commitAs(org.own, async (c) =>
      (await c.query<{ period_start: string; status: string }>('select period_start::text, status from app_public.invoice_schedule_now($1)', [recurring])).rows);
    // This month's period and the two before it, each on its own draft.
    expect(made).toEqual([0, 1, 2].map((n) => ({ period_start: monthsAgo(2 - n), status: 'draft' })));
    expect((await scheduleRow(pool('owner'), recurring)).next_run_on).toBe(monthsAgo(-1));
    await asVisitor(org.own, async (c) => {
      const refused = await pgError(c.query('select app_public.invoice_schedule_now($1)', [recurring]));
      expect(refused).toMatchObject({ code: 'AT450', message: `This schedule has nothing due before ${monthsAgo(-1)}.` });
    });
    expect((await pgError(asVisitor(org.own, (c) => c.query('select app_public.invoice_schedule_now($1)', [later])))).code).toBe('AT450');
    // The nightly job finds nothing left to bill today.
    expect(await asWorker(org.orgId, (c) => generate(c, iso(day)))).toBe(0);
    expect(await invoicesOf(recurring)).toHaveLength(3);
  }, 60_000);
});
