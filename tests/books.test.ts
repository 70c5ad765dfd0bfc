// The books always add up (sql/functions/books.sql): after random sequences of sending, payments,
// credit notes, write-offs, refunds and cancellations, run by several connections at once on the
// same invoices, app_private.books_violations() finds nothing, and no operation failed otherwise
// than with a business rule's own code (never a deadlock, a check violation or an internal error).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { closePools, pool, sessionOf, type Session } from './support/db.ts';
import { commitAs, one, oneTenant, type Tenant } from './support/fixtures.ts';

let t: Tenant;
let own: Session;
beforeAll(async () => {
  t = await oneTenant('books');
  own = sessionOf(t.owner, t.orgId);
}, 60_000);
afterAll(closePools);

const INVOICES = 3;
const WORKERS = 3;

type Op =
  | { kind: 'send'; invoice: number }
  | { kind: 'pay'; invoice: number; cents: number }
  | { kind: 'credit'; invoice: number; cents: number | null }
  | { kind: 'writeOff'; invoice: number }
  | { kind: 'refund'; invoice: number; cents: number }
  | { kind: 'cancel'; invoice: number };

const invoice = fc.integer({ min: 0, max: INVOICES - 1 });
const cents = fc.integer({ min: 1, max: 60_000 });
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('send' as const), invoice }),
  fc.record({ kind: fc.constant('pay' as const), invoice, cents }),
  fc.record({ kind: fc.constant('credit' as const), invoice, cents: fc.option(cents, { nil: null }) }),
  fc.record({ kind: fc.constant('writeOff' as const), invoice }),
  fc.record({ kind: fc.constant('refund' as const), invoice, cents }),
  fc.record({ kind: fc.constant('cancel' as const), invoice }),
);
const scenario = fc.record({
  // Each invoice: one line of up to 500.00, at a tax rate of 0 to 25 %.
  invoices: fc.array(fc.record({ cents: fc.integer({ min: 1, max: 50_000 }), taxRate: fc.integer({ min: 0, max: 25 }) }), { minLength: INVOICES, maxLength: INVOICES }),
  workers: fc.array(fc.array(op, { minLength: 2, maxLength: 10 }), { minLength: WORKERS, maxLength: WORKERS }),
});

/** What a business rule answers (the operation was refused as it should be). */
const RULES = new Set(['AT450', 'AT451', 'AT460', 'AT461', 'AT462', 'AT465', 'AT466', 'AT467', '22023']);

const SQL: Record<Op['kind'], string> = {
  send: 'select app_public.send_invoice($1)',
  pay: 'select app_public.record_payment($1, $2)',
  credit: 'select app_public.issue_credit_note($1, $2)',
  writeOff: 'select app_public.write_off_invoice($1)',
  refund: 'select app_public.record_refund($1, $2)',
  cancel: 'select app_public.cancel_invoice($1)',
};

async function run(ids: string[], o: Op): Promise<string | null> {
  const amount = 'cents' in o ? (o.cents === null ? null : (o.cents / 100).toFixed(2)) : undefined;
  try {
    await commitAs(own, (c) => c.query(SQL[o.kind], amount === undefined ? [ids[o.invoice]] : [ids[o.invoice], amount]));
    return null;
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

describe('the books add up', () => {
  test('after random concurrent invoicing, payments, credits, write-offs, refunds and cancellations: no violation, and only business rules refuse', async () => {
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async ({ invoices, workers }) => {
        runs++;
        const ids = await commitAs(own, async (c) => {
          const made: string[] = [];
          for (const inv of invoices) {
            const { id } = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id, engagement_id, tax_rate) values ($1, $2, $3) returning id', [t.clientId, t.engagementId, inv.taxRate]);
            await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Work', 1, $2)`, [id, (inv.cents / 100).toFixed(2)]);
            made.push(id);
          }
          // Most scenarios start from sent invoices, so payments and credits have something to do.
          for (const id of made.slice(1)) await c.query('select app_public.send_invoice($1)', [id]);
          return made;
        });
        const outcomes = await Promise.all(workers.map(async (ops) => {
          const codes: Array<string | null> = [];
          for (const o of ops) codes.push(await run(ids, o));
          return codes;
        }));
        const unexpected = outcomes.flat().filter((code) => code !== null && !RULES.has(code));
        expect(unexpected).toEqual([]);
        const { rows } = await pool('owner').query('select * from app_private.books_violations($1)', [t.orgId]);
        expect(rows).toEqual([]);
      }),
      { numRuns: 20 },
    );
    expect(runs).toBe(20);
    // And the property has teeth: the same report finds a payment the invoice does not count.
    const client = await pool('superuser').connect();
    try {
      await client.query('begin');
      await client.query('set local session_replication_role = replica');
      await client.query(`insert into app_public.payments (organization_id, invoice_id, amount, method, currency) values ($1, $2, 1, 'cash', 'USD')`, [t.orgId, t.invoiceId]);
      const { rows } = await client.query<{ rule: string }>('select rule from app_private.books_violations($1)', [t.orgId]);
      expect(rows.map((r) => r.rule)).toEqual(['invoice_amount_paid']);
    } finally {
      await client.query('rollback');
      client.release();
    }
  }, 300_000);
});
