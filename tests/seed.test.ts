// The demo data (`npm run seed`, and `npm start` on an empty embedded database): three
// organizations with a member of every role, a billing clerk and a portal user, and one client
// taken from deal to paid invoice, made through the API's own functions and policies.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import type { Database } from '../src/db/bootstrap.ts';
import { DEMO_PASSWORD, formatCredentials, seedDemoData, type DemoCredentials } from '../src/db/seed.ts';
import { formatDataQuality, measureDataQuality, TIMED_QUERIES } from '../src/db/data-quality.ts';
import { createLogger } from '../src/log.ts';
import { createLocalStorage } from '../src/storage/local.ts';
import { asVisitor, closePools, pool, roleName, urlFor } from './support/db.ts';

const db = {
  ownerUrl: urlFor('owner'),
  authenticatorUrl: urlFor('authenticator'),
  roles: { owner: roleName('owner'), authenticator: roleName('authenticator'), visitor: roleName('visitor'), worker: roleName('worker') },
} as unknown as Database;
const log = createLogger('silent', 'seed-test');
/** The demo files go where the run's APIs keep theirs (FILES_DIR). */
const storage = createLocalStorage({ dir: process.env.FILES_DIR!, baseUrl: 'http://localhost', signingKey: randomBytes(32) });

let credentials: DemoCredentials[];

beforeAll(async () => {
  const result = await seedDemoData(db, log, storage);
  expect(result.created).toBe(true);
  credentials = result.credentials;
}, 120_000);
afterAll(closePools);

test('three organizations, each with owner, admin, member, viewer, a billing clerk and a portal user', () => {
  expect(credentials.map((c) => c.organization)).toEqual(['Northwind Studio', 'Blue Harbor Consulting', 'Atlas Agency']);
  for (const org of credentials) {
    expect(org.users.map((u) => u.role).sort()).toEqual(['admin', 'client portal', 'member', 'member + Billing clerk', 'owner', 'viewer']);
  }
  const text = formatCredentials(credentials);
  expect(text).toContain(DEMO_PASSWORD);
  expect(text).toContain('owner@northwind.example');
});

test('each organization has the full lifecycle: won deal, accepted proposal, signed contract, project, time, a paid invoice', async () => {
  for (const org of credentials) {
    const { rows } = await pool('owner').query(
      `select
         (select count(*)::int from app_public.deals where organization_id = $1 and stage = 'won') as won_deals,
         (select count(*)::int from app_public.proposals where organization_id = $1 and status = 'accepted') as accepted,
         (select count(*)::int from app_public.contracts where organization_id = $1 and status = 'signed') as signed,
         (select count(*)::int from app_public.engagements where organization_id = $1 and status = 'active') as engagements,
         (select count(*)::int from app_public.tasks where organization_id = $1) as tasks,
         (select count(*)::int from app_public.time_entries where organization_id = $1) as time_entries,
         (select count(*)::int from app_public.invoices where organization_id = $1 and status = 'paid' and balance = 0) as paid_invoices,
         (select count(*)::int from app_public.payments where organization_id = $1) as payments`,
      [org.organizationId],
    );
    expect(rows[0]).toEqual({ won_deals: 1, accepted: 1, signed: 1, engagements: 1, tasks: 5, time_entries: 7, paid_invoices: 1, payments: 2 });
  }
});

test('each organization has a month of money: rate cards and costs, approved and submitted weeks, expenses approved, waiting and re-billed, budgets burning, approved work not invoiced yet, a credit note refunded, two currencies, tax codes, and books that add up', async () => {
  for (const org of credentials) {
    const base = (await pool('owner').query<{ currency: string }>('select currency from app_public.organizations where id = $1', [org.organizationId])).rows[0]!.currency;
    const { rows } = await pool('owner').query(
      `select
         (select count(*)::int from app_public.job_roles where organization_id = $1) as job_roles,
         (select count(*)::int from app_public.bill_rates where organization_id = $1) as bill_rates,
         (select count(*)::int from app_public.member_cost_rates where organization_id = $1) as cost_rates,
         (select count(*)::int from app_public.time_entry_costs where organization_id = $1 and hourly_cost is not null) as costed_entries,
         (select count(*)::int from app_public.timesheets where organization_id = $1 and status = 'approved') > 0 as approved_weeks,
         (select count(*)::int from app_public.timesheets where organization_id = $1 and status = 'submitted') as submitted_weeks,
         (select count(*)::int from app_public.credit_notes where organization_id = $1 and kind = 'credit' and number = 1) as credit_notes,
         (select count(*)::int from app_public.refunds where organization_id = $1) as refunds,
         (select array_agg(distinct currency order by currency) from app_public.invoices where organization_id = $1) as currencies,
         (select count(*)::int from app_public.exchange_rates where organization_id = $1) as exchange_rates,
         (select count(*)::int from app_public.expenses where organization_id = $1 and status = 'approved') as approved_expenses,
         (select count(*)::int from app_public.expenses where organization_id = $1 and status = 'submitted') as submitted_expenses,
         (select count(*)::int from app_public.expenses where organization_id = $1 and invoice_line_item_id is not null) as rebilled_expenses,
         (select count(*)::int from app_public.budgets b where organization_id = $1 and (app_public.budgets_burn(b)).hours_used > 0) as budgets_burning,
         (select count(*)::int from app_public.member_capacities where organization_id = $1) as capacities,
         (select count(*)::int from app_public.time_entries t where t.organization_id = $1 and t.billable and t.invoice_id is null
            and exists (select from app_public.timesheets s where s.organization_id = t.organization_id and s.member_id = t.member_id
                          and s.week_starts_on = date_trunc('week', t.work_date)::date and s.status = 'approved')) as unbilled_entries,
         (select array_agg(t.code order by t.code) from app_public.tax_codes t where t.organization_id = $1) as tax_codes,
         (select array_agg(distinct t.code) from app_public.invoice_line_items l join app_public.tax_codes t on t.organization_id = l.organization_id and t.id = l.tax_code_id
            where l.organization_id = $1) as line_tax_codes,
         (select count(*)::int from app_private.books_violations($1)) as violations`,
      [org.organizationId],
    );
    expect(rows[0]).toEqual({
      job_roles: 2, bill_rates: 2, cost_rates: 2, costed_entries: 6, approved_weeks: true, submitted_weeks: 1,
      credit_notes: 1, refunds: 1, currencies: [base, base === 'EUR' ? 'USD' : 'EUR'].sort(), exchange_rates: 1,
      approved_expenses: 2, submitted_expenses: 1, rebilled_expenses: 1, budgets_burning: 2, capacities: 2, unbilled_entries: 1,
      tax_codes: ['RC', 'STD'], line_tax_codes: ['RC'], violations: 0,
    });
  }
});

test('the demo users sign in with the printed password, and the portal user sees the client side only', async () => {
  const org = credentials[0];
  const portalEmail = org.users.find((u) => u.role === 'client portal')!.email;
  const grant = await asVisitor({}, (c) => c.query('select user_id, session_id, organization_id from app_private.login($1, $2, $3)', [portalEmail, DEMO_PASSWORD, org.organizationId]), { commit: true });
  const { user_id: userId, session_id: sessionId, organization_id: orgId } = grant.rows[0];
  expect(orgId).toBe(org.organizationId);
  const seen = await asVisitor({ userId, sessionId, orgId }, async (c) =>
    (await c.query(`select (select count(*)::int from app_public.invoices) as invoices, (select count(*)::int from app_public.threads) as threads, (select count(*)::int from app_public.deals) as deals`)).rows[0],
  );
  expect(seen).toEqual({ invoices: 2, threads: 1, deals: 0 });
});

test('the demo files are stored, with the sizes and types their rows declare, and available', async () => {
  const { rows } = await pool('owner').query<{ storage_key: string; size_bytes: string; content_type: string; status: string }>(
    'select storage_key, size_bytes, content_type, status from app_public.file_objects f join app_public.organizations o on o.id = f.organization_id where o.id = any ($1::uuid[])',
    [credentials.map((c) => c.organizationId)],
  );
  expect(credentials.length).toBeGreaterThan(0);
  expect(rows.length).toBe(2 * credentials.length);
  for (const row of rows) {
    expect(row.status).toBe('available');
    expect(await storage.head(row.storage_key)).toEqual({ size: Number(row.size_bytes), contentType: row.content_type });
  }
});

test('seeding again changes nothing and returns the same sign-ins', async () => {
  // The demo's organizations (by name) and users (by email): other test files add their own
  // organizations to this database meanwhile, so a count of all of them would not do.
  const demo = async () =>
    (
      await pool('owner').query(
        `select (select count(*)::int from app_public.organizations where name = any ($1)) as orgs,
                (select count(*)::int from app_public.users where email = any ($2)) as users`,
        [credentials.map((c) => c.organization), credentials.flatMap((c) => c.users.map((u) => u.email))],
      )
    ).rows[0];
  const before = await demo();
  expect(before.orgs).toBe(credentials.length);
  const again = await seedDemoData(db, log, storage);
  expect(again.created).toBe(false);
  expect(again.credentials).toEqual(credentials);
  expect(await demo()).toEqual(before);
});

test('the data-quality figures of docs/ENTITIES.md: full isolation, composite keys and FK indexes, timed queries', async () => {
  const quality = await measureDataQuality(db, log, storage);
  expect(quality.report).toMatchObject({ tenant_isolation_pct: '100.0', composite_fk_pct: '100.0', fk_indexed_pct: '100.0' });
  expect(quality.report.tables_defined).toBeGreaterThanOrEqual(30);
  expect(Object.keys(quality.p95ms)).toEqual(Object.keys(TIMED_QUERIES));
  for (const ms of Object.values(quality.p95ms)) expect(ms).toBeGreaterThan(0);
  expect(formatDataQuality(quality)).toContain('| Tenant isolation (RLS forced, visitor policies) | 100.0% of ');
}, 60_000);
