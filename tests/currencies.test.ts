// Currencies (sql/functions/currencies.sql): every monetary document records its currency when it
// is created — given, or copied along the chain it comes from — and keeps it, so changing the
// organization's currency relabels nothing; rate cards price only engagements of their currency;
// exchange rates convert into the base currency.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import { sellToNewClient } from '../src/db/seed.ts';
import { asVisitor, attempt, closePools, pgError, pool, sessionOf, unique, type Session } from './support/db.ts';
import { approveTime, commitAs, one, oneTenant, type Tenant } from './support/fixtures.ts';

let t: Tenant;
let own: Session;
beforeAll(async () => {
  t = await oneTenant('currencies');
  own = sessionOf(t.owner, t.orgId);
}, 60_000);
afterAll(closePools);

const currencyOf = async (c: pg.PoolClient, table: string, id: string) => (await one<{ currency: string }>(c, `select currency from app_public.${table} where id = $1`, [id])).currency;

describe('a document\'s currency', () => {
  test('a client billed in euros: proposal, contract, engagement, invoice, payment, credit note and refund are in euros; another client in the organization\'s dollars', async () => {
    await asVisitor(own, async (c) => {
      const sold = await sellToNewClient(c, { name: unique('Euro client'), contactEmail: `${unique('eur')}@example.com` });
      // (sellToNewClient made the client without a currency: set it, then sell again to it.)
      await c.query(`update app_public.client_companies set currency = 'EUR' where id = $1`, [sold.clientId]);
      const proposal = await one<{ id: string; currency: string }>(c, `insert into app_public.proposals (client_company_id, title) values ($1, 'Phase 2') returning id, currency`, [sold.clientId]);
      expect(proposal.currency).toBe('EUR');
      await c.query(`insert into app_public.proposal_line_items (proposal_id, description, unit_price) values ($1, 'Work', 1000)`, [proposal.id]);
      await c.query('select app_public.send_proposal($1)', [proposal.id]);
      const contract = await one<{ id: string; currency: string }>(c, 'select id, currency from app_public.accept_proposal($1)', [proposal.id]);
      expect(contract.currency).toBe('EUR');
      await c.query('select app_public.send_contract($1)', [contract.id]);
      const engagement = await one<{ id: string; currency: string }>(c, `select id, currency from app_public.sign_contract($1, 'Signer')`, [contract.id]);
      expect(engagement.currency).toBe('EUR');
      await c.query('update app_public.engagements set hourly_rate = 100 where id = $1', [engagement.id]);
      const schedule = await one<{ currency: string }>(c, `insert into app_public.invoice_schedules (engagement_id, kind, description, amount, next_run_on) values ($1, 'fixed', 'Kick-off', 500, '2030-01-01') returning currency`, [engagement.id]);
      expect(schedule.currency).toBe('EUR');
      await c.query(`insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) select $1, id, '2026-08-04', 60 from app_public.organization_members where user_id = $2`, [engagement.id, t.owner.userId]);
      await approveTime(c, engagement.id);
      const invoice = await one<{ id: string; currency: string }>(c, 'select id, currency from app_public.create_invoice_from_time($1)', [engagement.id]);
      expect(invoice.currency).toBe('EUR');
      await c.query('select app_public.send_invoice($1)', [invoice.id]);
      const payment = await one<{ currency: string }>(c, 'select currency from app_public.record_payment($1, 100)', [invoice.id]);
      const note = await one<{ currency: string }>(c, 'select currency from app_public.issue_credit_note($1, 10)', [invoice.id]);
      const refund = await one<{ currency: string }>(c, 'select currency from app_public.record_refund($1, 10)', [invoice.id]);
      expect([payment.currency, note.currency, refund.currency]).toEqual(['EUR', 'EUR', 'EUR']);
      // The organization's other clients: its currency.
      expect(await currencyOf(c, 'invoices', t.invoiceId)).toBe('USD');
      // Given when created: an invoice in Swiss francs.
      const chf = await one<{ currency: string }>(c, `insert into app_public.invoices (client_company_id, currency) values ($1, 'CHF') returning currency`, [t.clientId]);
      expect(chf.currency).toBe('CHF');
      const bill = await one<{ currency: string }>(c, `insert into app_public.bills (vendor_id, amount, currency) select id, 10, 'GBP' from app_public.vendors limit 1 returning currency`);
      expect(bill.currency).toBe('GBP');
    });
  });

  test('changing the organization\'s currency relabels nothing: past documents keep theirs, new ones take the new one', async () => {
    await asVisitor(own, async (c) => {
      await c.query(`update app_public.organizations set currency = 'GBP' where id = $1`, [t.orgId]);
      expect(await currencyOf(c, 'invoices', t.invoiceId)).toBe('USD');
      expect((await one<{ n: string }>(c, `select count(*) as n from app_public.invoices where currency = 'GBP'`)).n).toBe('0');
      const fresh = await one<{ currency: string }>(c, 'insert into app_public.invoices (client_company_id) values ($1) returning currency', [t.clientId]);
      expect(fresh.currency).toBe('GBP');
    });
  });

  test('fixed once created: the visitor may not change it, and nobody else either; a part in another currency than its document is refused', async () => {
    await asVisitor(own, async (c) => {
      expect(await attempt(c, `update app_public.invoices set currency = 'EUR' where id = $1`, [t.draftInvoiceId])).toBe('42501');
      expect(await attempt(c, `insert into app_public.payments (invoice_id, amount, currency) values ($1, 1, 'EUR')`, [t.invoiceId])).toBe('42501');
    });
    const owner = await pool('owner').connect();
    try {
      await owner.query('begin');
      await owner.query('savepoint s');
      expect((await pgError(owner.query(`update app_public.invoices set currency = 'EUR' where id = $1`, [t.invoiceId]))).code).toBe('AT440');
      await owner.query('rollback to savepoint s');
      const error = await pgError(owner.query(`insert into app_public.payments (organization_id, invoice_id, amount, currency) values ($1, $2, 1, 'EUR')`, [t.orgId, t.invoiceId]));
      expect(error).toMatchObject({ code: '22023', message: "Its currency is the invoice's (USD), not EUR." });
    } finally {
      await owner.query('rollback');
      owner.release();
    }
  });

  test('a rate card prices only engagements of its currency', async () => {
    await asVisitor(own, async (c) => {
      const sold = await sellToNewClient(c, { name: unique('Yen client'), contactEmail: `${unique('jpy')}@example.com` });
      // An engagement in yen without a rate of its own: the organization's dollar card does not apply.
      const client = await one<{ id: string }>(c, `insert into app_public.client_companies (name, currency) values ($1, 'JPY') returning id`, [unique('Yen')]);
      const proposal = await one<{ id: string }>(c, `insert into app_public.proposals (client_company_id, title) values ($1, 'Yen work') returning id`, [client.id]);
      await c.query(`insert into app_public.proposal_line_items (proposal_id, description, unit_price) values ($1, 'Work', 100000)`, [proposal.id]);
      await c.query('select app_public.send_proposal($1)', [proposal.id]);
      const contract = await one<{ id: string }>(c, 'select id from app_public.accept_proposal($1)', [proposal.id]);
      await c.query('select app_public.send_contract($1)', [contract.id]);
      const yen = await one<{ id: string }>(c, `select id from app_public.sign_contract($1, 'Signer')`, [contract.id]);
      await c.query('insert into app_public.bill_rates (hourly_rate) values (99)');
      const member = await one<{ id: string }>(c, 'select id from app_public.organization_members where user_id = $1', [t.member.userId]);
      expect(await attempt(c, `insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) values ($1, $2, '2026-08-05', 60)`, [yen.id, member.id])).toBe('AT464');
      // A card of the yen client is in yen, and prices it.
      const card = await one<{ currency: string }>(c, `insert into app_public.bill_rates (client_company_id, hourly_rate) values ($1, 15000) returning currency`, [client.id]);
      expect(card.currency).toBe('JPY');
      expect((await one<{ rate: string }>(c, `insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) values ($1, $2, '2026-08-05', 60) returning rate`, [yen.id, member.id])).rate).toBe('15000.00');
      // The dollar engagement still bills the dollar card.
      await c.query('update app_public.engagements set hourly_rate = null where id = $1', [sold.engagementId]);
      expect((await one<{ rate: string }>(c, `insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) values ($1, $2, '2026-08-05', 60) returning rate`, [sold.engagementId, member.id])).rate).toBe('99.00');
    });
  });
});

describe('exchange rates', () => {
  test('an amount in the base currency on a date, with the rate in force then; none known: null; admins set rates, members read them', async () => {
    await asVisitor(own, async (c) => {
      // (The fixture's organization has EUR at 1.08 from 2026-01-01.)
      await c.query(`insert into app_public.exchange_rates (currency, rate, effective_on) values ('EUR', 1.2, '2026-06-01'), ('JPY', 0.0065, '2026-01-01')`);
      const base = (amount: number, currency: string, on: string) => one<{ v: string | null }>(c, 'select app_public.to_base_currency($1, $2, $3) as v', [amount, currency, on]).then((r) => r.v);
      expect(await base(100, 'EUR', '2026-03-01')).toBe('108.00');
      expect(await base(100, 'EUR', '2026-06-01')).toBe('120.00');
      expect(await base(100, 'eur', '2026-12-31')).toBe('120.00');
      expect(await base(100, 'EUR', '2025-12-31')).toBeNull();
      expect(await base(15000, 'JPY', '2026-08-05')).toBe('97.50');
      expect(await base(100, 'USD', '2026-08-05')).toBe('100');
      expect(await base(100, 'CHF', '2026-08-05')).toBeNull();
      expect(await attempt(c, `insert into app_public.exchange_rates (currency, rate) values ('CHF', 0)`)).toBe('23514');
      expect(await attempt(c, `insert into app_public.exchange_rates (currency, rate, effective_on) values ('EUR', 1.3, '2026-06-01')`)).toBe('23505');
    });
    await commitAs(own, (c) => c.query(`insert into app_public.exchange_rates (currency, rate, effective_on) values ('SEK', 0.095, '2026-01-01')`));
    await asVisitor(sessionOf(t.member, t.orgId), async (c) => {
      expect(await attempt(c, `insert into app_public.exchange_rates (currency, rate) values ('NOK', 0.09)`)).toBe('42501');
      expect((await one<{ v: string }>(c, `select app_public.to_base_currency(100, 'SEK', '2026-02-01') as v`)).v).toBe('9.50');
    });
  });
});
