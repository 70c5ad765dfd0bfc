// Budgets and burn (sql/functions/budgets.sql): budgets of an engagement or one of its projects,
// burnt by approved time and approved expenses; a retainer's months with hours rolled over;
// thresholds alerting the owners and admins once each — through the outbox consumer, end to end.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { startWorker, type WorkerHandle } from '../src/worker/index.ts';
import { asVisitor, attempt, closePools, inTransaction, pool, sessionOf, urlFor, type Session } from './support/db.ts';
import { approveTime, commitAs, memberIdOf, one, oneTenant, signedEngagement, type Tenant } from './support/fixtures.ts';
import { testLogger } from './support/log.ts';

let t: Tenant;
let other: Tenant;
let own: Session;
let member: Session;
let memberId: string;
beforeAll(async () => {
  [t, other] = await Promise.all([oneTenant('budgets'), oneTenant('budgets-other')]);
  own = sessionOf(t.owner, t.orgId);
  member = sessionOf(t.member, t.orgId);
  memberId = await memberIdOf(t, t.member);
}, 90_000);
afterAll(closePools);

interface Period {
  period_start: string; period_end: string | null; hours_budgeted: number | null; hours_rolled_over: number | null; hours_used: number; hours_remaining: number | null;
  hours_percent: number | null; amount_budgeted: number | null; amount_used: number; amount_remaining: number | null; amount_percent: number | null;
}
// (As JSON: dates as written, numbers as numbers.)
const burn = (session: Session, budgetId: string) =>
  asVisitor(session, async (c) => (await one<{ p: Period }>(c, `select to_jsonb(app_public.budgets_burn(b)) as p from app_public.budgets b where id = $1`, [budgetId])).p);
const logTime = (c: pg.PoolClient, engagementId: string, workDate: string, minutes: number, extra: { taskId?: string; billable?: boolean } = {}) =>
  c.query('insert into app_public.time_entries (engagement_id, task_id, member_id, work_date, minutes, billable) values ($1, $2, $3, $4, $5, $6)',
    [engagementId, extra.taskId ?? null, memberId, workDate, minutes, extra.billable ?? true]);
const budget = (c: pg.PoolClient, values: Record<string, unknown>) => {
  const columns = Object.keys(values);
  return one<{ id: string; currency: string; starts_on: string }>(c,
    `insert into app_public.budgets (${columns.join(', ')}) values (${columns.map((_, i) => `$${i + 1}`).join(', ')}) returning id, currency, starts_on::text`, Object.values(values));
};

describe('burn', () => {
  test('approved time (all hours; money at its rate when billable) and approved billable expenses; nothing before approval', async () => {
    const e = await commitAs(own, (c) => signedEngagement(c, 'burn')); // 150/h
    const b = await commitAs(own, (c) => budget(c, { engagement_id: e.engagementId, name: 'Discovery', kind: 'time_and_materials', hours: 10, amount: 2000, starts_on: '2026-03-01' }));
    expect(b.currency).toBe(await commitAs(own, async (c) => (await one<{ currency: string }>(c, 'select currency from app_public.engagements where id = $1', [e.engagementId])).currency));
    await commitAs(member, async (c) => {
      await logTime(c, e.engagementId, '2026-03-02', 240);
      await logTime(c, e.engagementId, '2026-03-03', 120);
      await logTime(c, e.engagementId, '2026-03-04', 60, { billable: false });
      await logTime(c, e.engagementId, '2026-02-20', 600); // before the budget starts
    });
    expect(await burn(own, b.id)).toMatchObject({ period_start: '2026-03-01', period_end: null, hours_used: 0, amount_used: 0 });
    await commitAs(own, (c) => approveTime(c, e.engagementId));
    expect(await burn(own, b.id)).toMatchObject({
      hours_budgeted: 10, hours_used: 7, hours_remaining: 3, hours_percent: 70,
      amount_budgeted: 2000, amount_used: 900, amount_remaining: 1100, amount_percent: 45,
    });
    // An approved billable expense adds its billable amount (100 + 10%); a draft one nothing.
    await commitAs(own, async (c) => {
      const travel = await one<{ id: string }>(c, `select id from app_public.expense_categories where name = 'Travel'`);
      const spent = await one<{ id: string }>(c, `insert into app_public.expenses (member_id, category_id, engagement_id, incurred_on, description, amount) values ($1, $2, $3, '2026-03-05', 'Flight', 100) returning id`, [memberId, travel.id, e.engagementId]);
      await c.query(`insert into app_public.expenses (member_id, category_id, engagement_id, incurred_on, description, amount) values ($1, $2, $3, '2026-03-05', 'Draft', 500)`, [memberId, travel.id, e.engagementId]);
      await c.query('select app_public.submit_expense($1)', [spent.id]);
      await c.query('select app_public.approve_expense($1)', [spent.id]);
    });
    expect((await burn(own, b.id)).amount_used).toBe(1010);
    // Read as one may: the billing clerk (no time.read, no engagements.read) sees no budget at all.
    expect(await asVisitor(sessionOf(t.clerk, t.orgId), async (c) => (await c.query('select id from app_public.budgets where id = $1', [b.id])).rowCount)).toBe(0);
  });

  test('a project budget counts the time of that project\'s tasks only, and no expenses; its project must be the engagement\'s', async () => {
    const p = await commitAs(own, async (c) => {
      const project = await one<{ id: string }>(c, `insert into app_public.projects (engagement_id, name) values ($1, 'Phase two') returning id`, [t.engagementId]);
      const task = await one<{ id: string }>(c, `insert into app_public.tasks (project_id, title) values ($1, 'Build') returning id`, [project.id]);
      return { projectId: project.id, taskId: task.id };
    });
    const b = await commitAs(own, (c) => budget(c, { engagement_id: t.engagementId, project_id: p.projectId, name: 'Phase two', kind: 'fixed_fee', amount: 3000, starts_on: '2026-04-01' }));
    await commitAs(own, async (c) => {
      await logTime(c, t.engagementId, '2026-04-06', 180, { taskId: p.taskId });
      await logTime(c, t.engagementId, '2026-04-07', 120, { taskId: t.taskId }); // another project's task
      await approveTime(c, t.engagementId);
    });
    expect(await burn(own, b.id)).toMatchObject({ hours_budgeted: null, hours_used: 3, hours_percent: null, amount_used: 450, amount_percent: 15 });
    const elsewhere = await commitAs(own, (c) => signedEngagement(c, 'elsewhere'));
    await asVisitor(own, async (c) => {
      expect(await attempt(c, `insert into app_public.budgets (engagement_id, project_id, name, kind, hours) values ($1, $2, 'Wrong', 'time_and_materials', 5)`, [elsewhere.engagementId, p.projectId])).toBe('22023');
      // Each kind says what it needs: a cap, a retainer's hours; rollover is a retainer's.
      expect(await attempt(c, `insert into app_public.budgets (engagement_id, name, kind, hours) values ($1, 'Cap', 'capped', 5)`, [t.engagementId])).toBe('23514');
      expect(await attempt(c, `insert into app_public.budgets (engagement_id, name, kind, amount) values ($1, 'Retainer', 'retainer', 500)`, [t.engagementId])).toBe('23514');
      expect(await attempt(c, `insert into app_public.budgets (engagement_id, name, kind, hours, rollover) values ($1, 'T&M', 'time_and_materials', 5, 'unused_hours')`, [t.engagementId])).toBe('23514');
      expect(await attempt(c, `insert into app_public.budgets (engagement_id, name, kind, hours, thresholds) values ($1, 'T', 'time_and_materials', 5, '{0}')`, [t.engagementId])).toBe('23514');
    });
  });

  test('a retainer: hours per month from its start, unused hours rolled over up to the cap, one period per month up to today', async () => {
    const e = await commitAs(own, (c) => signedEngagement(c, 'retainer'));
    const b = await commitAs(own, (c) => budget(c, { engagement_id: e.engagementId, name: 'Support', kind: 'retainer', hours: 10, amount: 1200, rollover: 'unused_hours', rollover_max_hours: 5, starts_on: '2025-01-15' }));
    await commitAs(member, async (c) => {
      await logTime(c, e.engagementId, '2025-01-20', 4 * 60); // month 1 (Jan 15 – Feb 14): 4 of 10 → 6 unused, 5 roll over
      await logTime(c, e.engagementId, '2025-02-17', 12 * 60); // month 2: 12 of 15 → 3 roll over
      await logTime(c, e.engagementId, '2025-03-20', 14 * 60); // month 3: 14 of 13 → over, none roll over
    });
    await commitAs(own, (c) => approveTime(c, e.engagementId));
    const periods = await asVisitor(own, async (c) => (await c.query<{ p: Period }>(`select to_jsonb(p) as p from app_public.budgets b, app_public.budgets_periods(b) p where b.id = $1 order by p.period_start`, [b.id])).rows.map((r) => r.p));
    const today = (await pool('owner').query<{ today: string }>('select current_date::text as today')).rows[0]!.today;
    expect(periods.at(-1)!.period_start <= today && today <= periods.at(-1)!.period_end!).toBe(true);
    expect(periods.slice(0, 4).map((p) => [p.period_start, p.period_end, p.hours_rolled_over, p.hours_budgeted, p.hours_used, p.hours_remaining, p.amount_used])).toEqual([
      ['2025-01-15', '2025-02-14', 0, 10, 4, 6, 600],
      ['2025-02-15', '2025-03-14', 5, 15, 12, 3, 1800],
      ['2025-03-15', '2025-04-14', 3, 13, 14, -1, 2100],
      ['2025-04-15', '2025-05-14', 0, 10, 0, 10, 0],
    ]);
    expect(await burn(own, b.id)).toEqual(periods.at(-1));
  });
});

/**
 * Runs `fn` committed on the worker's own connection inside the organization (as dispatch_activity
 * does: only the worker's session records alerts), and lists the send_email jobs it queued, read
 * in the same transaction (no other test file's worker can have taken them yet).
 */
async function asTheWorker<T>(orgId: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<{ result: T; emails: Array<{ template: string; to: string; data: Record<string, unknown> }> }> {
  return inTransaction('worker', { 'app.org_id': orgId }, async (c) => {
    const result = await fn(c);
    const { rows } = await c.query(
      `select j.payload from graphile_worker._private_jobs j join graphile_worker._private_tasks k on k.id = j.task_id
       where k.identifier = 'send_email' and j.xmin = pg_current_xact_id()::xid order by j.id`,
    );
    return { result, emails: rows.map((r) => r.payload) };
  }, true);
}

describe('thresholds', () => {
  test('each threshold crossed is recorded once per budget, period and measure, and emails each owner and admin once', async () => {
    const e = await commitAs(own, (c) => signedEngagement(c, 'alerts'));
    const b = await commitAs(own, (c) => budget(c, { engagement_id: e.engagementId, name: 'Launch', kind: 'capped', hours: 4, amount: 1000, thresholds: [50, 100], starts_on: '2026-05-01' }));
    await commitAs(member, (c) => logTime(c, e.engagementId, '2026-05-04', 150)); // 2.5 h, 375
    await commitAs(own, (c) => approveTime(c, e.engagementId));
    const check = () => asTheWorker(t.orgId, (c) => one<{ n: number }>(c, 'select app_private.check_budget_thresholds($1) as n', [[e.engagementId]]));
    const first = await check();
    expect(first.result.n).toBe(1); // hours 62.5% ≥ 50; money 37.5%
    const admins = (await pool('owner').query<{ email: string }>(`select u.email from app_public.organization_members m join app_public.users u on u.id = m.user_id where m.organization_id = $1 and m.role >= 'admin' order by 1`, [t.orgId])).rows.map((r) => r.email);
    expect(first.emails.map((m) => m.to).sort()).toEqual(admins);
    expect(first.emails[0]).toMatchObject({ template: 'budget_threshold', data: { budget_name: 'Launch', threshold: '50%', measure: 'hours', used: '2.50 h', budgeted: '4.00 h', percent_used: '62.50%' } });
    expect((await check()).result.n).toBe(0); // once
    await commitAs(member, (c) => logTime(c, e.engagementId, '2026-05-11', 240)); // 6.5 h, 975
    await commitAs(own, (c) => approveTime(c, e.engagementId));
    expect((await check()).result.n).toBe(2); // hours 100; money 50
    const alerts = await asVisitor(own, async (c) => (await c.query('select measure, threshold from app_public.budget_alerts where budget_id = $1 order by measure, threshold', [b.id])).rows);
    expect(alerts).toEqual([{ measure: 'amount', threshold: 50 }, { measure: 'hours', threshold: 50 }, { measure: 'hours', threshold: 100 }]);
    // Nobody but the worker records them.
    await asVisitor(own, async (c) => {
      expect(await attempt(c, 'select app_private.check_budget_thresholds($1)', [[e.engagementId]])).toBe('42501');
      expect(await attempt(c, `insert into app_public.budget_alerts (budget_id, period_start, measure, threshold, percent_used, used, budgeted) values ($1, '2026-05-01', 'hours', 10, 1, 1, 1)`, [b.id])).toBe('42501');
    });
  });

  test('end to end: approving a week that crosses a threshold makes the worker record the alert and send the webhook event', async () => {
    const e = await commitAs(own, (c) => signedEngagement(c, 'alerts-e2e'));
    const b = await commitAs(own, (c) => budget(c, { engagement_id: e.engagementId, name: 'Sprint', kind: 'time_and_materials', hours: 2, thresholds: [100], starts_on: '2026-06-01' }));
    const endpoint = await commitAs(own, async (c) => (await one<{ endpoint_id: string }>(c, `select endpoint_id from app_public.create_webhook_endpoint('https://hooks.example.test/budgets', array['budget.threshold_crossed'])`)).endpoint_id);
    const worker: WorkerHandle = await startWorker({ connectionString: urlFor('worker'), concurrency: 2, log: testLogger('budgets-worker'), crontab: false, webhooks: { timeoutMs: 500, allowPrivateNetworks: false } });
    try {
      await commitAs(member, (c) => logTime(c, e.engagementId, '2026-06-02', 180));
      await commitAs(own, (c) => approveTime(c, e.engagementId));
      const deadline = Date.now() + 30_000;
      let delivered: Array<{ event_type: string; payload: { data: { object: { threshold: number; measure: string } } } }> = [];
      while (Date.now() < deadline) {
        // (Only this budget's: the worker also dispatches what earlier tests left queued.)
        delivered = (await pool('owner').query(`select event_type, payload from app_public.webhook_deliveries where endpoint_id = $1 and payload -> 'data' -> 'object' ->> 'budget_id' = $2`, [endpoint, b.id])).rows;
        if (delivered.length > 0) break;
        await sleep(100);
      }
      expect(delivered).toHaveLength(1);
      expect(delivered[0]).toMatchObject({ event_type: 'budget.threshold_crossed', payload: { data: { object: { budget_id: b.id, threshold: 100, measure: 'hours' } } } });
    } finally {
      await worker.stop();
    }
  });
});

describe('a capped budget bounds billing', () => {
  test('sending past the cap is refused; credit notes make room, write-offs do not; other currencies and project caps are not counted; a scheduled invoice stays a draft', async () => {
    const e = await commitAs(own, (c) => signedEngagement(c, 'cap'));
    await commitAs(own, (c) => budget(c, { engagement_id: e.engagementId, name: 'Cap', kind: 'capped', amount: 1000, starts_on: '2026-01-01' }));
    const draft = (c: pg.PoolClient, price: number, currency?: string) => one<{ id: string }>(c,
      `select id from app_public.create_invoice_with_lines($1, array[row('Work', 1, $3, null)]::app_public.document_line[], engagement_id => $2, currency => $4)`,
      [e.clientId, e.engagementId, price, currency ?? null]);
    await asVisitor(own, async (c) => {
      const first = await draft(c, 600);
      expect(await attempt(c, 'select app_public.send_invoice($1)', [first.id])).toBeNull();
      const second = await draft(c, 500);
      expect(await attempt(c, 'select app_public.send_invoice($1)', [second.id])).toBe('AT468'); // 600 + 500 > 1,000
      const error = await c.query('select app_public.send_invoice($1)', [second.id]).catch((x: Error) => x.message);
      expect(error).toBe('Sending this invoice would bill 1100.00 in all against the budget "Cap", whose cap is 1000.00: 600.00 billed before, 500.00 net on this invoice. Lower the invoice or raise the cap.');
    });
    await asVisitor(own, async (c) => {
      const first = await draft(c, 600);
      await c.query('select app_public.send_invoice($1)', [first.id]);
      const second = await draft(c, 500);
      // (Both drafts of the previous transaction rolled back: 600 billed here.)
      await c.query(`select app_public.issue_credit_note($1, 200, 'Goodwill')`, [first.id]);
      expect(await attempt(c, 'select app_public.send_invoice($1)', [second.id])).toBeNull(); // 600 − 200 + 500 = 900
      const third = await draft(c, 150);
      expect(await attempt(c, 'select app_public.send_invoice($1)', [third.id])).toBe('AT468'); // 1,050
      await c.query(`select app_public.write_off_invoice($1, 'Lost')`, [second.id]);
      expect(await attempt(c, 'select app_public.send_invoice($1)', [third.id])).toBe('AT468'); // a write-off unbills nothing
      const euros = await draft(c, 5000, 'EUR');
      expect(await attempt(c, 'select app_public.send_invoice($1)', [euros.id])).toBeNull(); // the cap is in the engagement's currency
      // A schedule sending at once: its invoice over the cap stays a draft.
      const schedule = await one<{ id: string }>(c,
        `insert into app_public.invoice_schedules (engagement_id, kind, description, amount, next_run_on, auto_send) values ($1, 'fixed', 'Milestone fee', 400, current_date, true) returning id`, [e.engagementId]);
      const made = (await c.query('select status from app_public.invoice_schedule_now($1)', [schedule.id])).rows;
      expect(made).toEqual([{ status: 'draft' }]);
    });
  });
});

describe('isolation', () => {
  test('another organization neither sees these budgets and alerts nor budgets this organization\'s engagement', async () => {
    await asVisitor(sessionOf(other.owner, other.orgId), async (c) => {
      expect((await c.query('select id from app_public.budgets where organization_id = $1', [t.orgId])).rowCount).toBe(0);
      expect((await c.query('select id from app_public.budget_alerts where organization_id = $1', [t.orgId])).rowCount).toBe(0);
      expect(await attempt(c, `insert into app_public.budgets (engagement_id, name, kind, hours) values ($1, 'Theirs', 'time_and_materials', 5)`, [t.engagementId])).toBe('23503');
    });
  });
});
