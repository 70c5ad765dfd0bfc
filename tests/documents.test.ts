// Documents created whole (sql/functions/documents.sql): a proposal or an invoice with its lines
// in one mutation — all or nothing, with the caller's permissions, in the caller's organization.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { Atrium } from '../src/index.ts';
import { gql, startTestApp, tokenFor } from './support/app.ts';
import { asVisitor, attempt, closePools, pool, sessionOf } from './support/db.ts';
import { commitAs, one, oneTenant, signedEngagement, type Tenant } from './support/fixtures.ts';

let t: Tenant;
let other: Tenant;
let app: Atrium;
beforeAll(async () => {
  [t, other, app] = await Promise.all([oneTenant('documents'), oneTenant('documents-other'), startTestApp()]);
}, 90_000);
afterAll(async () => {
  await app?.stop();
  await closePools();
});

const CREATE_INVOICE = `mutation($c: UUID!, $e: UUID, $lines: [DocumentLineInput]!, $tax: BigFloat) {
  createInvoiceWithLines(input: { clientCompanyId: $c, engagementId: $e, lines: $lines, taxRate: $tax }) {
    invoice { rowId status subtotal taxAmount total currency invoiceLineItems(orderBy: POSITION_ASC) { nodes { position description quantity unitPrice amount } } }
  }
}`;
const invoices = async (orgId: string) => Number((await pool('owner').query('select count(*) from app_public.invoices where organization_id = $1', [orgId])).rows[0].count);

describe('an invoice with its lines', () => {
  test('one request makes the draft and every line, in order, with the totals the triggers keep', async () => {
    const res = await gql<any>(app.url!, CREATE_INVOICE, {
      c: t.clientId, e: t.engagementId, tax: '10',
      lines: [{ description: 'Design', quantity: '10', unitPrice: '150' }, { description: 'Hosting', unitPrice: '49' }],
    }, await tokenFor(t.owner, t.orgId));
    expect(res.errors).toBeUndefined();
    const invoice = res.data.createInvoiceWithLines.invoice;
    expect(invoice).toMatchObject({ status: 'draft', subtotal: '1549.00', taxAmount: '154.90', total: '1703.90' });
    expect(invoice.invoiceLineItems.nodes).toEqual([
      { position: 1, description: 'Design', quantity: '10.00', unitPrice: '150.00', amount: '1500.00' },
      { position: 2, description: 'Hosting', quantity: '1.00', unitPrice: '49.00', amount: '49.00' },
    ]);
  });

  test('all or nothing: a bad line, no line, or a line without a price leaves no invoice behind', async () => {
    const token = await tokenFor(t.owner, t.orgId);
    const before = await invoices(t.orgId);
    const cases: Array<[unknown[], string]> = [
      [[{ description: 'Fine', unitPrice: '10' }, { description: 'Refund?', unitPrice: '-5' }], 'CONSTRAINT_VIOLATION'],
      [[], 'EMPTY_DOCUMENT'],
      [[{ description: 'No price' }], 'INVALID_VALUE'],
    ];
    for (const [lines, code] of cases) {
      const res = await gql<any>(app.url!, CREATE_INVOICE, { c: t.clientId, lines }, token);
      expect(res.errors?.[0]?.extensions?.code).toBe(code);
    }
    expect(await invoices(t.orgId)).toBe(before);
  });

  test('with the caller\'s permissions and organization only: a viewer makes none; another organization\'s client is not found', async () => {
    const [before, theirsBefore] = [await invoices(t.orgId), await invoices(other.orgId)];
    const viewer = await gql<any>(app.url!, CREATE_INVOICE, { c: t.clientId, lines: [{ description: 'x', unitPrice: '1' }] }, await tokenFor(t.viewer, t.orgId));
    expect(viewer.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const theirs = await gql<any>(app.url!, CREATE_INVOICE, { c: t.clientId, lines: [{ description: 'x', unitPrice: '1' }] }, await tokenFor(other.owner, other.orgId));
    expect(theirs.errors?.[0]?.extensions?.code).toBe('INVALID_REFERENCE');
    expect(await invoices(t.orgId)).toBe(before);
    expect(await invoices(other.orgId)).toBe(theirsBefore);
  });
});

describe('a proposal with its lines', () => {
  test('made whole, sent like any proposal', async () => {
    await asVisitor(sessionOf(t.owner, t.orgId), async (c) => {
      const { rows } = await c.query(
        `select id, status, subtotal from app_public.create_proposal_with_lines($1, 'Website', array[row('Discovery', 2, 1200, null), row('Build', null, 8000, null)]::app_public.document_line[])`,
        [t.clientId],
      );
      expect(rows[0]).toMatchObject({ status: 'draft', subtotal: '10400.00' });
      expect((await c.query('select position, quantity from app_public.proposal_line_items where proposal_id = $1 order by position', [rows[0].id])).rows)
        .toEqual([{ position: 1, quantity: '2.00' }, { position: 2, quantity: '1.00' }]);
      expect(await attempt(c, 'select app_public.send_proposal($1)', [rows[0].id])).toBeNull();
      expect(await attempt(c, `select app_public.create_proposal_with_lines($1, 'Empty', '{}')`, [t.clientId])).toBe('AT462');
    });
  });
});

describe('a project template with its milestones and tasks', () => {
  test('made whole, each task under the milestone it names; an unknown milestone leaves nothing behind', async () => {
    await asVisitor(sessionOf(t.member, t.orgId), async (c) => {
      const template = await one<{ id: string }>(c,
        `select id from app_public.create_project_template_with_tasks('Brand refresh',
           array[row('Audit', 'Strategy agreed', 3, 240, 'high', null), row('Moodboards', 'Strategy agreed', 10, 480, null, null), row('Handover', null, 30, 60, null, 'Files and guidelines')]::app_public.template_task_line[],
           'Four weeks', array[row('Strategy agreed', 14)]::app_public.template_milestone_line[])`);
      const tasks = (await c.query(
        `select k.title, k.position, k.priority, m.name as milestone from app_public.project_template_tasks k
         left join app_public.project_template_milestones m on m.id = k.template_milestone_id where k.template_id = $1 order by k.position`, [template.id])).rows;
      expect(tasks).toEqual([
        { title: 'Audit', position: 1, priority: 'high', milestone: 'Strategy agreed' },
        { title: 'Moodboards', position: 2, priority: 'normal', milestone: 'Strategy agreed' },
        { title: 'Handover', position: 3, priority: 'normal', milestone: null },
      ]);
      const before = Number((await c.query('select count(*) from app_public.project_templates')).rows[0].count);
      expect(await attempt(c, `select app_public.create_project_template_with_tasks('Bad', array[row('Task', 'Nowhere', 0, 60, null, null)]::app_public.template_task_line[])`)).toBe('22023');
      expect(await attempt(c, `select app_public.create_project_template_with_tasks('Empty', '{}')`)).toBe('AT462');
      expect(Number((await c.query('select count(*) from app_public.project_templates')).rows[0].count)).toBe(before);
    });
    expect(await asVisitor(sessionOf(t.viewer, t.orgId), (c) => attempt(c, `select app_public.create_project_template_with_tasks('Viewer', array[row('Task', null, 0, 60, null, null)]::app_public.template_task_line[])`))).toBe('42501');
  });
});

describe('a week of time with its entries', () => {
  test('logged and submitted in one step, priced as if logged one by one; a day outside the week or an entry without a rate leaves nothing behind', async () => {
    const e = await commitAs(sessionOf(t.owner, t.orgId), (c) => signedEngagement(c, 'week')); // 150/h
    const member = sessionOf(t.member, t.orgId);
    const sheet = await commitAs(member, (c) => one<{ id: string; status: string; week_starts_on: string }>(c,
      `select id, status, week_starts_on::text from app_public.submit_timesheet_with_entries('2026-09-09',
         array[row($1, null, '2026-09-07', 240, null, 'Design'), row($1, null, '2026-09-08', 60, false, 'Internal')]::app_public.time_entry_line[])`, [e.engagementId]));
    expect(sheet).toMatchObject({ status: 'submitted', week_starts_on: '2026-09-07' });
    const entries = await asVisitor(member, async (c) => (await c.query(`select work_date::text, minutes, billable, rate from app_public.time_entries where engagement_id = $1 order by work_date`, [e.engagementId])).rows);
    expect(entries).toEqual([
      { work_date: '2026-09-07', minutes: 240, billable: true, rate: '150.00' },
      { work_date: '2026-09-08', minutes: 60, billable: false, rate: '0.00' }, // (not billed: no rate)
    ]);
    // The week is frozen now, like any submitted week.
    expect(await asVisitor(member, (c) => attempt(c,
      `insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) select $1, m.id, '2026-09-09', 30 from app_public.organization_members m where m.user_id = $2`,
      [e.engagementId, t.member.userId]))).toBe('AT451');

    const bare = await commitAs(sessionOf(t.owner, t.orgId), async (c) => {
      const sold = await signedEngagement(c, 'week-bare');
      // No rate anywhere for the member: not on the engagement, no rate card for them or everyone.
      await c.query('update app_public.engagements set hourly_rate = null where id = $1', [sold.engagementId]);
      return sold;
    });
    await asVisitor(member, async (c) => {
      const count = async () => Number((await c.query('select count(*) from app_public.time_entries')).rows[0].count);
      const before = await count();
      expect(await attempt(c, `select app_public.submit_timesheet_with_entries('2026-09-14', array[row($1, null, '2026-09-21', 60, null, null)]::app_public.time_entry_line[])`, [e.engagementId])).toBe('22023');
      expect(await attempt(c, `select app_public.submit_timesheet_with_entries('2026-09-14', array[row($1, null, '2026-09-14', 60, null, null), row($2, null, '2026-09-15', 60, null, null)]::app_public.time_entry_line[])`, [e.engagementId, bare.engagementId])).toBe('AT464');
      expect(await count()).toBe(before);
      expect((await c.query(`select 1 from app_public.timesheets where week_starts_on = '2026-09-14'`)).rowCount).toBe(0);
    });
  });
});
