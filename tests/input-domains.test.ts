// Untrusted input normalized and bounded once, in the database (sql/functions/value_domains.sql):
// money, quantities, percentages and dates in domains that refuse NaN, ±Infinity, out-of-range
// magnitudes and dates; email addresses stored lower-cased and trimmed; every value PostgreSQL
// refuses answered with a catalogued 4xx code, never INTERNAL (sql/errors.sql: error_sqlstates,
// domain_rules; src/http/errors.ts); and the API's scalars refusing the same values first, naming
// the field (src/http/scalars.ts). tests/input-fuzz.test.ts throws generated values at every
// mutation on top of these.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import { GraphQLError } from 'postgraphile/graphql';
import type { Atrium } from '../src/index.ts';
import { createLogger } from '../src/log.ts';
import { ErrorCatalog, makeMaskError } from '../src/http/errors.ts';
import { BIG_FLOAT_LIMIT, DATE_MAX, DATE_MIN } from '../src/http/scalars.ts';
import { errorCode, gql, startTestApp } from './support/app.ts';
import { asVisitor, closePools, pgError, pool, sessionOf, signUp, unique, urlFor, type Session } from './support/db.ts';
import { commitAs, one, oneTenant, type Tenant } from './support/fixtures.ts';
import { DOMAIN_RULE_SAMPLES, SQLSTATE_SAMPLES } from './support/value-errors.ts';

let t: Tenant;
let own: Session;
let app: Atrium;
let token: string;
let catalog: ErrorCatalog;

beforeAll(async () => {
  [t, app, catalog] = await Promise.all([oneTenant('values'), startTestApp(), ErrorCatalog.load(urlFor('owner'))]);
  own = sessionOf(t.owner, t.orgId);
  const login = await gql<{ login: { accessToken: string } }>(app.url!, 'mutation($i: LoginInput!) { login(input: $i) { accessToken } }', {
    i: { email: t.owner.email, password: 'correct horse battery', organizationId: t.orgId },
  });
  token = login.data!.login.accessToken;
}, 120_000);
afterAll(async () => {
  await app?.stop();
  await closePools();
});

const call = (query: string, variables: Record<string, unknown> = {}) => gql(app.url!, query, variables, token);

/** What the API answers for an error PostgreSQL raised (the code and message a client sees). */
function answerFor(error: unknown): { code: unknown; message: string } {
  const masked = makeMaskError(catalog, createLogger('silent'))(new GraphQLError('x', { originalError: error as Error }));
  return { code: masked.extensions.code, message: masked.message };
}

/** Runs `sql` as the organization's owner through the API's role (rolled back) and returns the error. */
const refused = (sql: string, params: unknown[] = []) => pgError(asVisitor(own, (c) => c.query(sql, params)));

/** Runs `fn` on the owner role's connection (no row-level security, every grant) and rolls back. */
async function asOwnerRolledBack<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool('owner').connect();
  try {
    await client.query('begin');
    return await fn(client);
  } finally {
    await client.query('rollback');
    client.release();
  }
}

describe('money, quantities, percentages', () => {
  test('a money column refuses NaN, ±Infinity and 10^12 or more, from any SQL client (not only the API)', async () => {
    for (const bad of ['NaN', 'Infinity', '-Infinity', '1e12', '-1e12', '1e30']) {
      const error = await refused(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'x', 1, $2)`, [t.draftInvoiceId, bad]);
      expect({ bad, code: error.code }).toEqual({ bad, code: bad === 'NaN' ? '23514' : '22003' });
      expect({ bad, code: answerFor(error).code }).toEqual({ bad, code: 'INVALID_VALUE' });
    }
    // The largest amount a money column holds.
    const ok = await asVisitor(own, (c) => one<{ value: string }>(c, `insert into app_public.deals (client_company_id, title, value) values ($1, 'Max', 999999999999.99) returning value`, [t.clientId]));
    expect(ok).toEqual({ value: '999999999999.99' });
  });

  test('a quantity refuses NaN and ±Infinity; a tax rate is 0 to 100 and never NaN', async () => {
    for (const bad of ['NaN', 'Infinity']) {
      const error = await refused(`insert into app_public.proposal_line_items (proposal_id, description, quantity, unit_price) values ((select id from app_public.proposals where status = 'draft' limit 1), 'x', $1, 1)`, [bad]);
      expect(answerFor(error).code).toBe('INVALID_VALUE');
    }
    for (const bad of ['NaN', '101', '-1']) {
      const error = await refused('update app_public.invoices set tax_rate = $2 where id = $1', [t.draftInvoiceId, bad]);
      expect({ bad, answer: answerFor(error) }).toEqual({ bad, answer: { code: 'INVALID_VALUE', message: 'A percentage must be a number from 0 to 100.' } });
    }
  });

  test('the reported exploit is closed: unitPrice "NaN" is INVALID_VALUE naming the field, and the invoice it would have made payable cannot be paid a billion', async () => {
    const invoice = (await call('mutation($c: UUID!) { createInvoice(input: { invoice: { clientCompanyId: $c } }) { invoice { rowId } } }', { c: t.clientId })).data!.createInvoice.invoice.rowId;
    const line = 'mutation($input: CreateInvoiceLineItemInput!) { createInvoiceLineItem(input: $input) { invoiceLineItem { amount } } }';
    const nan = await call(line, { input: { invoiceLineItem: { invoiceId: invoice, description: 'Work', unitPrice: 'NaN' } } });
    expect(errorCode(nan)).toBe('INVALID_VALUE');
    expect(nan.errors![0].message).toMatch(/^Variable "\$input" got invalid value "NaN" at "input\.invoiceLineItem\.unitPrice"; Expected a decimal number/);
    expect((await call(line, { input: { invoiceLineItem: { invoiceId: invoice, description: 'Work', unitPrice: '100' } } })).errors).toBeUndefined();
    const sent = await call('mutation($i: UUID!) { sendInvoice(input: { invoiceId: $i }) { invoice { total balance } } }', { i: invoice });
    expect(sent.data!.sendInvoice.invoice).toEqual({ total: '100.00', balance: '100.00' });
    const pay = await call(`mutation($i: UUID!) { recordPayment(input: { invoiceId: $i, amount: "1000000000", receivedOn: "2026-01-20", method: bank_transfer }) { payment { amount } } }`, { i: invoice });
    expect(errorCode(pay)).toBe('OVERPAYMENT');
    // And straight from SQL, where no scalar checks anything: NaN never reaches a balance.
    const direct = await refused(`insert into app_public.invoice_line_items (invoice_id, description, unit_price) values ($1, 'x', 'NaN')`, [t.draftInvoiceId]);
    expect(direct.code).toBe('23514');
  });
});

describe('dates', () => {
  test('every date column refuses infinity, year 1 and year 20000, from any SQL client', async () => {
    const { rows: columns } = await pool('owner').query<{ table: string; column: string }>(
      `select c.relname as table, a.attname as column from pg_attribute a join pg_class c on c.oid = a.attrelid
       where c.relnamespace = 'app_public'::regnamespace and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped
         and coalesce(nullif((select typbasetype from pg_type where oid = a.atttypid), 0), a.atttypid) = 'date'::regtype
       order by 1, 2`,
    );
    expect(columns.length).toBeGreaterThan(20);
    for (const { table, column } of columns) {
      for (const bad of ['infinity', '-infinity', '0001-01-01', '20000-01-01', '1899-12-31', '3000-01-01']) {
        // As the owner role, which bypasses row-level security and every grant: only the domain
        // stands in the way (the fixture organization has rows in every tenant table).
        const error = await pgError(asOwnerRolledBack((c) => c.query(`update app_public.${table} set ${column} = $1 where ${table === 'organizations' ? 'id' : 'organization_id'} = $2`, [bad, t.orgId])));
        expect({ table, column, bad, code: error.code }).toEqual({ table, column, bad, code: '23514' });
      }
    }
  });

  test(`a date from ${DATE_MIN} to ${DATE_MAX} is taken; 2024-02-30 answers INVALID_VALUE (22008), not INTERNAL`, async () => {
    const row = await asVisitor(own, (c) => one<{ due_on: string }>(c, `update app_public.invoices set due_on = '2999-12-31', issued_on = '1900-01-01' where id = $1 returning due_on::text`, [t.draftInvoiceId]));
    expect(row.due_on).toBe('2999-12-31');
    const error = await refused(`update app_public.invoices set due_on = '2024-02-30' where id = $1`, [t.draftInvoiceId]);
    expect(error.code).toBe('22008');
    expect(answerFor(error)).toEqual({ code: 'INVALID_VALUE', message: 'A date or time does not exist (e.g. 2024-02-30) or is out of range.' });
  });
});

describe('email addresses', () => {
  test('are stored lower-cased and trimmed in contacts, vendors, invitations and users, and found by sign-in', async () => {
    const stored = await commitAs(own, async (c) => {
      const contact = await one<{ id: string; email: string }>(c, `insert into app_public.contacts (client_company_id, first_name, email) values ($1, 'Ada', '  Ada.Lovelace@Example.COM ') returning id, email`, [t.clientId]);
      return {
        contact: contact.email,
        vendor: (await one<{ email: string }>(c, `insert into app_public.vendors (name, email) values ($1, 'Billing@Vendor.EXAMPLE') returning email`, [unique('Vendor')])).email,
        updated: (await one<{ email: string }>(c, `update app_public.contacts set email = ' SECOND@Example.com' where id = $1 returning email`, [contact.id])).email,
      };
    });
    expect(stored).toEqual({ contact: 'ada.lovelace@example.com', vendor: 'billing@vendor.example', updated: 'second@example.com' });

    // Invitations: invite_member trims and lower-cases; so would a direct insert.
    const invitee = `${unique('Invitee')}@Example.COM`;
    await commitAs(own, (c) => c.query('select app_public.invite_member($1, $2)', [`  ${invitee}  `, 'member']));
    const { rows: invitations } = await pool('owner').query('select email from app_public.invitations where organization_id = $1 and email = $2', [t.orgId, invitee.toLowerCase()]);
    expect(invitations).toHaveLength(1);

    // Users: an address written with capitals and spaces (here by the owner role, as a data fix
    // would) is stored normalized, and sign-in finds it whatever case the user types.
    const user = await signUp('mixed');
    const email = `${unique('Mixed')}@Example.COM`;
    const { rows: users } = await pool('owner').query('update app_public.users set email = $2 where id = $1 returning email', [user.userId, `  ${email} `]);
    expect(users).toEqual([{ email: email.toLowerCase() }]);
    const login = await gql(app.url!, 'mutation($i: LoginInput!) { login(input: $i) { accessToken } }', { i: { email: email.toUpperCase(), password: 'correct horse battery' } });
    expect(login.errors).toBeUndefined();

    // A direct write as the owner role: the trigger normalizes whoever writes.
    const owner = await pool('owner').query(`update app_public.vendors set email = ' UPPER@Vendor.example ' where organization_id = $1 returning email`, [t.orgId]);
    expect(new Set(owner.rows.map((r) => r.email))).toEqual(new Set(['upper@vendor.example']));
  });

  test('a malformed address answers INVALID_EMAIL with the rule, not a check-constraint error', async () => {
    const error = await refused(`insert into app_public.contacts (client_company_id, first_name, email) values ($1, 'A', 'not an email')`, [t.clientId]);
    expect(error.code).toBe('23514');
    expect(answerFor(error)).toEqual({ code: 'INVALID_EMAIL', message: 'An email address must look like name@example.com (at most 320 characters, no spaces inside).' });
    const res = await call('mutation($c: UUID!) { createContact(input: { contact: { clientCompanyId: $c, firstName: "A", email: "a b@example.com" } }) { contact { email } } }', { c: t.clientId });
    expect(errorCode(res)).toBe('INVALID_EMAIL');
  });
});

describe('errors PostgreSQL raises about values', () => {
  // One real PostgreSQL error per row of app_private.error_sqlstates (tests/support/value-errors.ts).
  const samples = SQLSTATE_SAMPLES;

  test('every further SQLSTATE answers its catalogued 4xx code and message, never INTERNAL', async () => {
    const { rows } = await pool('owner').query<{ sqlstate: string; code: string; message: string }>('select sqlstate, code, message from app_private.error_sqlstates order by 1');
    expect(Object.keys(samples).sort()).toEqual(rows.map((r) => r.sqlstate));
    for (const row of rows) {
      const error = await pgError(pool('owner').query(samples[row.sqlstate]));
      expect({ sqlstate: row.sqlstate, raised: error.code, answer: answerFor(error) }).toEqual({ sqlstate: row.sqlstate, raised: row.sqlstate, answer: { code: row.code, message: row.message } });
      expect(catalog.byCode(row.code).httpStatus).toBeGreaterThanOrEqual(400);
      expect(catalog.byCode(row.code).httpStatus).toBeLessThan(500);
    }
  });

  // One value breaking each rule of app_private.domain_rules (tests/support/value-errors.ts).
  const breaking = DOMAIN_RULE_SAMPLES;

  test('a value breaking a domain rule answers the rule’s code and message (not CONSTRAINT_VIOLATION)', async () => {
    const { rows } = await pool('owner').query<{ constraint_name: string; code: string; message: string }>('select constraint_name, code, message from app_private.domain_rules order by 1');
    expect(Object.keys(breaking).sort()).toEqual(rows.map((r) => r.constraint_name));
    for (const rule of rows) {
      const error = await pgError(pool('owner').query(breaking[rule.constraint_name]));
      expect({ rule: rule.constraint_name, answer: answerFor(error) }).toEqual({ rule: rule.constraint_name, answer: { code: rule.code, message: rule.message } });
    }
  });
});

describe('the API’s scalars refuse the same values first, naming the field', () => {
  const cases: Array<[string, string, Record<string, unknown>, RegExp]> = [
    ['BigFloat NaN', 'createInvoiceLineItem', { invoiceLineItem: { invoiceId: 'DRAFT', description: 'x', unitPrice: 'NaN' } }, /at "input\.invoiceLineItem\.unitPrice"; Expected a decimal number/],
    ['BigFloat Infinity', 'createInvoiceLineItem', { invoiceLineItem: { invoiceId: 'DRAFT', description: 'x', unitPrice: '1', quantity: 'Infinity' } }, /at "input\.invoiceLineItem\.quantity"; Expected a decimal number/],
    ['BigFloat 1e30', 'createInvoiceLineItem', { invoiceLineItem: { invoiceId: 'DRAFT', description: 'x', unitPrice: '1e30' } }, /at "input\.invoiceLineItem\.unitPrice"; A number must be below 1,000,000,000,000/],
    ['Date 2024-02-30', 'createInvoice', { invoice: { clientCompanyId: 'CLIENT', dueOn: '2024-02-30' } }, /at "input\.invoice\.dueOn"; There is no such day: 2024-02-30\./],
    ['Date 0001-01-01', 'createInvoice', { invoice: { clientCompanyId: 'CLIENT', dueOn: '0001-01-01' } }, /at "input\.invoice\.dueOn"; A date must be between 1900-01-01 and 2999-12-31\./],
    ['Date 20000-01-01', 'createInvoice', { invoice: { clientCompanyId: 'CLIENT', issuedOn: '20000-01-01' } }, /at "input\.invoice\.issuedOn"; Expected a date as YYYY-MM-DD\./],
    ['Date infinity', 'createInvoice', { invoice: { clientCompanyId: 'CLIENT', dueOn: 'infinity' } }, /at "input\.invoice\.dueOn"; Expected a date as YYYY-MM-DD\./],
    ['String with NUL', 'createClientCompany', { clientCompany: { name: 'Acme\u0000Corp' } }, /at "input\.clientCompany\.name"; Text must not contain the NUL character/],
    ['BigInt overflow', 'requestFileUpload', { engagementId: 'ENGAGEMENT', name: 'a.pdf', contentType: 'application/pdf', sizeBytes: '9223372036854775808' }, /at "input\.sizeBytes"; Expected a whole number/],
  ];

  test.each(cases)('%s: INVALID_VALUE at the field', async (_what, mutation, input, message) => {
    const ids: Record<string, string> = { DRAFT: t.draftInvoiceId, CLIENT: t.clientId, ENGAGEMENT: t.engagementId };
    const filled = JSON.parse(JSON.stringify(input), (_k, v) => (typeof v === 'string' && ids[v] ? ids[v] : v));
    const type = `${mutation[0].toUpperCase()}${mutation.slice(1)}Input!`;
    const res = await call(`mutation($input: ${type}) { ${mutation}(input: $input) { clientMutationId } }`, { input: filled });
    expect(errorCode(res)).toBe('INVALID_VALUE');
    expect(res.errors!.map((e) => e.message)).toContainEqual(expect.stringMatching(message));
  });

  test('a Datetime that is not a point in time (infinity, 2024-02-30T…) is refused in a filter too', async () => {
    for (const bad of ['infinity', '2024-02-30T10:00:00Z', '2024-01-01T25:00:00Z']) {
      const res = await call('query($t: Datetime) { contracts(filter: { createdAt: { greaterThan: $t } }) { totalCount } }', { t: bad });
      expect({ bad, code: errorCode(res) }).toEqual({ bad, code: 'INVALID_VALUE' });
    }
    expect((await call('query($t: Datetime) { contracts(filter: { createdAt: { greaterThan: $t } }) { totalCount } }', { t: '2024-02-29T10:00:00+02:00' })).errors).toBeUndefined();
  });

  test('a bad literal in the document is refused in the same words, with its location', async () => {
    const res = await call(`mutation { createInvoiceLineItem(input: { invoiceLineItem: { invoiceId: "${t.draftInvoiceId}", description: "x", unitPrice: "NaN" } }) { clientMutationId } }`);
    expect(res.errors![0].message).toMatch(/^Expected value of type "BigFloat", found "NaN"; Expected a decimal number/);
    expect(res.errors![0]).toHaveProperty('locations');
  });

  test('the scalars’ bounds are the domains’ bounds', async () => {
    // The widest numeric domain holds magnitudes below 10^(precision - scale).
    const { rows } = await pool('owner').query<{ digits: number }>(
      `select max(((typtypmod - 4) >> 16) - ((typtypmod - 4) & 65535)) as digits from pg_type
       where typnamespace = 'app_public'::regnamespace and typtype = 'd' and typbasetype = 'numeric'::regtype`,
    );
    expect(BIG_FLOAT_LIMIT).toBe(10 ** rows[0].digits);
    const day = (d: string, n: number) => new Date(Date.parse(`${d}T00:00:00Z`) + n * 86_400_000).toISOString().slice(0, 10);
    for (const [date, takes] of [[DATE_MIN, true], [DATE_MAX, true], [day(DATE_MIN, -1), false], [day(DATE_MAX, 1), false]] as const) {
      const taken = await pool('owner').query('select $1::text::app_public.business_date as d', [date]).then(() => true, () => false);
      expect({ date, takes: taken }).toEqual({ date, takes });
    }
  });
});

describe('the migration step (app_private.set_column_domain)', () => {
  test('keeps values, generated columns (expression, comment) and the triggers that name the columns', async () => {
    await asOwnerRolledBack(async (c) => {
      await c.query(`create table app_public.domain_probe (id int primary key, price numeric(14,2), qty numeric(12,2), total numeric(14,2) generated always as (round(price * qty, 2)) stored)`);
      await c.query(`comment on column app_public.domain_probe.total is 'price times quantity'`);
      await c.query(`create function app_public.domain_probe_tg() returns trigger language plpgsql as 'begin return new; end'`);
      await c.query(`create trigger tg_domain_probe__price before update of price on app_public.domain_probe for each row execute function app_public.domain_probe_tg()`);
      await c.query(`insert into app_public.domain_probe (id, price, qty) values (1, 12.5, 2)`);
      await c.query(`call app_private.set_column_domain('app_public.domain_probe', 'app_public.money_amount', 'price', 'total')`);
      await c.query(`call app_private.set_column_domain('app_public.domain_probe', 'app_public.quantity', 'qty')`);
      await c.query(`call app_private.set_column_domain('app_public.domain_probe', 'app_public.quantity', 'qty')`); // again: a no-op
      const { rows } = await c.query(`select price, qty, total, col_description('app_public.domain_probe'::regclass, (select attnum from pg_attribute where attrelid = 'app_public.domain_probe'::regclass and attname = 'total')) as comment from app_public.domain_probe`);
      expect(rows).toEqual([{ price: '12.50', qty: '2.00', total: '25.00', comment: 'price times quantity' }]);
      const types = await c.query(`select attname, format_type(atttypid, atttypmod) as type, attgenerated from pg_attribute where attrelid = 'app_public.domain_probe'::regclass and attnum > 0 and not attisdropped order by attname`);
      expect(types.rows).toEqual([
        { attname: 'id', type: 'integer', attgenerated: '' },
        { attname: 'price', type: 'app_public.money_amount', attgenerated: '' },
        { attname: 'qty', type: 'app_public.quantity', attgenerated: '' },
        { attname: 'total', type: 'app_public.money_amount', attgenerated: 's' },
      ]);
      const triggers = await c.query(`select tgname from pg_trigger where tgrelid = 'app_public.domain_probe'::regclass and not tgisinternal`);
      expect(triggers.rows).toEqual([{ tgname: 'tg_domain_probe__price' }]);
      expect((await pgError(c.query(`insert into app_public.domain_probe (id, price, qty) values (2, 'NaN', 1)`))).code).toBe('23514');
    });
  });

  test('stops with a message naming the column when stored values break the domain', async () => {
    const error = await asOwnerRolledBack(async (c) => {
      await c.query(`create table app_public.domain_probe (id int primary key, price numeric(14,2))`);
      await c.query(`insert into app_public.domain_probe values (1, 'NaN')`);
      return pgError(c.query(`call app_private.set_column_domain('app_public.domain_probe', 'app_public.money_amount', 'price')`));
    });
    expect(error.message).toMatch(/^rows of app_public\.domain_probe hold values that app_public\.money_amount refuses in \{price\}/);
  });

  test('normalizes stored email addresses, and stops naming the unique index when two become equal', async () => {
    const normalized = await asOwnerRolledBack(async (c) => {
      await c.query(`create table app_public.domain_probe (id int primary key, email text unique)`);
      await c.query(`insert into app_public.domain_probe values (1, ' Ada@Example.COM '), (2, 'bob@example.com')`);
      await c.query(`call app_private.set_column_domain('app_public.domain_probe', 'app_public.email_address', 'email')`);
      return (await c.query('select email from app_public.domain_probe order by id')).rows.map((r) => r.email);
    });
    expect(normalized).toEqual(['ada@example.com', 'bob@example.com']);
    const clash = await asOwnerRolledBack(async (c) => {
      await c.query(`create table app_public.domain_probe (id int primary key, email text unique)`);
      await c.query(`insert into app_public.domain_probe values (1, 'ada@example.com'), (2, ' ADA@example.com')`);
      return pgError(c.query(`call app_private.set_column_domain('app_public.domain_probe', 'app_public.email_address', 'email')`));
    });
    expect(clash.message).toBe('normalizing {email} of app_public.domain_probe makes two rows equal under domain_probe_email_key: merge them, then migrate again');
  });
});
