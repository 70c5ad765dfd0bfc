// Tax codes (sql/functions/taxes.sql): a tax code per proposal or invoice line, several taxes on
// one code (compound or not), the document's tax per code rounded on the code's summed lines, the
// lines without a code at the document's rate; a code a sent document uses cannot change;
// payments and credit notes work on the taxed total; the books add up; the API shows it all.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import type { Atrium } from '../src/index.ts';
import { gql, startTestApp, tokenFor } from './support/app.ts';
import { asVisitor, closePools, pgError, pool, sessionOf, type Session } from './support/db.ts';
import { approveTime, commitAs, memberIdOf, one, oneTenant, signedEngagement, type Tenant } from './support/fixtures.ts';

let t: Tenant;
let own: Session;
const codes: Record<string, string> = {};
beforeAll(async () => {
  t = await oneTenant('taxes');
  own = sessionOf(t.owner, t.orgId);
  await commitAs(own, async (c) => {
    const code = async (key: string, name: string, components: Array<[string, number, boolean]>) => {
      codes[key] = (await one<{ id: string }>(c, 'insert into app_public.tax_codes (code, name) values ($1, $2) returning id', [key, name])).id;
      for (const [i, [component, rate, compound]] of components.entries()) {
        await c.query('insert into app_public.tax_code_components (tax_code_id, position, name, rate, compound) values ($1, $2, $3, $4, $5)', [codes[key], i + 1, component, rate, compound]);
      }
    };
    await code('STD20', 'VAT 20%', [['VAT', 20, false]]);
    await code('GST+QST', 'Quebec', [['GST', 5, false], ['QST', 9.975, false]]);
    await code('GST+PST-C', 'Compound provincial', [['GST', 5, false], ['PST', 8, true]]);
    await code('EXEMPT', 'Exempt', []);
    await code('LOW5', 'Reduced 5%', [['VAT', 5, false]]);
  });
}, 90_000);
afterAll(closePools);

interface Line { description: string; quantity?: number; unit_price: number; code?: string }
/** A draft invoice of a new engagement, its invoice-level rate `taxRate`, with `lines`. */
async function draft(c: pg.PoolClient, taxRate: number, lines: Line[]): Promise<string> {
  const e = await signedEngagement(c, 'taxed');
  const invoice = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id, engagement_id, tax_rate) values ($1, $2, $3) returning id', [e.clientId, e.engagementId, taxRate]);
  for (const line of lines) {
    await c.query('insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price, tax_code_id) values ($1, $2, $3, $4, $5)',
      [invoice.id, line.description, line.quantity ?? 1, line.unit_price, line.code ? codes[line.code] : null]);
  }
  return invoice.id;
}

const amounts = async (id: string) =>
  (await pool('owner').query<{ subtotal: string; tax_amount: string; total: string; balance: string; status: string }>(
    'select subtotal::text, tax_amount::text, total::text, balance::text, status::text from app_public.invoices where id = $1', [id])).rows[0];
const proposalAmounts = async (id: string) =>
  (await pool('owner').query<{ subtotal: string; tax_amount: string; total: string; status: string }>(
    'select subtotal::text, tax_amount::text, total::text, status::text from app_public.proposals where id = $1', [id])).rows[0];

interface TaxTotal { code: string | null; name: string | null; taxable_amount: string; tax_amount: string; components: Array<{ name: string | null; rate: string; compound: boolean; base: string; amount: string }> }
const taxTotals = (session: Session, id: string, document: 'invoices' | 'proposals' = 'invoices') =>
  asVisitor(session, async (c) => (await c.query<{ t: TaxTotal }>(
    `select json_build_object('code', x.code, 'name', x.name, 'taxable_amount', x.taxable_amount::text, 'tax_amount', x.tax_amount::text,
       'components', (select coalesce(json_agg(json_build_object('name', k.name, 'rate', k.rate::text, 'compound', k.compound, 'base', k.base::text, 'amount', k.amount::text)), '[]') from unnest(x.components) k)) as t
     from app_public.${document} i, app_public.${document}_tax_totals(i) x where i.id = $1`, [id])).rows.map((r) => r.t));

describe('the tax of an invoice', () => {
  let invoiceId: string;

  test('per code: simple, several taxes, compound, exempt; the lines without a code at the invoice rate; the totals add up', async () => {
    invoiceId = await commitAs(own, (c) => draft(c, 10, [
      { description: 'Design', unit_price: 100, code: 'STD20' },
      { description: 'Design, second round', quantity: 2, unit_price: 150, code: 'STD20' },
      { description: 'Montreal workshop', unit_price: 1000, code: 'GST+QST' },
      { description: 'Provincial work', unit_price: 200, code: 'GST+PST-C' },
      { description: 'Training (exempt)', unit_price: 50, code: 'EXEMPT' },
      { description: 'Hosting', unit_price: 30 },
    ]));
    // STD20 on 400: 80; GST 5% + QST 9.975% on 1000: 50 + 99.75; GST 5% on 200, PST 8% on 200 + 10:
    // 10 + 16.80; exempt: 0; the rest (30) at the invoice's 10%: 3.
    expect(await amounts(invoiceId)).toEqual({ subtotal: '1680.00', tax_amount: '259.55', total: '1939.55', balance: '1939.55', status: 'draft' });
    expect(await taxTotals(own, invoiceId)).toEqual([
      { code: null, name: null, taxable_amount: '30.00', tax_amount: '3.00', components: [{ name: null, rate: '10.00', compound: false, base: '30.00', amount: '3.00' }] },
      { code: 'EXEMPT', name: 'Exempt', taxable_amount: '50.00', tax_amount: '0', components: [] },
      { code: 'GST+PST-C', name: 'Compound provincial', taxable_amount: '200.00', tax_amount: '26.80', components: [
        { name: 'GST', rate: '5.0000', compound: false, base: '200.00', amount: '10.00' },
        { name: 'PST', rate: '8.0000', compound: true, base: '210.00', amount: '16.80' },
      ] },
      { code: 'GST+QST', name: 'Quebec', taxable_amount: '1000.00', tax_amount: '149.75', components: [
        { name: 'GST', rate: '5.0000', compound: false, base: '1000.00', amount: '50.00' },
        { name: 'QST', rate: '9.9750', compound: false, base: '1000.00', amount: '99.75' },
      ] },
      { code: 'STD20', name: 'VAT 20%', taxable_amount: '400.00', tax_amount: '80.00', components: [{ name: 'VAT', rate: '20.0000', compound: false, base: '400.00', amount: '80.00' }] },
    ]);
  });

  test('a code\'s tax is rounded once on its lines\' sum, not per line', async () => {
    // Three lines of 0.10 at 5%: 0.005 each (0.01 rounded, 0.03 per line), 0.015 on their sum: 0.02.
    const id = await commitAs(own, (c) => draft(c, 0, [1, 2, 3].map((n) => ({ description: `Item ${n}`, unit_price: 0.1, code: 'LOW5' }))));
    expect(await amounts(id)).toMatchObject({ subtotal: '0.30', tax_amount: '0.02', total: '0.32' });
  });

  test('changing a line\'s code, the invoice\'s rate or a draft\'s code recomputes the draft', async () => {
    const id = await commitAs(own, (c) => draft(c, 10, [{ description: 'Work', unit_price: 100, code: 'STD20' }, { description: 'More', unit_price: 100 }]));
    expect(await amounts(id)).toMatchObject({ tax_amount: '30.00', total: '230.00' });
    await commitAs(own, (c) => c.query('update app_public.invoice_line_items set tax_code_id = $2 where invoice_id = $1 and description = $3', [id, codes.LOW5, 'Work']));
    expect(await amounts(id)).toMatchObject({ tax_amount: '15.00', total: '215.00' });
    await commitAs(own, (c) => c.query('update app_public.invoices set tax_rate = 0 where id = $1', [id]));
    expect(await amounts(id)).toMatchObject({ tax_amount: '5.00', total: '205.00', balance: '205.00' });
    // LOW5 is used by drafts only: its rate may change, and they follow.
    await commitAs(own, (c) => c.query(`update app_public.tax_code_components set rate = 7 where tax_code_id = $1`, [codes.LOW5]));
    expect(await amounts(id)).toMatchObject({ tax_amount: '7.00', total: '207.00', balance: '207.00' });
    await commitAs(own, (c) => c.query(`update app_public.tax_code_components set rate = 5 where tax_code_id = $1`, [codes.LOW5]));
    expect(await amounts(id)).toMatchObject({ tax_amount: '5.00' });
  });

  test('sent, it is paid in full at its taxed total; its code keeps its code, name and taxes (TAX_CODE_IN_USE); archived, nobody chooses it again', async () => {
    await commitAs(own, async (c) => {
      await c.query('select app_public.send_invoice($1)', [invoiceId]);
      await c.query(`select app_public.record_payment($1, 1939.55, '2026-03-01', 'bank_transfer', 'in full')`, [invoiceId]);
    });
    expect(await amounts(invoiceId)).toMatchObject({ total: '1939.55', balance: '0.00', status: 'paid' });
    for (const change of [
      ['update app_public.tax_code_components set rate = 21 where tax_code_id = $1', codes.STD20],
      ['insert into app_public.tax_code_components (tax_code_id, position, name, rate) values ($1, 2, \'Levy\', 1)', codes.STD20],
      ['delete from app_public.tax_code_components where tax_code_id = $1', codes.STD20],
      ['update app_public.tax_codes set name = \'VAT standard\' where id = $1', codes.STD20],
    ]) {
      const error = await pgError(commitAs(own, (c) => c.query(change[0]!, [change[1]])));
      expect({ change: change[0], code: error.code }).toEqual({ change: change[0], code: 'AT469' });
    }
    expect(await amounts(invoiceId)).toMatchObject({ tax_amount: '259.55', total: '1939.55' });
    // Archiving is allowed; an archived code cannot be given to a line.
    await commitAs(own, (c) => c.query('update app_public.tax_codes set archived_at = now() where id = $1', [codes.STD20]));
    const archived = await pgError(commitAs(own, (c) => draft(c, 0, [{ description: 'Work', unit_price: 10, code: 'STD20' }])));
    expect(archived).toMatchObject({ code: '22023', message: expect.stringContaining('archived') });
    await commitAs(own, (c) => c.query('update app_public.tax_codes set archived_at = null where id = $1', [codes.STD20]));
  });

  test('credit notes take tax at the invoice\'s effective rate, shown per code; a full credit nets the invoice to zero', async () => {
    // 200 at STD20 and 100 at GST+QST: net 300, tax 40 + 14.98 = 54.98 (effective 18.3267%).
    const id = await commitAs(own, async (c) => {
      const draftId = await draft(c, 0, [{ description: 'Design', unit_price: 200, code: 'STD20' }, { description: 'Workshop', unit_price: 100, code: 'GST+QST' }]);
      await c.query('select app_public.send_invoice($1)', [draftId]);
      return draftId;
    });
    expect(await amounts(id)).toMatchObject({ subtotal: '300.00', tax_amount: '54.98', total: '354.98' });
    const partial = await commitAs(own, (c) => one<{ subtotal: string; tax_amount: string }>(c, `select subtotal::text, tax_amount::text from app_public.issue_credit_note($1, 100, 'Discount')`, [id]));
    expect(partial).toEqual({ subtotal: '100.00', tax_amount: '18.33' });
    // Per code, in proportion to what each charged (200 and 100 net, 40 and 14.98 tax), to the cent.
    const perCode = (await pool('owner').query<{ code: string; net: string; tax: string }>(
      `select x.code, x.taxable_amount::text as net, x.tax_amount::text as tax
       from app_public.credit_notes n, app_public.credit_notes_tax_totals(n) x where n.invoice_id = $1 and n.reason = 'Discount'`, [id])).rows;
    expect(perCode).toEqual([{ code: 'GST+QST', net: '33.33', tax: '4.99' }, { code: 'STD20', net: '66.67', tax: '13.34' }]);
    const rest = await commitAs(own, (c) => one<{ subtotal: string; tax_amount: string }>(c, `select subtotal::text, tax_amount::text from app_public.issue_credit_note($1, null, 'Cancelled')`, [id]));
    expect(rest).toEqual({ subtotal: '200.00', tax_amount: '36.65' });
    expect(await amounts(id)).toMatchObject({ balance: '0.00' });
  });

  test('proposals too: created whole with a code per line, taxed per code, and frozen once sent', async () => {
    const id = await commitAs(own, async (c) => {
      const e = await signedEngagement(c, 'proposed');
      return (await one<{ id: string }>(c,
        `select id from app_public.create_proposal_with_lines($1, 'Phase two', array[row('Design', 2, 500, $2), row('Workshop', 1, 1000, $3), row('Licences', 1, 100, null)]::app_public.document_line[], tax_rate => 10)`,
        [e.clientId, codes.STD20, codes['GST+QST']])).id;
    });
    // 1,000 at 20%: 200; 1,000 at 5% + 9.975%: 149.75; 100 at the proposal's 10%: 10.
    expect(await proposalAmounts(id)).toEqual({ subtotal: '2100.00', tax_amount: '359.75', total: '2459.75', status: 'draft' });
    expect((await taxTotals(own, id, 'proposals')).map((x) => [x.code, x.taxable_amount, x.tax_amount])).toEqual([
      [null, '100.00', '10.00'], ['GST+QST', '1000.00', '149.75'], ['STD20', '1000.00', '200.00'],
    ]);
    // A new code only on this draft proposal: changing it follows; once the proposal is sent, it is frozen.
    const only = await commitAs(own, async (c) => {
      const code = await one<{ id: string }>(c, `insert into app_public.tax_codes (code, name) values ('PROP12', 'Twelve') returning id`);
      await c.query(`insert into app_public.tax_code_components (tax_code_id, name, rate) values ($1, 'Tax', 12)`, [code.id]);
      await c.query(`update app_public.proposal_line_items set tax_code_id = $2 where proposal_id = $1 and description = 'Licences'`, [id, code.id]);
      return code.id;
    });
    expect(await proposalAmounts(id)).toMatchObject({ tax_amount: '361.75' });
    await commitAs(own, (c) => c.query('select app_public.send_proposal($1)', [id]));
    const frozen = await pgError(commitAs(own, (c) => c.query('update app_public.tax_code_components set rate = 13 where tax_code_id = $1', [only])));
    expect(frozen).toMatchObject({ code: 'AT469', message: expect.stringContaining('The proposal "Phase two" was sent with this tax code') });
  });

  test('an invoice created whole takes a code per line', async () => {
    const id = await commitAs(own, async (c) => {
      const e = await signedEngagement(c, 'whole');
      return (await one<{ id: string }>(c,
        `select id from app_public.create_invoice_with_lines($1, array[row('Design', 1, 300, $2), row('Hosting', 1, 50, null)]::app_public.document_line[], engagement_id => $3)`,
        [e.clientId, codes['GST+PST-C'], e.engagementId])).id;
    });
    // 300: GST 15, PST 8% of 315 = 25.20; 50 at 0%.
    expect(await amounts(id)).toMatchObject({ subtotal: '350.00', tax_amount: '40.20', total: '390.20' });
  });

  test('the books add up (app_private.books_violations), and a tax that no longer matches its code is found', async () => {
    const { rows } = await pool('owner').query('select * from app_private.books_violations($1)', [t.orgId]);
    expect(rows).toEqual([]);
    // A rate changed behind the rules' back (triggers off): the sent invoice's tax is named.
    const client = await pool('superuser').connect();
    try {
      await client.query('begin');
      await client.query('set local session_replication_role = replica');
      await client.query('update app_public.tax_code_components set rate = 21 where tax_code_id = $1', [codes.STD20]);
      const { rows: broken } = await client.query<{ rule: string; document_id: string }>('select rule, document_id from app_private.books_violations($1)', [t.orgId]);
      expect(broken).toContainEqual({ rule: 'invoice_tax', document_id: invoiceId });
      // (The proposal sent with it above too.)
      expect(new Set(broken.map((r) => r.rule))).toEqual(new Set(['invoice_tax', 'proposal_tax']));
      // The sent invoice keeps the tax it was sent with, whatever is updated on it later.
      await client.query('set local session_replication_role = origin');
      await client.query('update app_public.invoices set updated_at = now() where id = $1', [invoiceId]);
      const kept = await client.query('select tax_amount::text, total::text from app_public.invoices where id = $1', [invoiceId]);
      expect(kept.rows[0]).toEqual({ tax_amount: '259.55', total: '1939.55' });
    } finally {
      await client.query('rollback');
      client.release();
    }
  });
});

describe('default codes', () => {
  let d: Tenant;
  let owner: Session;
  const ids: Record<string, string> = {};
  beforeAll(async () => {
    d = await oneTenant('taxes-defaults');
    owner = sessionOf(d.owner, d.orgId);
    await commitAs(owner, async (c) => {
      ids.std = (await one<{ id: string }>(c, `insert into app_public.tax_codes (code, name, is_default) values ('STD', 'Standard 20%', true) returning id`)).id;
      await c.query(`insert into app_public.tax_code_components (tax_code_id, name, rate) values ($1, 'VAT', 20)`, [ids.std]);
      ids.rc = (await one<{ id: string }>(c, `insert into app_public.tax_codes (code, name) values ('RC', 'Reverse charge') returning id`)).id;
    });
  }, 90_000);

  /** An engagement of a new client (its own code `clientCode`), 2 h of approved time (a week of its own), invoiced from time. */
  let week = 0;
  const invoicedTime = (clientCode: string | null) => commitAs(owner, async (c) => {
    const workDate = new Date(Date.UTC(2026, 2, 2 + 7 * week++)).toISOString().slice(0, 10);
    const e = await signedEngagement(c, 'defaults');
    await c.query('update app_public.client_companies set tax_code_id = $2 where id = $1', [e.clientId, clientCode]);
    await c.query(`insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) values ($1, $2, $3, 120)`, [e.engagementId, await memberIdOf(d, d.owner), workDate]);
    await approveTime(c, e.engagementId);
    const invoice = await one<{ id: string }>(c, 'select id from app_public.create_invoice_from_time($1)', [e.engagementId]);
    const codes = (await c.query<{ code: string | null }>('select t.code from app_public.invoice_line_items l left join app_public.tax_codes t on t.id = l.tax_code_id where l.invoice_id = $1', [invoice.id])).rows.map((r) => r.code);
    const totals = await one<{ subtotal: string; tax_amount: string }>(c, 'select subtotal::text, tax_amount::text from app_public.invoices where id = $1', [invoice.id]);
    return { id: invoice.id, codes, amounts: totals };
  });

  test('lines given no code take the client\'s code, else the organization\'s default; a document with a rate of its own keeps it', async () => {
    const std = await invoicedTime(null);
    expect(std.codes).toEqual(['STD']);
    expect(Number(std.amounts.tax_amount)).toBeCloseTo(Number(std.amounts.subtotal) * 0.2, 2);
    const abroad = await invoicedTime(ids.rc!);
    expect(abroad.codes).toEqual(['RC']);
    expect(abroad.amounts.tax_amount).toBe('0.00');
    // A proposal at 10% of its own: its lines stay without a code, taxed at its rate.
    const proposal = await commitAs(owner, async (c) => {
      const e = await signedEngagement(c, 'rated');
      const p = await one<{ id: string }>(c, `select id from app_public.create_proposal_with_lines($1, 'Rated', array[row('Work', 1, 100, null)]::app_public.document_line[], tax_rate => 10)`, [e.clientId]);
      return { id: p.id, code: (await one<{ tax_code_id: string | null }>(c, 'select tax_code_id from app_public.proposal_line_items where proposal_id = $1', [p.id])).tax_code_id };
    });
    expect(proposal.code).toBeNull();
    expect(await proposalAmounts(proposal.id)).toMatchObject({ tax_amount: '10.00', total: '110.00' });
  });

  test('the default cannot be archived while it is the default; a client cannot be given an archived code; archived, the default is not used', async () => {
    const refused = await pgError(commitAs(owner, (c) => c.query('update app_public.tax_codes set archived_at = now() where id = $1', [ids.std])));
    expect(refused.code).toBe('23514');
    await commitAs(owner, async (c) => {
      await c.query('update app_public.tax_codes set archived_at = now() where id = $1', [ids.rc]);
      await c.query('update app_public.tax_codes set is_default = false, archived_at = now() where id = $1', [ids.std]);
    });
    const archived = await pgError(commitAs(owner, async (c) => {
      const e = await signedEngagement(c, 'archived');
      await c.query('update app_public.client_companies set tax_code_id = $2 where id = $1', [e.clientId, ids.rc]);
    }));
    expect(archived).toMatchObject({ code: '22023', message: expect.stringContaining('archived') });
    expect((await invoicedTime(null)).codes).toEqual([null]);
  });
});

describe('over GraphQL', () => {
  let app: Atrium;
  beforeAll(async () => {
    app = await startTestApp();
  }, 60_000);
  afterAll(async () => {
    await app?.stop();
  });

  test('a frontend creates a code with two taxes, an invoice whose lines name it, and reads the tax per code', async () => {
    const token = await tokenFor(t.owner, t.orgId);
    const ok = async (query: string, variables: Record<string, unknown>) => {
      const res = await gql(app.url!, query, variables, token);
      expect(res.errors).toBeUndefined();
      return res.data as any;
    };
    const code = (await ok('mutation { createTaxCode(input: { taxCode: { code: "HST-API", name: "Harmonized" } }) { taxCode { rowId } } }', {})).createTaxCode.taxCode.rowId;
    await ok('mutation($c: UUID!) { a: createTaxCodeComponent(input: { taxCodeComponent: { taxCodeId: $c, position: 1, name: "Federal", rate: "5" } }) { clientMutationId } b: createTaxCodeComponent(input: { taxCodeComponent: { taxCodeId: $c, position: 2, name: "Provincial", rate: "8", compound: true } }) { clientMutationId } }', { c: code });
    const clientId = (await ok('mutation { createClientCompany(input: { clientCompany: { name: "Taxed over the API" } }) { clientCompany { rowId } } }', {})).createClientCompany.clientCompany.rowId;
    const invoice = (await ok(
      `mutation($c: UUID!, $l: [DocumentLineInput]!) { createInvoiceWithLines(input: { clientCompanyId: $c, taxRate: "10", lines: $l }) {
         invoice { subtotal taxAmount total taxTotals { nodes { code taxableAmount taxAmount components { name rate compound base amount } } } invoiceLineItems { nodes { description taxCode { code } } } } } }`,
      { c: clientId, l: [{ description: 'Design', quantity: '1', unitPrice: '1000', taxCodeId: code }, { description: 'Hosting', unitPrice: '20' }] },
    )).createInvoiceWithLines.invoice;
    // 1,000: 50 federal, 8% of 1,050 = 84 provincial; 20 at the invoice's 10%: 2.
    expect(invoice).toMatchObject({ subtotal: '1020.00', taxAmount: '136.00', total: '1156.00' });
    expect(invoice.taxTotals.nodes).toEqual([
      { code: null, taxableAmount: '20.00', taxAmount: '2.00', components: [{ name: null, rate: '10.00', compound: false, base: '20.00', amount: '2.00' }] },
      { code: 'HST-API', taxableAmount: '1000.00', taxAmount: '134.00', components: [
        { name: 'Federal', rate: '5.0000', compound: false, base: '1000.00', amount: '50.00' },
        { name: 'Provincial', rate: '8.0000', compound: true, base: '1050.00', amount: '84.00' },
      ] },
    ]);
    expect(invoice.invoiceLineItems.nodes.map((l: any) => [l.description, l.taxCode?.code ?? null]).sort()).toEqual([['Design', 'HST-API'], ['Hosting', null]]);
  }, 60_000);
});
