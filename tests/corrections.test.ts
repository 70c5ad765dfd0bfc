// Corrections of issued invoices (sql/functions/corrections.sql): credit notes, full or partial,
// numbered in their own gapless series; write-offs; refunds; the invoice's balance = total −
// payments (less refunds) − credits, kept and checked in SQL; nothing issued is edited or deleted.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import { asVisitor, attempt, closePools, pgError, pool, sessionOf, type Session } from './support/db.ts';
import { commitAs, one, oneTenant, type Tenant } from './support/fixtures.ts';

let t: Tenant;
let own: Session;
beforeAll(async () => {
  t = await oneTenant('corrections');
  own = sessionOf(t.owner, t.orgId);
}, 60_000);
afterAll(closePools);

interface Invoice { id: string; status: string; total: string; amount_paid: string; amount_credited: string; balance: string }
const invoiceOf = (c: pg.PoolClient, id: string) =>
  one<Invoice>(c, 'select id, status, total, amount_paid, amount_credited, balance from app_public.invoices where id = $1', [id]);

/** A sent invoice of `net` at `taxRate`% (one line), as the owner. */
async function sentInvoice(c: pg.PoolClient, net: number, taxRate = 0): Promise<string> {
  const invoice = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id, engagement_id, tax_rate) values ($1, $2, $3) returning id', [t.clientId, t.engagementId, taxRate]);
  await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Work', 1, $2)`, [invoice.id, net]);
  await c.query('select app_public.send_invoice($1)', [invoice.id]);
  return invoice.id;
}

const credit = (c: pg.PoolClient, invoiceId: string, amount: number | null) =>
  one<{ number: number; kind: string; subtotal: string; tax_amount: string; total: string }>(c, 'select number, kind, subtotal, tax_amount, total from app_public.issue_credit_note($1, $2)', [invoiceId, amount]);

describe('credit notes', () => {
  test('partial, then the rest: tax at the invoice\'s rate, the last credit takes exactly the tax left, the balance reaches zero and the invoice is settled', async () => {
    await asVisitor(own, async (c) => {
      const id = await sentInvoice(c, 999.99, 7.5); // tax 75.00, total 1074.99
      expect(await invoiceOf(c, id)).toMatchObject({ total: '1074.99', balance: '1074.99', amount_credited: '0.00' });
      const first = await credit(c, id, 333.33);
      expect(first).toMatchObject({ kind: 'credit', subtotal: '333.33', tax_amount: '25.00', total: '358.33' });
      expect(await invoiceOf(c, id)).toMatchObject({ status: 'sent', amount_credited: '358.33', balance: '716.66' });
      const rest = await credit(c, id, null);
      expect(rest).toMatchObject({ subtotal: '666.66', tax_amount: '50.00', total: '716.66' });
      expect(rest.number).toBe(first.number + 1);
      expect(await invoiceOf(c, id)).toMatchObject({ status: 'paid', amount_credited: '1074.99', balance: '0.00' });
      // Nothing left to credit.
      expect(await attempt(c, 'select app_public.issue_credit_note($1, 0.01)', [id])).toBe('AT465');
      expect(await attempt(c, 'select app_public.issue_credit_note($1)', [id])).toBe('22023');
    });
  });

  test('refused credits take no number: the series stays gapless, across connections at once', async () => {
    const ids = await commitAs(own, async (c) => {
      const made: string[] = [];
      for (let i = 0; i < 6; i++) made.push(await sentInvoice(c, 100));
      return made;
    });
    const before = (await pool('owner').query<{ n: number | null }>('select max(number) as n from app_public.credit_notes where organization_id = $1', [t.orgId])).rows[0]!;
    // Six connections at once, each crediting its own invoice; every other one asks for too much
    // (refused, rolled back).
    const outcomes = await Promise.all(ids.map((id, i) =>
      commitAs(own, (c) => c.query('select number from app_public.issue_credit_note($1, $2)', [id, i % 2 === 0 ? 40 : 140])).then(() => 'issued', (e: { code: string }) => e.code)));
    expect(outcomes.sort()).toEqual(['AT465', 'AT465', 'AT465', 'issued', 'issued', 'issued']);
    const { rows } = await pool('owner').query<{ number: number }>('select number from app_public.credit_notes where organization_id = $1 and number > $2 order by number', [t.orgId, before.n ?? 0]);
    expect(rows.map((r) => r.number)).toEqual([1, 2, 3].map((k) => (before.n ?? 0) + k));
  });

  test('only issued invoices are credited; an invoice with credits cannot be cancelled; issued corrections are never edited or deleted', async () => {
    await asVisitor(own, async (c) => {
      expect(await attempt(c, 'select app_public.issue_credit_note($1, 10)', [t.draftInvoiceId])).toBe('AT467');
      const cancelled = await sentInvoice(c, 100);
      await c.query('select app_public.cancel_invoice($1)', [cancelled]);
      expect(await attempt(c, 'select app_public.issue_credit_note($1, 10)', [cancelled])).toBe('AT467');
      const id = await sentInvoice(c, 100);
      await credit(c, id, 10);
      expect(await attempt(c, 'select app_public.cancel_invoice($1)', [id])).toBe('AT450');
      expect(await attempt(c, 'insert into app_public.credit_notes (invoice_id, subtotal, tax_amount) values ($1, 1, 0)', [id])).toBe('42501');
      expect(await attempt(c, 'update app_public.credit_notes set reason = $2 where invoice_id = $1', [id, 'changed'])).toBe('42501');
      expect(await attempt(c, 'delete from app_public.credit_notes where invoice_id = $1', [id])).toBe('42501');
      expect(await attempt(c, 'select app_public.issue_credit_note($1, 10)', ['00000000-0000-4000-8000-000000000000'])).toBe('AT404');
    });
    await asVisitor(sessionOf(t.viewer, t.orgId), async (c) => {
      expect(await attempt(c, 'select app_public.issue_credit_note($1, 1)', [t.invoiceId])).toBe('AT403');
      expect(await attempt(c, 'select app_public.record_refund($1, 1)', [t.invoiceId])).toBe('AT403');
      expect(await attempt(c, 'select app_public.write_off_invoice($1)', [t.invoiceId])).toBe('AT403');
    });
  });
});

describe('refunds and write-offs', () => {
  test('credit on a paid invoice leaves it overpaid; a refund pays back at most that; payments stay append-only', async () => {
    await asVisitor(own, async (c) => {
      const id = await sentInvoice(c, 500, 20); // total 600
      await c.query(`select app_public.record_payment($1, 600)`, [id]);
      expect(await invoiceOf(c, id)).toMatchObject({ status: 'paid', balance: '0.00' });
      // A refund with nothing owed to the client.
      expect(await attempt(c, 'select app_public.record_refund($1, 1)', [id])).toBe('AT466');
      await credit(c, id, 100); // 120 with tax
      expect(await invoiceOf(c, id)).toMatchObject({ status: 'paid', amount_paid: '600.00', amount_credited: '120.00', balance: '-120.00' });
      expect(await attempt(c, 'select app_public.record_refund($1, 120.01)', [id])).toBe('AT466');
      await c.query(`select app_public.record_refund($1, 100, '2026-03-01', 'card', 'part')`, [id]);
      await c.query(`select app_public.record_refund($1, 20)`, [id]);
      expect(await invoiceOf(c, id)).toMatchObject({ amount_paid: '480.00', amount_credited: '120.00', balance: '0.00' });
      expect(await attempt(c, 'update app_public.payments set amount = 1 where invoice_id = $1', [id])).toBe('42501');
      expect(await attempt(c, 'delete from app_public.payments where invoice_id = $1', [id])).toBe('42501');
      expect(await attempt(c, 'update app_public.refunds set amount = 1 where invoice_id = $1', [id])).toBe('42501');
    });
  });

  test('a write-off gives up the open balance, net and tax at the invoice\'s rate, and settles the invoice; nothing open: refused', async () => {
    await asVisitor(own, async (c) => {
      const id = await sentInvoice(c, 1000, 10); // total 1100
      await c.query('select app_public.record_payment($1, 450)', [id]);
      const off = await one<{ kind: string; number: number | null; subtotal: string; tax_amount: string; total: string }>(c, `select kind, number, subtotal, tax_amount, total from app_public.write_off_invoice($1, 'bad debt')`, [id]);
      expect(off).toEqual({ kind: 'write_off', number: null, subtotal: '590.91', tax_amount: '59.09', total: '650.00' });
      expect(await invoiceOf(c, id)).toMatchObject({ status: 'paid', amount_paid: '450.00', amount_credited: '650.00', balance: '0.00' });
      expect(await attempt(c, 'select app_public.write_off_invoice($1)', [id])).toBe('22023');
    });
  });

  test('the balance always adds up: the database refuses a balance, credit or payment sum that does not', async () => {
    const owner = await pool('owner').connect();
    try {
      await owner.query('begin');
      const id = t.invoiceId;
      for (const breaking of [
        'alter table app_public.invoices disable trigger tg_invoices__balance; update app_public.invoices set balance = balance + 1 where id = $1',
        'update app_public.invoices set amount_credited = total + 1 where id = $1',
        'update app_public.invoices set amount_credited = -1 where id = $1',
      ]) {
        await owner.query('savepoint s');
        const statements = breaking.split('; ');
        for (const sql of statements.slice(0, -1)) await owner.query(sql);
        expect((await pgError(owner.query(statements.at(-1)!, [id]))).code).toBe('23514');
        await owner.query('rollback to savepoint s');
      }
    } finally {
      await owner.query('rollback');
      owner.release();
    }
  });
});

describe('the client portal', () => {
  test('the client sees the credit notes of its invoices, not write-offs', async () => {
    const { creditedId, offId } = await commitAs(own, async (c) => {
      const creditedId = await sentInvoice(c, 300);
      await credit(c, creditedId, 30);
      const offId = await sentInvoice(c, 300);
      await c.query('select app_public.write_off_invoice($1)', [offId]);
      return { creditedId, offId };
    });
    await asVisitor(sessionOf(t.portal, t.orgId), async (c) => {
      const { rows } = await c.query<{ invoice_id: string; kind: string }>('select invoice_id, kind from app_public.credit_notes where invoice_id = any($1::uuid[])', [[creditedId, offId]]);
      expect(rows).toEqual([{ invoice_id: creditedId, kind: 'credit' }]);
    });
  });
});
