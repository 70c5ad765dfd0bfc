// Generated values thrown at every mutation (fast-check): whatever a signed-in owner sends, the API
// answers with data or with a documented 4xx-class code — never INTERNAL, never an error without
// a code, never a 5xx — and no stored row breaks a value rule afterwards (no NaN or infinite
// number, no date outside 1900–2999, no email address that is not lower-cased and trimmed:
// app_private.values_breaking_rules, the same query as sql/checks/stored_values_keep_rules.sql).
//
// The mutations come from the API's schema object, so a new mutation is covered the moment it
// exists. Each argument's value is generated from its GraphQL input type. Every scalar in it has
// a plausible value (an id of the right table, a small amount, a date of this decade, a valid
// email address) and a nasty one (NaN, ±Infinity, -0, 1e30, huge and negative integers,
// 2024-02-30, 0001-01-01, 20000-01-01, infinity, NUL characters, very long strings, unicode,
// empty strings, emails with spaces and capitals, random and malformed ids); a request is all
// plausible, plausible but for one nasty value (chosen with a bias for amounts, dates and
// emails: the values the rules are about), or nasty here and there. So most calls get past the
// obvious checks and carry the nasty value down to the database.
//
// Reproducible: a fixed seed by default. INPUT_FUZZ_SEED picks another and INPUT_FUZZ_RUNS the
// runs per mutation (default 8: about 1,500 requests, 20-40 s), e.g.
//   INPUT_FUZZ_RUNS=200 INPUT_FUZZ_SEED=$RANDOM npm run test:jest -- tests/input-fuzz.test.ts
// INPUT_FUZZ_TRACE=<file> appends one line per request (mutation, codes, first message).
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import pino from 'pino';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import {
  getNamedType,
  isEnumType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
  isObjectType,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLNamedType,
  type GraphQLSchema,
} from 'postgraphile/graphql';
import { startAtrium, type Atrium } from '../src/index.ts';
import { ROOT } from '../src/paths.ts';
import { buildApiSchema } from '../src/http/schema-export.ts';
import { gql, type GraphQLResponse } from './support/app.ts';
import { closePools, pool, testConfig, unique, urlFor } from './support/db.ts';
import { oneTenant, type Tenant } from './support/fixtures.ts';
import { testLogger } from './support/log.ts';

const SEED = Number(process.env.INPUT_FUZZ_SEED ?? 20261130);
const RUNS = Number(process.env.INPUT_FUZZ_RUNS ?? 8);
const PASSWORD = 'correct horse battery'; // tests/support/db.ts signUp


let app: Atrium;
let schema: GraphQLSchema;
let tenant: Tenant;
let token: string;
/** The server's log lines (warnings and errors), read to explain INTERNAL answers. */
const logLines: string[] = [];

/** Existing rows of the organization: ids per table, Node IDs, members' emails (not the owner's). */
const known = { ids: new Map<string, string[]>(), uuids: [] as string[], nodeIds: [] as string[], emails: [] as string[] };
let idsQuery = '';

/** Every code docs/ERRORS.md documents, with its HTTP status. */
function documentedCodes(): Map<string, number> {
  const text = fs.readFileSync(path.join(ROOT, 'docs/ERRORS.md'), 'utf8');
  const codes = new Map<string, number>();
  for (const m of text.matchAll(/^\| `([A-Z_]+)` \| (?:`[0-9A-Z]{5}` \| )?(\d{3}) \|/gm)) codes.set(m[1], Number(m[2]));
  return codes;
}

/** Signs in as the organization's owner (again, after a mutation such as `logout` ended the session). */
async function signIn(): Promise<void> {
  const login = await gql<{ login: { accessToken: string } }>(
    app.url!,
    'mutation($i: LoginInput!) { login(input: $i) { accessToken } }',
    { i: { email: tenant.owner.email, password: PASSWORD, organizationId: tenant.orgId } },
  );
  if (!login.data?.login) throw new Error(`cannot sign in as the owner: ${JSON.stringify(login.errors)}`);
  token = login.data.login.accessToken;
}

/** Reads the ids of the organization's rows again (mutations add and remove some). */
async function refreshIds(): Promise<void> {
  const { rows } = await pool('owner').query<{ t: string; id: string }>(idsQuery, [tenant.orgId]);
  known.ids = new Map();
  for (const { t, id } of rows) known.ids.set(t, [...(known.ids.get(t) ?? []), id]);
  known.uuids = [...new Set(rows.map((r) => r.id))];
}

beforeAll(async () => {
  const log = pino({ level: 'warn', base: null }, { write: (line: string) => void logLines.push(line) });
  app = await startAtrium(testConfig({ DATABASE_URL: urlFor('owner') }), log, { api: true, worker: false });
  tenant = await oneTenant('fuzz');
  schema = await buildApiSchema(testConfig(), { ownerUrl: urlFor('owner'), authenticatorUrl: urlFor('authenticator'), jwtSecret: process.env.JWT_SECRET! }, testLogger('test', 'error'));
  await signIn();

  // One query for the newest ids of every tenant table (and the members' users).
  const { rows: tables } = await pool('owner').query<{ name: string; ordered: boolean }>(
    `select c.relname as name, exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'created_at') as ordered
     from pg_class c
     where c.relnamespace = 'app_public'::regnamespace and c.relkind = 'r'
       and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id')
       and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'id' and a.atttypid = 'uuid'::regtype)
     order by 1`,
  );
  idsQuery = [
    `select 'organizations' as t, $1::uuid as id`,
    `select 'users', m.user_id from app_public.organization_members m where m.organization_id = $1`,
    ...tables.map(({ name, ordered }) => `(select '${name}', id from app_public.${name} where organization_id = $1 order by ${ordered ? 'created_at desc, ' : ''}id limit 8)`),
  ].join('\nunion all\n');
  await refreshIds();

  for (const field of Object.values(schema.getQueryType()!.getFields())) {
    const type = getNamedType(field.type);
    const nodes = isObjectType(type) ? type.getFields().nodes : undefined;
    const node = nodes && getNamedType(nodes.type);
    if (!node || !isObjectType(node) || !node.getFields().id || field.args.some((a) => isNonNullType(a.type))) continue;
    const res = await gql<Record<string, { nodes: Array<{ id: string }> }>>(app.url!, `{ ${field.name}(first: 2) { nodes { id } } }`, {}, token);
    res.data?.[field.name]?.nodes.forEach((n) => known.nodeIds.push(n.id));
  }
  const { rows: emails } = await pool('owner').query<{ email: string }>(
    'select u.email from app_public.users u join app_public.organization_members m on m.user_id = u.id where m.organization_id = $1 and u.id <> $2',
    [tenant.orgId, tenant.owner.userId],
  );
  // Not the owner's: wrong passwords for it would lock the account this test signs in with.
  known.emails = emails.map((e) => e.email);
}, 120_000);

afterAll(async () => {
  await app?.stop();
  await closePools();
});

// --- Values: each scalar in an input is a Leaf with a plausible and a nasty value. ---

/** One scalar of an input: `realize` decides which value the request carries. */
interface Leaf {
  leaf: true;
  plausible: unknown;
  nasty: unknown;
  /** For amounts, dates and emails: the values the rules are about (NaN, infinity, ' Ada@Example.COM ', …). */
  headline?: readonly unknown[];
  /** How often this leaf is the one nasty value of a request (amounts, dates, emails: more). */
  weight: number;
}
type Tree = Leaf | null | Tree[] | { [key: string]: Tree };
const isLeaf = (t: Tree): t is Leaf => t !== null && typeof t === 'object' && (t as Leaf).leaf === true;

const leaf = (plausible: fc.Arbitrary<unknown>, nasty: fc.Arbitrary<unknown>, weight = 1, headline?: readonly unknown[]): fc.Arbitrary<Tree> =>
  fc.tuple(plausible, nasty).map(([p, n]): Leaf => ({ leaf: true, plausible: p, nasty: n, headline, weight }));

const NUL = '\u0000';
const nastyStrings = fc.oneof(
  fc.constantFrom(NUL, `a${NUL}b`, '', ' ', 'x'.repeat(100_000), 'y'.repeat(5_000)),
  fc.constantFrom('😀𝔘𝔫𝔦\u202eevil', '\ud800', "'; drop table app_public.users; --", '\n\t\r', '%_\\', '${x}', '<script>alert(1)</script>'),
  fc.constantFrom(' Ada@Example.COM ', 'ADA@EXAMPLE.COM', 'not an email', 'a@b'),
  fc.string({ unit: 'binary', maxLength: 40 }),
);
// The values of the issue, by kind; a headline request (mode 3) picks one kind and puts its n-th
// value in every field of that kind (NaN in every amount of a deal, 'infinity' in every date).
const headlineEmails = [' Ada@Example.COM ', 'BOB@EXAMPLE.ORG', '  Dave@Example.net', '\tEve@Example.com'];
const headlineDecimals = ['NaN', 'Infinity', '-Infinity', '1e30'];
const headlineDates = ['infinity', '0001-01-01', '20000-01-01', '2024-02-30'];
const headlineDatetimes = ['infinity', '0001-01-01T00:00:00Z', '20000-01-01T00:00:00Z', '2024-02-30T00:00:00Z'];
const nastyEmails = fc.oneof(
  fc.constantFrom(' Ada@Example.COM ', 'BOB@EXAMPLE.ORG', '  dave@EXAMPLE.net', '\tEve@Example.com\n', 'x@y.z'),
  fc.emailAddress().map((e) => ` ${e.toUpperCase()} `),
  fc.constantFrom(`e${NUL}@x.com`, 'no at sign', 'a b@c.de', '@example.com', `${'a'.repeat(320)}@example.com`, ''),
);
const nastyDecimals = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('NaN', 'Infinity', '-Infinity') },
  { weight: 2, arbitrary: fc.constantFrom('1e30', '-1e30', '1e12', '999999999999.99', '999999999999.995', '99999999999', '1e10', '101', '-1', '-0', '0', -0, 1e308) },
  { weight: 1, arbitrary: fc.constantFrom('0.001', '1e-30', '1e-99999', '', ' 1', 'abc', '0x10', '1_000', '١٢٣', '9'.repeat(400), 12.5) },
  { weight: 1, arbitrary: fc.double().map((d) => String(d)) },
);
const nastyDates = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('2024-02-30', '0001-01-01', '20000-01-01', 'infinity', '-infinity') },
  { weight: 2, arbitrary: fc.constantFrom('1899-12-31', '1900-01-01', '2999-12-31', '3000-01-01', '2024-13-01', '2024-00-10', '2023-02-29', '2024-02-29', '0000-01-01') },
  { weight: 1, arbitrary: fc.constantFrom('', '2024-1-1', '2024-01-01T00:00:00Z', 'today', 'epoch', `2024-01-01${NUL}`) },
);
const nastyDatetimes = fc.constantFrom(
  '2024-02-30T00:00:00Z', 'infinity', '0001-01-01T00:00:00Z', '20000-01-01T00:00:00Z', '2024-01-01T25:00:00Z', '2024-01-01T23:59:60Z', '', 'now', '2024-01-01 10:00:00+99',
);
const nastyInts = fc.constantFrom(2147483647, -2147483648, 2147483648, -2147483649, 1e30, 1.5, '1', -1, 0, 100000);
const nastyBigInts = fc.constantFrom('9223372036854775807', '9223372036854775808', '-9223372036854775809', '-1', '1e3', '1.5', '', 'NaN', 2 ** 60);
const plausibleDates = fc.date({ min: new Date('2024-01-01'), max: new Date('2030-12-31'), noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10));

const snake = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
const plural = (s: string) => (/[^aeiou]y$/.test(s) ? `${s.slice(0, -1)}ies` : /(s|x|ch|sh)$/.test(s) ? `${s}es` : `${s}s`);

/** The table a mutation works on, from its name (updateInvoiceLineItemById → invoice_line_items). */
function tableOf(mutation: string): string | undefined {
  const m = /^(?:create|update|delete|softDelete|restore)([A-Z][A-Za-z]*?)(?:By[A-Z][A-Za-z]*)?$/.exec(mutation);
  return m ? plural(snake(m[1])) : undefined;
}

/** The existing ids a UUID field named `name` most likely wants (invoiceId → invoices, assigneeMemberId → organization_members). */
function idsFor(name: string, mutation: string): string[] {
  if (name === 'rowId') return known.ids.get(tableOf(mutation) ?? '') ?? [];
  const words = snake(name.replace(/Id$/, '')).split('_');
  for (let k = words.length; k > 0; k -= 1) {
    const wanted = plural(words.slice(-k).join('_'));
    const table = [...known.ids.keys()].find((t) => t === wanted) ?? [...known.ids.keys()].find((t) => t.endsWith(`_${wanted}`));
    if (table) return known.ids.get(table)!;
  }
  return [];
}

function plausibleString(name: string): fc.Arbitrary<unknown> {
  if (/email/i.test(name)) return fc.constantFrom(...known.emails, 'carol@example.com').chain((e) => fc.constantFrom(e, `${unique('fuzz')}@example.com`));
  if (/url/i.test(name)) return fc.constant('https://hooks.example.test/atrium');
  if (/website/i.test(name)) return fc.constant('https://example.com');
  if (/password/i.test(name)) return fc.constant(PASSWORD);
  if (/permissionKey/.test(name)) return fc.constantFrom('invoices.read', 'deals.write', 'clients.read');
  if (/eventType/i.test(name)) return fc.constantFrom('invoice.paid', '*');
  if (/currency/i.test(name)) return fc.constantFrom('EUR', 'USD');
  if (/contentType/i.test(name)) return fc.constant('application/pdf');
  if (/storageKey|slug|token/i.test(name)) return fc.constant(unique('fuzz'));
  return fc.oneof(fc.constantFrom('Acme', 'Design work', 'A note', 'Kick-off'), fc.string({ minLength: 1, maxLength: 30 }));
}

/** The Leaf for a scalar named `type.name` in a field `name` of `mutation`'s input. */
function scalar(type: GraphQLNamedType, name: string, mutation: string): fc.Arbitrary<Tree> {
  switch (type.name) {
    case 'String':
      return /email/i.test(name) ? leaf(plausibleString(name), nastyEmails, 4, headlineEmails) : leaf(plausibleString(name), nastyStrings, 1);
    case 'Int':
      return leaf(fc.integer({ min: 1, max: 60 }), nastyInts, 1);
    case 'Float':
      return leaf(fc.double({ min: 0, max: 1000, noNaN: true }), fc.constantFrom(1e308, 'NaN', -1), 1);
    case 'Boolean':
      return leaf(fc.boolean(), fc.constantFrom('true', 1), 0.5);
    case 'BigFloat':
      return leaf(/rate|probability/i.test(name) ? fc.constantFrom('0', '10', '20') : fc.constantFrom('1', '2', '12.50', '150', '1000'), nastyDecimals, 6, headlineDecimals);
    case 'BigInt':
      return leaf(fc.constantFrom('1', '1024'), nastyBigInts, 1);
    case 'Date':
      return leaf(plausibleDates, nastyDates, 4, headlineDates);
    case 'Datetime':
      return leaf(plausibleDates.map((d) => `${d}T09:30:00Z`), nastyDatetimes, 2, headlineDatetimes);
    case 'UUID': {
      const ids = name === 'rowId' && mutation.startsWith('create') ? [] : idsFor(name, mutation);
      // The newest rows first: those the mutations before this one made (drafts, mostly).
      const plausible = ids.length
        ? fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...ids.slice(0, 2)) }, { weight: 3, arbitrary: fc.constantFrom(...ids) }, { weight: 1, arbitrary: fc.constantFrom(...known.uuids) })
        : fc.uuid();
      return leaf(plausible, fc.oneof(fc.uuid(), fc.constantFrom(...known.uuids), fc.constantFrom('not-a-uuid', '', '00000000-0000-0000-0000-000000000000', known.uuids[0].toUpperCase(), `${known.uuids[0]}${NUL}`)), 1);
    }
    case 'ID':
      return leaf(
        known.nodeIds.length ? fc.constantFrom(...known.nodeIds) : fc.constant('x'),
        fc.constantFrom('garbage', '', 'WyJmb28iXQ==', Buffer.from('["invoices","not-a-uuid"]').toString('base64'), Buffer.from(`["x",${'['.repeat(500)}`).toString('base64')),
        1,
      );
    case 'JSON':
      return leaf(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom({ [NUL]: 1 }, { a: NUL }, [`x${NUL}`], 'NaN'), 1);
    default:
      return leaf(fc.string({ minLength: 1, maxLength: 20 }), nastyStrings, 1);
  }
}

/** The Tree for an input of `type` (a field named `name`), depth-limited for recursive types. */
function valueFor(type: GraphQLInputType, name: string, mutation: string, depth: number): fc.Arbitrary<Tree> {
  if (isNonNullType(type)) {
    // Now and then a null where none is allowed: GraphQL must refuse it with a code.
    return fc.oneof({ weight: 60, arbitrary: present(type.ofType, name, mutation, depth) }, { weight: 1, arbitrary: fc.constant(null) });
  }
  return fc.option(present(type, name, mutation, depth), { nil: null, freq: 20 });
}

function present(type: GraphQLInputType, name: string, mutation: string, depth: number): fc.Arbitrary<Tree> {
  if (isListType(type)) return fc.array(valueFor(type.ofType, name, mutation, depth + 1), { minLength: 1, maxLength: 3 });
  if (isEnumType(type)) return leaf(fc.constantFrom(...type.getValues().map((v) => v.name)), fc.constant('NOT_A_VALUE'), 0.5);
  if (isInputObjectType(type)) {
    // Optional fields are left out about half the time; past depth 3 only required ones remain.
    const fields = Object.values(type.getFields()).filter((f) => depth < 3 || isNonNullType(f.type));
    const model = Object.fromEntries(fields.map((f) => [f.name, valueFor(f.type, f.name, mutation, depth + 1)]));
    return fc.record(model, { requiredKeys: fields.filter((f) => isNonNullType(f.type)).map((f) => f.name) }) as fc.Arbitrary<Tree>;
  }
  return scalar(type as GraphQLNamedType, name, mutation);
}

/**
 * The values a request carries: all plausible (mode 0), plausible but for one nasty leaf chosen
 * by weight (mode 1, the common case), nasty wherever `chaos` says (mode 2), or plausible but for
 * every amount, date and email, which carry the values the rules are about (mode 3: NaN in each
 * money field of a valid line, a due date of 'infinity', an address in capitals and spaces).
 */
function realize(tree: Tree, mode: number, choice: number, chaos: boolean[]): unknown {
  const leaves: Leaf[] = [];
  const collect = (t: Tree): void => {
    if (isLeaf(t)) leaves.push(t);
    else if (Array.isArray(t)) t.forEach(collect);
    else if (t !== null) Object.values(t).forEach(collect);
  };
  collect(tree);
  let nastyLeaf: Leaf | undefined;
  const kinds = [...new Set(leaves.map((l) => l.headline).filter((h) => h !== undefined))];
  const kind = kinds[Math.floor(choice * kinds.length)];
  if (mode === 1 && leaves.length) {
    let point = choice * leaves.reduce((sum, l) => sum + l.weight, 0);
    nastyLeaf = leaves.find((l) => (point -= l.weight) < 0) ?? leaves[leaves.length - 1];
  }
  let index = 0;
  const build = (t: Tree): unknown => {
    if (isLeaf(t)) {
      const nasty = t === nastyLeaf || (mode === 2 && chaos[index % chaos.length]);
      index += 1;
      if (mode === 3 && kind && t.headline === kind) return kind[Math.floor(((choice * kinds.length) % 1) * kind.length)];
      return nasty ? t.nasty : t.plausible;
    }
    if (Array.isArray(t)) return t.map(build);
    if (t === null) return null;
    return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, build(v)]));
  };
  return build(tree);
}

/** `{ __typename leaf… record { leaf… } }`: what the mutation returns, read back (serialized). */
function selection(field: GraphQLField<unknown, unknown>): string {
  const leaves = (type: GraphQLNamedType) =>
    isObjectType(type)
      ? Object.values(type.getFields())
          .filter((f) => isLeafType(getNamedType(f.type)) && f.args.every((a) => !isNonNullType(a.type)))
          .map((f) => f.name)
      : [];
  const type = getNamedType(field.type);
  if (!isObjectType(type)) return '';
  // The record the mutation made or changed (its payload's first object field), not the rows it
  // merely points at.
  const record = Object.values(type.getFields()).find(
    (f) => f.name !== 'query' && isObjectType(getNamedType(f.type)) && !/Edge$/.test(getNamedType(f.type).name) && f.args.every((a) => !isNonNullType(a.type)),
  );
  return `{ __typename ${leaves(type).join(' ')} ${record ? `${record.name} { __typename ${leaves(getNamedType(record.type)).join(' ')} }` : ''} }`;
}

/** Why an answer breaks the contract, or undefined if it keeps it. */
function breach(res: GraphQLResponse & { data?: unknown }, codes: Map<string, number>): string | undefined {
  if (res.status >= 500) return `HTTP ${res.status}`;
  if (!res.errors?.length) return res.data ? undefined : 'neither data nor errors';
  for (const error of res.errors) {
    const code = error.extensions?.code;
    if (!code) return `an error without a code: ${error.message}`;
    if (code === 'INTERNAL') {
      const errorId = (error.extensions as { errorId?: string }).errorId;
      const logged = logLines.map((l) => JSON.parse(l) as { errorId?: string; err?: { message?: string } }).find((l) => l.errorId === errorId);
      const cause = logged?.err?.message ?? '(not logged)';
      return `INTERNAL: ${cause}`;
    }
    const status = codes.get(code);
    if (status === undefined) return `an undocumented code ${code}: ${error.message}`;
    if (status < 400 || status > 499 || error.extensions?.httpStatus !== status) return `${code} is not a 4xx answer (${status}, httpStatus ${error.extensions?.httpStatus})`;
  }
  return undefined;
}

test(`every mutation answers data or a documented 4xx code to generated arguments (seed ${SEED}, ${RUNS} runs each)`, async () => {
  const codes = documentedCodes();
  const mutations = Object.values(schema.getMutationType()!.getFields()).sort((a, b) => (a.name < b.name ? -1 : 1));
  expect(mutations.length).toBeGreaterThan(100);
  const failures: string[] = [];
  let requests = 0;
  for (const [index, mutation] of mutations.entries()) {
    await refreshIds();
    const args = mutation.args;
    const definitions = args.map((a, i) => `$a${i}: ${a.type.toString()}`).join(', ');
    const call = args.map((a, i) => `${a.name}: $a${i}`).join(', ');
    const query = `mutation${definitions ? `(${definitions})` : ''} { ${mutation.name}${call ? `(${call})` : ''} ${selection(mutation)} }`;
    const trees = fc.tuple(...args.map((a) => valueFor(a.type, a.name, mutation.name, 0)));
    const variablesArb = fc
      .tuple(trees, fc.constantFrom(1, 1, 1, 1, 0, 2, 3, 3), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }))
      .map(([values, mode, choice, chaos]) => Object.fromEntries(values.map((tree, i) => [`a${i}`, realize(tree, mode, choice, chaos)])));
    const result = await fc.check(
      fc.asyncProperty(variablesArb, async (variables) => {
        requests += 1;
        const res = await gql(app.url!, query, variables, token);
        const why = breach(res, codes);
        if (process.env.INPUT_FUZZ_TRACE) fs.appendFileSync(process.env.INPUT_FUZZ_TRACE, `${mutation.name}\t${res.errors ? res.errors.map((e) => e.extensions?.code).join(',') : 'OK'}\t${res.errors?.[0]?.message.slice(0, 160) ?? ''}\n`);
        if (why) throw new Error(`${why}\n  variables: ${JSON.stringify(variables).slice(0, 600)}`);
      }),
      { seed: SEED + index, numRuns: RUNS, endOnFailure: true },
    );
    if (result.failed) failures.push(`${mutation.name}: ${(result.errorInstance as Error | undefined)?.message ?? result.counterexample}`);
    // A mutation may have ended the session (logout) or left the organization: sign in again.
    const current = await gql<{ currentOrganization: { rowId: string } | null }>(app.url!, '{ currentOrganization { rowId } }', {}, token);
    if (current.data?.currentOrganization?.rowId !== tenant.orgId) await signIn();
  }
  expect(failures).toEqual([]);
  expect(requests).toBeGreaterThanOrEqual(mutations.length * RUNS);
}, 600_000);

test('afterwards no stored value breaks a rule: no NaN or infinite number, no date outside 1900–2999, no email not lower-cased and trimmed', async () => {
  const { rows } = await pool('owner').query('select * from app_private.values_breaking_rules()');
  expect(rows).toEqual([]);
});
