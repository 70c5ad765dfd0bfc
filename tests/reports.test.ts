// Reports (sql/functions/reports.sql): utilization against effective-dated capacity, unbilled
// work, receivables aging, engagement profitability and the pipeline — each checked against
// numbers made here, read as the caller may (row-level security), isolated per organization,
// and reachable through GraphQL.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import { gql, startTestApp, tokenFor } from './support/app.ts';
import { asVisitor, attempt, closePools, sessionOf, type Session } from './support/db.ts';
import { approveTime, commitAs, memberIdOf, one, oneTenant, signedEngagement, type Tenant } from './support/fixtures.ts';

let t: Tenant;
let other: Tenant;
let own: Session;
let member: Session;
let memberId: string;
let e: Awaited<ReturnType<typeof signedEngagement>>;
beforeAll(async () => {
  [t, other] = await Promise.all([oneTenant('reports'), oneTenant('reports-other')]);
  own = sessionOf(t.owner, t.orgId);
  member = sessionOf(t.member, t.orgId);
  memberId = await memberIdOf(t, t.member);
  e = await commitAs(own, (c) => signedEngagement(c, 'reports')); // 150/h
}, 90_000);
afterAll(closePools);

const rows = <T>(session: Session, sql: string, params: unknown[] = []) =>
  asVisitor(session, async (c) => (await c.query<{ r: T }>(`select to_jsonb(r) as r from ${sql} r`, params)).rows.map((x) => x.r));
const logTime = (c: pg.PoolClient, workDate: string, minutes: number, billable = true) =>
  c.query('insert into app_public.time_entries (engagement_id, member_id, work_date, minutes, billable) values ($1, $2, $3, $4, $5)', [e.engagementId, memberId, workDate, minutes, billable]);

describe('utilization', () => {
  test('billable hours against the capacity in force each weekday; a period is bounded', async () => {
    await commitAs(own, async (c) => {
      await c.query(`insert into app_public.member_capacities (member_id, weekly_hours, effective_from) values ($1, 40, '2026-01-01'), ($1, 20, '2026-08-03')`, [memberId]);
      await c.query(`insert into app_public.member_cost_rates (member_id, hourly_cost, effective_from) values ($1, 50, '2026-01-01')`, [memberId]);
      await logTime(c, '2026-08-03', 600); // 10 h billable
      await logTime(c, '2026-08-04', 120, false); // 2 h internal
    });
    const week = await rows<{ member_id: string; capacity_hours: number; hours: number; billable_hours: number; utilization_percent: number; billable_percent: number }>(
      own, `app_public.report_utilization('2026-08-03', '2026-08-09')`);
    expect(week.find((r) => r.member_id === memberId)).toMatchObject({ capacity_hours: 20, hours: 12, billable_hours: 10, utilization_percent: 50, billable_percent: 83.3 });
    const fortnight = await rows<{ member_id: string; capacity_hours: number }>(own, `app_public.report_utilization('2026-07-27', '2026-08-09')`);
    expect(fortnight.find((r) => r.member_id === memberId)?.capacity_hours).toBe(60); // 5 × 8 h, then 5 × 4 h
    await asVisitor(own, async (c) => {
      expect(await attempt(c, `select * from app_public.report_utilization('2026-08-09', '2026-08-03')`)).toBe('22023');
      expect(await attempt(c, `select * from app_public.report_utilization('2025-01-01', '2026-08-03')`)).toBe('22023');
    });
    // The billing clerk reads neither time nor capacities: nothing to report.
    expect(await rows(sessionOf(t.clerk, t.orgId), `app_public.report_utilization('2026-08-03', '2026-08-09')`)).toEqual([]);
  });
});

describe('unbilled work', () => {
  test('approved billable time and expenses not invoiced, and hours waiting for approval', async () => {
    await commitAs(own, (c) => approveTime(c, e.engagementId)); // the week of August 3
    await commitAs(member, (c) => logTime(c, '2026-08-12', 180)); // 3 h, not submitted
    await commitAs(own, async (c) => {
      const travel = await one<{ id: string }>(c, `select id from app_public.expense_categories where name = 'Travel'`);
      const x = await one<{ id: string }>(c, `insert into app_public.expenses (member_id, category_id, engagement_id, incurred_on, description, amount) values ($1, $2, $3, '2026-08-05', 'Train', 100) returning id`, [memberId, travel.id, e.engagementId]);
      await c.query('select app_public.submit_expense($1)', [x.id]);
      await c.query('select app_public.approve_expense($1)', [x.id]);
    });
    const report = async (session = own) => (await rows<Record<string, unknown>>(session, 'app_public.report_unbilled_work()')).find((r) => r.engagement_id === e.engagementId);
    expect(await report()).toMatchObject({ unbilled_hours: 10, unbilled_time_amount: 1500, unbilled_expenses_amount: 110, unbilled_amount: 1610, awaiting_approval_hours: 3 });
    // Another organization sees none of it.
    expect(await report(sessionOf(other.owner, other.orgId))).toBeUndefined();
  });
});

describe('receivables aging', () => {
  test('open balances per client and currency by days past due, and in the base currency', async () => {
    const client = await commitAs(own, (c) => signedEngagement(c, 'aging'));
    await commitAs(own, async (c) => {
      const invoice = async (due: string, price: number, currency?: string) => {
        const { id } = await one<{ id: string }>(c, `insert into app_public.invoices (client_company_id, issued_on, due_on, currency) values ($1, $2::date - 30, $2, $3) returning id`, [client.clientId, due, currency ?? null]);
        await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Work', 1, $2)`, [id, price]);
        await c.query('select app_public.send_invoice($1)', [id]);
        return id;
      };
      await invoice('2026-06-05', 100); // not due on June 1
      const late = await invoice('2026-05-20', 200); // 12 days late
      await c.query(`select app_public.record_payment($1, 50, '2026-05-25')`, [late]);
      await invoice('2026-04-17', 300); // 45 days
      await invoice('2026-02-21', 400); // 100 days
      await invoice('2026-05-31', 100, 'EUR'); // 1 day, in euros
    });
    const aging = (await rows<Record<string, unknown>>(own, `app_public.report_receivables_aging('2026-06-01')`)).filter((r) => r.client_company_id === client.clientId);
    expect(aging).toHaveLength(2);
    const base = aging.find((r) => r.currency !== 'EUR')!;
    expect(base).toMatchObject({ invoices: 4, current_amount: 100, days_1_to_30: 150, days_31_to_60: 300, days_61_to_90: 0, days_over_90: 400, total: 950, total_in_base_currency: 950 });
    expect(aging.find((r) => r.currency === 'EUR')).toMatchObject({ invoices: 1, days_1_to_30: 100, total: 100, total_in_base_currency: 108 }); // 1.08 from January (fixtures)
    // Another organization sees none of it.
    expect((await rows<Record<string, unknown>>(sessionOf(other.owner, other.orgId), `app_public.report_receivables_aging('2026-06-01')`)).filter((r) => r.client_company_id === client.clientId)).toEqual([]);
  });
});

describe('profitability', () => {
  test('invoiced time leaves the unbilled work; revenue net of credit notes against time at cost, expenses and bills; needs costs.read', async () => {
    await commitAs(own, async (c) => {
      const invoice = await one<{ id: string }>(c, 'select id from app_public.create_invoice_from_time($1)', [e.engagementId]); // the approved 10 h: 1,500
      await c.query(`update app_public.invoices set issued_on = '2026-08-10' where id = $1`, [invoice.id]);
      await c.query('select app_public.send_invoice($1)', [invoice.id]);
      await c.query(`select app_public.issue_credit_note($1, 100, 'Goodwill', '2026-08-20')`, [invoice.id]);
      const vendor = await one<{ id: string }>(c, `insert into app_public.vendors (name) values ('Printer') returning id`);
      const bill = await one<{ id: string }>(c, `insert into app_public.bills (vendor_id, engagement_id, amount, issued_on) values ($1, $2, 200, '2026-08-06') returning id`, [vendor.id, e.engagementId]);
      await c.query('select app_public.approve_bill($1)', [bill.id]);
    });
    // Invoiced: the approved time is no longer unbilled (the expense still is).
    expect((await rows<Record<string, unknown>>(own, 'app_public.report_unbilled_work()')).find((r) => r.engagement_id === e.engagementId))
      .toMatchObject({ unbilled_hours: 0, unbilled_time_amount: 0, unbilled_expenses_amount: 110, awaiting_approval_hours: 3 });
    const [row] = (await rows<Record<string, unknown>>(own, `app_public.report_engagement_profitability('2026-08-01', '2026-08-31')`)).filter((r) => r.engagement_id === e.engagementId);
    // Time: 10 + 2 + 3 h at 50/h = 750; expenses 100 (what the firm spent, not the markup); bill 200.
    expect(row).toMatchObject({ revenue: 1400, time_cost: 750, expense_cost: 100, bill_cost: 200, cost: 1050, margin: 350, margin_percent: 25, hours: 15 });
    expect(await asVisitor(member, (c) => attempt(c, `select * from app_public.report_engagement_profitability('2026-08-01', '2026-08-31')`))).toBe('AT403');
  });
});

describe('pipeline', () => {
  test('deals per stage with their value and weighted value, over GraphQL too', async () => {
    const before = await rows<{ stage: string; deals: number; value: number; weighted_value: number }>(own, 'app_public.report_pipeline()');
    await commitAs(own, (c) => c.query(`insert into app_public.deals (client_company_id, title, stage, value, probability) values ($1, 'A', 'qualified', 1000, 50), ($1, 'B', 'qualified', 3000, 10)`, [e.clientId]));
    const after = await rows<{ stage: string; deals: number; value: number; weighted_value: number }>(own, 'app_public.report_pipeline()');
    const qualified = (list: typeof before) => list.find((r) => r.stage === 'qualified') ?? { deals: 0, value: 0, weighted_value: 0 };
    expect(qualified(after).deals - qualified(before).deals).toBe(2);
    expect(qualified(after).value - qualified(before).value).toBe(4000);
    expect(qualified(after).weighted_value - qualified(before).weighted_value).toBe(800);
    expect((await rows(sessionOf(other.owner, other.orgId), 'app_public.report_pipeline()')).find((r: any) => r.stage === 'qualified' && r.value >= 4000)).toBeUndefined();

    const app = await startTestApp();
    try {
      const res = await gql<any>(app.url!, `{
        reportPipeline { nodes { stage deals value weightedValue } }
        reportUnbilledWork { nodes { engagementId unbilledAmount } }
        reportReceivablesAging(asOf: "2026-06-01") { nodes { clientName total } }
        reportUtilization(fromOn: "2026-08-03", toOn: "2026-08-09") { nodes { memberId utilizationPercent } }
        reportEngagementProfitability(fromOn: "2026-08-01", toOn: "2026-08-31") { nodes { engagementId margin } }
      }`, {}, await tokenFor(t.owner, t.orgId));
      expect(res.errors).toBeUndefined();
      expect(res.data.reportPipeline.nodes.find((n: { stage: string }) => n.stage === 'qualified')).toMatchObject({ deals: qualified(after).deals });
      expect(res.data.reportEngagementProfitability.nodes.find((n: { engagementId: string }) => n.engagementId === e.engagementId)).toMatchObject({ margin: '350.00' });
    } finally {
      await app.stop();
    }
  });
});
