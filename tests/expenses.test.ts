// Expenses (sql/functions/expenses.sql): categories with billable defaults and markup; a member's
// expense submitted, approved (expenses.approve) or rejected with a reason, frozen while
// submitted or approved; billable expenses re-billed on a draft invoice of their engagement, a
// line each, made invoiceable again when the line goes or the invoice is cancelled.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import { asVisitor, attempt, closePools, sessionOf, type Session } from './support/db.ts';
import { commitAs, memberIdOf, one, oneTenant, signedEngagement, type Tenant } from './support/fixtures.ts';

let t: Tenant;
let other: Tenant;
let own: Session;
let admin: Session;
let member: Session;
let viewer: Session;
let memberId: string;
let travelId: string;
let softwareId: string;
beforeAll(async () => {
  [t, other] = await Promise.all([oneTenant('expenses'), oneTenant('expenses-other')]);
  own = sessionOf(t.owner, t.orgId);
  admin = sessionOf(t.admin, t.orgId);
  member = sessionOf(t.member, t.orgId);
  viewer = sessionOf(t.viewer, t.orgId);
  ({ memberId, travelId, softwareId } = await commitAs(own, async (c) => ({
    memberId: await memberIdOf(t, t.member),
    travelId: (await one<{ id: string }>(c, `select id from app_public.expense_categories where name = 'Travel'`)).id,
    softwareId: (await one<{ id: string }>(c, `insert into app_public.expense_categories (name) values ('Software') returning id`)).id,
  })));
}, 90_000);
afterAll(closePools);

interface Expense { id: string; status: string; member_id: string; billable: boolean; markup_percent: string; billable_amount: string; currency: string; invoice_line_item_id: string | null }

const file = (c: pg.PoolClient, values: Record<string, unknown>) => {
  const columns = Object.keys(values);
  return one<Expense>(c, `insert into app_public.expenses (${columns.join(', ')}) values (${columns.map((_, i) => `$${i + 1}`).join(', ')}) returning *`, Object.values(values));
};
const call = (session: Session, fn: string, id: string, ...args: unknown[]) =>
  commitAs(session, (c) => one<Expense>(c, `select * from app_public.${fn}($1${args.map((_, i) => `, $${i + 2}`).join('')})`, [id, ...args]));

describe('an expense', () => {
  test('takes billable and markup from its category unless given, its member is the one who files it, its currency the engagement\'s', async () => {
    await commitAs(member, async (c) => {
      const train = await file(c, { category_id: travelId, engagement_id: t.engagementId, description: 'Train', amount: 80 });
      expect(train).toMatchObject({ member_id: memberId, billable: true, markup_percent: '10.00', billable_amount: '88.00', status: 'draft' });
      expect(train.currency).toBe((await one<{ currency: string }>(c, 'select currency from app_public.engagements where id = $1', [t.engagementId])).currency);
      const licence = await file(c, { category_id: softwareId, description: 'Font licence', amount: 30 });
      expect(licence).toMatchObject({ billable: false, markup_percent: '0.00', billable_amount: '0.00' });
      const given = await file(c, { category_id: travelId, engagement_id: t.engagementId, description: 'Taxi', amount: 20, markup_percent: 0, currency: 'EUR' });
      expect(given).toMatchObject({ billable: true, billable_amount: '20.00', currency: 'EUR' });
      // Billable needs an engagement to bill; nothing is free; currencies are ISO codes.
      expect(await attempt(c, `insert into app_public.expenses (category_id, description, amount, billable) values ($1, 'Hotel', 100, true)`, [travelId])).toBe('23514');
      expect(await attempt(c, `insert into app_public.expenses (category_id, description, amount) values ($1, 'Nothing', 0)`, [softwareId])).toBe('23514');
      // Its currency is fixed once created.
      expect(await attempt(c, `update app_public.expenses set currency = 'USD' where id = $1`, [given.id])).toBe('42501');
    });
  });

  test('a member files their own; another member\'s only with expenses.approve; a viewer files none', async () => {
    await asVisitor(member, async (c) => {
      const adminMemberId = await memberIdOf(t, t.admin);
      expect(await attempt(c, `insert into app_public.expenses (member_id, category_id, description, amount) values ($1, $2, 'For you', 10)`, [adminMemberId, softwareId])).toBe('AT541');
    });
    await asVisitor(admin, async (c) => {
      expect((await file(c, { member_id: memberId, category_id: softwareId, description: 'Filed for the member', amount: 10 })).member_id).toBe(memberId);
    });
    await asVisitor(viewer, async (c) => {
      expect(await attempt(c, `insert into app_public.expenses (category_id, description, amount) values ($1, 'Viewer', 10)`, [softwareId])).toBe('42501');
      expect((await c.query('select id from app_public.expenses')).rowCount).toBeGreaterThan(0);
    });
  });
});

describe('approval', () => {
  test('submitted: frozen (no change, no delete); approved by someone else holding expenses.approve; a rejection needs a reason and opens it again', async () => {
    const draft = await commitAs(member, (c) => file(c, { category_id: travelId, engagement_id: t.engagementId, description: 'Hotel', amount: 120 }));
    expect((await call(member, 'submit_expense', draft.id)).status).toBe('submitted');
    await asVisitor(member, async (c) => {
      expect(await attempt(c, 'update app_public.expenses set amount = 1 where id = $1', [draft.id])).toBe('AT451');
      expect(await attempt(c, 'select app_public.soft_delete_expense($1)', [draft.id])).toBe('AT451');
      expect(await attempt(c, 'select app_public.submit_expense($1)', [draft.id])).toBe('AT450');
      expect(await attempt(c, 'select app_public.approve_expense($1)', [draft.id])).toBe('AT403'); // no expenses.approve
    });
    await asVisitor(admin, async (c) => {
      expect(await attempt(c, `select app_public.reject_expense($1, '  ')`, [draft.id])).toBe('22023');
    });
    const rejected = await call(admin, 'reject_expense', draft.id, 'No receipt');
    expect(rejected).toMatchObject({ status: 'rejected' });
    await commitAs(member, (c) => c.query('update app_public.expenses set amount = 110 where id = $1', [draft.id]));
    expect((await call(member, 'submit_expense', draft.id)).status).toBe('submitted');
    const approved = await call(admin, 'approve_expense', draft.id);
    expect(approved).toMatchObject({ status: 'approved', billable_amount: '121.00' });
    expect(await asVisitor(admin, (c) => attempt(c, 'select app_public.approve_expense($1)', [draft.id]))).toBe('AT450');
    await asVisitor(member, async (c) => {
      expect(await attempt(c, 'update app_public.expenses set description = $2 where id = $1', [draft.id, 'changed'])).toBe('AT451');
    });
  });

  test('one\'s own expense is approved by someone else, unless one is an owner or admin', async () => {
    const approver = await commitAs(own, async (c) => {
      const role = await one<{ id: string }>(c, `insert into app_public.roles (name) values ('Expense approver') returning id`);
      await c.query(`insert into app_public.role_permissions (role_id, permission_key) select $1, unnest(array['expenses.read', 'expenses.write', 'expenses.approve'])`, [role.id]);
      await c.query('insert into app_public.role_assignments (member_id, role_id) values ($1, $2)', [memberId, role.id]);
      return role.id;
    });
    try {
      const mine = await commitAs(member, (c) => file(c, { category_id: softwareId, description: 'Plugin', amount: 15 }));
      await call(member, 'submit_expense', mine.id);
      expect(await asVisitor(member, (c) => attempt(c, 'select app_public.approve_expense($1)', [mine.id]))).toBe('AT403');
      const adminsOwn = await commitAs(admin, (c) => file(c, { category_id: softwareId, description: 'Admin plugin', amount: 15 }));
      await call(admin, 'submit_expense', adminsOwn.id);
      expect((await call(admin, 'approve_expense', adminsOwn.id)).status).toBe('approved');
      expect((await call(member, 'approve_expense', (await commitAs(admin, (c) => file(c, { category_id: softwareId, description: 'Another', amount: 5 }))).id).catch((e) => e.code))).toBe('AT450'); // a draft is not approved
    } finally {
      await commitAs(own, (c) => c.query('delete from app_public.role_assignments where member_id = $1 and role_id = $2', [memberId, approver]));
    }
  });
});

describe('re-billing', () => {
  test('approved billable expenses of the invoice\'s engagement and currency become lines at amount plus markup, once; the line\'s removal or the invoice\'s cancellation frees them', async () => {
    const e = await commitAs(own, (c) => signedEngagement(c, 'rebill'));
    const [train, lunch, euro] = await commitAs(member, async (c) => [
      await file(c, { category_id: travelId, engagement_id: e.engagementId, incurred_on: '2026-02-03', description: 'Train', amount: 80 }),
      await file(c, { category_id: softwareId, engagement_id: e.engagementId, incurred_on: '2026-02-04', description: 'Lunch', amount: 40 }),
      await file(c, { category_id: travelId, engagement_id: e.engagementId, incurred_on: '2026-02-05', description: 'Paris metro', amount: 10, currency: 'EUR' }),
    ]);
    const pending = await commitAs(member, (c) => file(c, { category_id: travelId, engagement_id: e.engagementId, description: 'Not approved yet', amount: 5 }));
    for (const x of [train, lunch, euro]) {
      await call(member, 'submit_expense', x.id);
      await call(admin, 'approve_expense', x.id);
    }
    await call(member, 'submit_expense', pending.id);
    const invoiceId = await commitAs(own, async (c) => (await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id, engagement_id) values ($1, $2) returning id', [e.clientId, e.engagementId])).id);

    // Without expenses.read (the billing clerk), or in another organization: refused.
    await asVisitor(sessionOf(t.clerk, t.orgId), async (c) => expect(await attempt(c, 'select app_public.add_expenses_to_invoice($1)', [invoiceId])).toBe('AT403'));
    await asVisitor(sessionOf(other.owner, other.orgId), async (c) => expect(await attempt(c, 'select app_public.add_expenses_to_invoice($1)', [invoiceId])).toBe('AT404'));

    const invoice = await commitAs(own, (c) => one<{ subtotal: string; currency: string }>(c, 'select subtotal, currency from app_public.add_expenses_to_invoice($1)', [invoiceId]));
    expect(invoice.subtotal).toBe('88.00'); // the train (80 + 10%); lunch is not billable, the metro is in EUR, one is not approved
    await asVisitor(own, async (c) => {
      const lines = (await c.query('select id, description, quantity, unit_price from app_public.invoice_line_items where invoice_id = $1', [invoiceId])).rows;
      expect(lines).toEqual([{ id: expect.any(String), description: 'Expense, Travel: Train (2026-02-03)', quantity: '1.00', unit_price: '88.00' }]);
      expect((await one<Expense>(c, 'select * from app_public.expenses where id = $1', [train.id])).invoice_line_item_id).toBe(lines[0].id);
      expect(await attempt(c, 'select app_public.add_expenses_to_invoice($1)', [invoiceId])).toBe('AT462'); // nothing left
      expect(await attempt(c, `select app_public.reject_expense($1, 'wrong')`, [train.id])).toBe('AT451'); // invoiced
      // The line deleted: the train is invoiceable again.
      await c.query('delete from app_public.invoice_line_items where id = $1', [lines[0].id]);
      expect((await one<Expense>(c, 'select * from app_public.expenses where id = $1', [train.id])).invoice_line_item_id).toBeNull();
      await c.query('select app_public.add_expenses_to_invoice($1)', [invoiceId]);
      await c.query('select app_public.send_invoice($1)', [invoiceId]);
      expect(await attempt(c, 'select app_public.add_expenses_to_invoice($1)', [invoiceId])).toBe('AT451'); // not a draft
      await c.query('select app_public.cancel_invoice($1)', [invoiceId]);
      expect((await one<Expense>(c, 'select * from app_public.expenses where id = $1', [train.id])).invoice_line_item_id).toBeNull();
    });
  });
});

describe('vendor bills re-billed', () => {
  test('an approved bill marked rebill becomes a line at its amount, after the expenses; a pending or unmarked one does not; cancelling the invoice frees it', async () => {
    const e = await commitAs(own, (c) => signedEngagement(c, 'rebill-bills'));
    const [marked, pending, unmarked] = await commitAs(own, async (c) => {
      const vendor = await one<{ id: string }>(c, `insert into app_public.vendors (name) values ('Print Shop') returning id`);
      const bill = (description: string, rebill: boolean) => one<{ id: string }>(c,
        `insert into app_public.bills (vendor_id, engagement_id, description, amount, issued_on, rebill) values ($1, $2, $3, 300, '2026-02-10', $4) returning id`,
        [vendor.id, e.engagementId, description, rebill]);
      const made = [await bill('Brochures', true), await bill('Posters', true), await bill('Office paper', false)];
      await c.query('select app_public.approve_bill($1)', [made[0]!.id]);
      await c.query('select app_public.approve_bill($1)', [made[2]!.id]);
      return made;
    });
    const invoiceId = await commitAs(own, async (c) => (await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id, engagement_id) values ($1, $2) returning id', [e.clientId, e.engagementId])).id);
    await asVisitor(own, async (c) => {
      const invoice = await one<{ subtotal: string }>(c, 'select subtotal from app_public.add_expenses_to_invoice($1)', [invoiceId]);
      expect(invoice.subtotal).toBe('300.00');
      const lines = (await c.query('select id, description, unit_price from app_public.invoice_line_items where invoice_id = $1', [invoiceId])).rows;
      expect(lines).toEqual([{ id: expect.any(String), description: 'Vendor bill, Print Shop: Brochures (2026-02-10)', unit_price: '300.00' }]);
      const linked = async (id: string) => (await one<{ l: string | null }>(c, 'select invoice_line_item_id as l from app_public.bills where id = $1', [id])).l;
      expect([await linked(marked!.id), await linked(pending!.id), await linked(unmarked!.id)]).toEqual([lines[0].id, null, null]);
      // Once re-billed, its rebill mark stays (the check); sending and cancelling frees it.
      expect(await attempt(c, 'update app_public.bills set rebill = false where id = $1', [marked!.id])).toBe('23514');
      await c.query('select app_public.send_invoice($1)', [invoiceId]);
      await c.query('select app_public.cancel_invoice($1)', [invoiceId]);
      expect(await linked(marked!.id)).toBeNull();
    });
  });
});

describe('isolation', () => {
  test('another organization neither sees, submits, approves nor rejects these expenses', async () => {
    const mine = await commitAs(member, (c) => file(c, { category_id: softwareId, description: 'Private', amount: 9 }));
    await asVisitor(sessionOf(other.owner, other.orgId), async (c) => {
      expect((await c.query('select id from app_public.expenses where id = $1', [mine.id])).rowCount).toBe(0);
      expect((await c.query('select id from app_public.expense_categories where id = $1', [travelId])).rowCount).toBe(0);
      for (const sql of ['select app_public.submit_expense($1)', 'select app_public.approve_expense($1)', `select app_public.reject_expense($1, 'no')`]) {
        expect(await attempt(c, sql, [mine.id])).toBe('AT404');
      }
      // Nor files one under this organization's category.
      expect(await attempt(c, `insert into app_public.expenses (category_id, description, amount) values ($1, 'Sneaky', 1)`, [travelId])).toBe('23503');
    });
  });
});
