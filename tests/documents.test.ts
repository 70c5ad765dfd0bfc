// Documents created whole (sql/functions/documents.sql): a proposal or an invoice with its lines
// in one mutation — all or nothing, with the caller's permissions, in the caller's organization.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { Atrium } from '../src/index.ts';
import { gql, startTestApp, tokenFor } from './support/app.ts';
import { asVisitor, attempt, closePools, pool, sessionOf } from './support/db.ts';
import { oneTenant, type Tenant } from './support/fixtures.ts';

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
        `select id, status, subtotal from app_public.create_proposal_with_lines($1, 'Website', array[row('Discovery', 2, 1200), row('Build', null, 8000)]::app_public.document_line[])`,
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
