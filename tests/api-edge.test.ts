// The GraphQL edge (src/http/graphql-edge.ts, src/http/document-limits.ts): every document's
// cost is known before it runs and refused above a limit with QUERY_TOO_COMPLEX naming the
// limit; what grafserv refuses outside GraphQL gets a code; production closes introspection,
// suggestions and (when configured) every operation that is not registered; statements of a
// request stop at STATEMENT_TIMEOUT_MS; a row added without an organization is NO_ORGANIZATION.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { Atrium } from '../src/index.ts';
import { pgSettingsFor } from '../src/http/auth.ts';
import { ErrorCatalog, makeMaskError } from '../src/http/errors.ts';
import { loadPersistedOperations, operationId } from '../src/http/persisted-operations.ts';
import { createLogger } from '../src/log.ts';
import { GraphQLError } from 'postgraphile/graphql';
import { closePools, createOrganization, inTransaction, pgError, signUp, testConfig, urlFor, type User } from './support/db.ts';
import { startTestApp, tokenFor } from './support/app.ts';

let app: Atrium;
let owner: User;
let orgId: string;
let token: string;

beforeAll(async () => {
  app = await startTestApp();
  owner = await signUp('edge');
  orgId = await createOrganization(owner, 'edge');
  token = await tokenFor(owner, orgId);
}, 60_000);
afterAll(async () => {
  await app?.stop();
  await closePools();
});

interface Answer {
  status: number;
  body: { data?: Record<string, unknown> | null; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
}

async function post(base: string, body: unknown, headers: Record<string, string> = {}, as: string | undefined = token): Promise<Answer> {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(as ? { authorization: `Bearer ${as}` } : {}), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Answer['body'] };
}

const ask = (query: string, variables: Record<string, unknown> = {}, as?: string) => post(app.url!, { query, variables }, {}, as ?? token);
const firstError = (answer: Answer) => {
  expect(answer.body.errors?.length).toBeGreaterThan(0);
  return answer.body.errors![0]!;
};

/** The root connections of the schema (fields of Query with a `first` argument), by introspection. */
/** The root connections that take no required argument (reports need their period). */
async function rootConnections(): Promise<string[]> {
  const answer = await ask('{ __schema { queryType { fields { name args { name type { kind } } type { name } } } } }');
  const fields = (answer.body.data!.__schema as { queryType: { fields: Array<{ name: string; args: Array<{ name: string; type: { kind: string } }>; type: { name: string | null } }> } }).queryType.fields;
  return fields
    .filter((f) => f.args.some((a) => a.name === 'first') && f.type.name?.endsWith('Connection') && !f.args.some((a) => a.type.kind === 'NON_NULL'))
    .map((f) => f.name);
}

describe('bounded work per request: QUERY_TOO_COMPLEX names the limit', () => {
  test('the flood that killed the process (1,500 aliases of activityEvents(first: 100)) is refused before it runs', async () => {
    const query = `{ ${Array.from({ length: 1500 }, (_, i) => `a${i}: activityEvents(first: 100) { nodes { rowId oldValues newValues } }`).join(' ')} }`;
    const error = firstError(await ask(query));
    expect(error.extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', httpStatus: 400 });
    expect(['tokens', 'aliases']).toContain(error.extensions!.limit);
    // and a smaller flood that fits the token limit is refused by its aliases
    const smaller = `{ ${Array.from({ length: 25 }, (_, i) => `a${i}: activityEvents(first: 100) { nodes { rowId } }`).join(' ')} }`;
    expect(firstError(await ask(smaller)).extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'aliases', maximum: 20, actual: 25 });
  });

  test('depth: a document nested deeper than GRAPHQL_MAX_DEPTH', async () => {
    const deep = '{ currentOrganization { projects(first: 1) { nodes { tasks(first: 1) { nodes { project { tasks(first: 1) { nodes { project { tasks(first: 1) { nodes { rowId } } } } } } } } } } } }';
    expect(firstError(await ask(deep)).extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'depth', maximum: 10 });
  });

  test('fields: fragments expanded count, without a single alias', async () => {
    const fields = 'rowId name createdAt updatedAt notes';
    const spreads = Array.from({ length: 70 }, () => '... on ClientCompany { ...F }').join(' ');
    const query = `{ clientCompanies(first: 1) { nodes { ${spreads} } } } fragment F on ClientCompany { ${fields} }`;
    expect(firstError(await ask(query)).extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'fields', maximum: 300 });
  });

  test('collections: more connections than GRAPHQL_MAX_COLLECTIONS, each of one row', async () => {
    const connections = await rootConnections();
    expect(connections.length).toBeGreaterThan(20);
    const query = `{ ${connections.slice(0, 21).map((c) => `${c}(first: 1) { totalCount }`).join(' ')} }`;
    expect(firstError(await ask(query)).extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'collections', maximum: 20, actual: 21 });
  });

  test('rows: nested connections multiply, a connection without `first` reads a full page, and so does a variable', async () => {
    const nested = '{ clientCompanies { nodes { engagements { nodes { rowId } } } } }';
    expect(firstError(await ask(nested)).extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'rows', maximum: 5000, actual: 100 + 100 * 100 });
    const variable = 'query ($n: Int) { clientCompanies(first: $n) { nodes { engagements(first: 60) { nodes { rowId } } } } }';
    expect(firstError(await ask(variable, { n: 1 })).extensions).toMatchObject({ limit: 'rows', actual: 100 + 100 * 60 });
    const fits = '{ clientCompanies(first: 10) { nodes { engagements(first: 10) { nodes { rowId } } } } }';
    expect((await ask(fits)).body.errors).toBeUndefined();
  });

  test('directives and tokens', async () => {
    const directives = `{ ${Array.from({ length: 21 }, () => '__typename @include(if: true)').join(' ')} }`;
    expect(firstError(await ask(directives)).extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'directives' });
    const tokens = `{ ${'__typename '.repeat(6000)} }`;
    expect(firstError(await ask(tokens)).extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'tokens', maximum: 5000 });
  });

  test('fragments spread exponentially are measured once each (answered at once), and cycles do not loop', async () => {
    const levels = 40;
    const fragments = Array.from({ length: levels }, (_, i) => `fragment F${i} on Query { ${i === levels - 1 ? '__typename' : `...F${i + 1} ... on Query { ...F${i + 1} }`} }`).join(' ');
    const exponential = await ask(`{ ...F0 } ${fragments}`);
    expect(firstError(exponential).extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'fields' });
    const cycle = await ask('{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }');
    expect(firstError(cycle).extensions).toMatchObject({ code: 'GRAPHQL_VALIDATION_FAILED' });
  });

  test('an operation that takes longer than GRAPHQL_PLANNING_TIMEOUT_MS to plan is QUERY_TOO_COMPLEX (limit planning, its maximum), each time it is sent', async () => {
    const connections = (await rootConnections()).filter((c) => !['recordHistory', 'activityBetween'].includes(c));
    const wide = `{ ${connections.slice(0, 15).map((c) => `${c}(first: 2) { totalCount pageInfo { hasNextPage } edges { cursor } }`).join(' ')} }`;
    expect((await ask(wide)).body.errors).toBeUndefined(); // within the default limit (2 s)

    // Grafast allows the first plans of a process a multiple of the limit (JIT warm-up), which
    // every plan made in the process shrinks: spend it on tiny documents, planned by the app with
    // the default limit.
    for (let i = 0; i < 10; i++) expect((await ask(`query Warm${i} { __typename }`)).body.errors).toBeUndefined();
    const hasty = await startTestApp({ env: { GRAPHQL_PLANNING_TIMEOUT_MS: '1' } });
    try {
      const at = (query: string) => post(hasty.url!, { query });
      const refused = await at(wide);
      expect(refused.status).toBe(400);
      expect(firstError(refused).extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', httpStatus: 400, limit: 'planning', maximum: 1 });
      expect(refused.body.data).toBeUndefined();
      expect(firstError(await at(wide)).extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', limit: 'planning' });
    } finally {
      await hasty.stop();
    }
  });

  test('the request body and the response are bounded (REQUEST_TOO_LARGE, RESPONSE_TOO_LARGE)', async () => {
    const big = await post(app.url!, { query: `{ __typename } # ${'x'.repeat(300 * 1024)}` });
    expect(big.status).toBe(413);
    expect(big.body.errors![0]!.extensions).toMatchObject({ code: 'REQUEST_TOO_LARGE', httpStatus: 413 });

    const small = await startTestApp({ env: { GRAPHQL_MAX_RESPONSE_BYTES: '2048' } });
    try {
      const answer = await post(small.url!, { query: '{ __schema { types { name description } } }' });
      expect(answer.body.errors![0]!.extensions).toMatchObject({ code: 'RESPONSE_TOO_LARGE', maximum: 2048 });
      expect(answer.body.data).toBeUndefined();
      expect((await post(small.url!, { query: '{ __typename }' })).body).toEqual({ data: { __typename: 'Query' } });
    } finally {
      await small.stop();
    }
  });

  test('a request\'s statements stop at STATEMENT_TIMEOUT_MS, answered QUERY_TIMEOUT (503)', async () => {
    const config = testConfig({ STATEMENT_TIMEOUT_MS: '200' });
    const settings = pgSettingsFor(config, { userId: owner.userId, sessionId: owner.sessionId, organizationId: orgId });
    expect(settings.statement_timeout).toBe('200');
    const error = await pgError(inTransaction('authenticator', settings, (c) => c.query('select pg_sleep(2)'), false));
    expect(error.code).toBe('57014');
    const mask = makeMaskError(await ErrorCatalog.load(urlFor('owner')), createLogger('silent'));
    const masked = mask(new GraphQLError('x', { originalError: Object.assign(new Error(error.message), { code: error.code, severity: 'ERROR' }) }));
    expect(masked.extensions).toMatchObject({ code: 'QUERY_TIMEOUT', httpStatus: 503 });
  });
});

describe('one error contract: refusals outside execution carry a code', () => {
  test('syntax, unknown fields, literals of the wrong type (naming the argument), variables of the wrong type', async () => {
    expect(firstError(await ask('query {')).extensions).toMatchObject({ code: 'GRAPHQL_PARSE_FAILED', httpStatus: 400 });
    expect(firstError(await ask('{ nope }')).extensions).toMatchObject({ code: 'GRAPHQL_VALIDATION_FAILED', httpStatus: 400 });
    const literal = firstError(await ask('{ clientCompany(organizationId: "00000000-0000-0000-0000-000000000000", rowId: "not-a-uuid") { name } }'));
    expect(literal.extensions).toMatchObject({ code: 'INVALID_VALUE', httpStatus: 400, argument: 'rowId' });
    const nested = firstError(await ask('mutation { createClientCompany(input: { clientCompany: { name: 5 } }) { clientCompany { rowId } } }'));
    expect(nested.extensions).toMatchObject({ code: 'INVALID_VALUE', argument: 'input.clientCompany.name' });
    const variable = firstError(await ask('query ($id: UUID!) { clientCompany(organizationId: $id, rowId: $id) { name } }', { id: 'not-a-uuid' }));
    expect(variable.extensions).toMatchObject({ code: 'INVALID_VALUE', httpStatus: 400 });
    expect(variable.message).toContain('$id');
  });

  test('a subscription is OPERATION_NOT_SUPPORTED (400), not INTERNAL', async () => {
    const answer = await ask('subscription { anything }');
    expect(answer.status).toBe(400);
    expect(firstError(answer).extensions).toMatchObject({ code: 'OPERATION_NOT_SUPPORTED', httpStatus: 400 });
  });

  test('an unreadable body, a wrong media type, method or Accept header', async () => {
    const cases: Array<[RequestInit, number, string]> = [
      [{ method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' }, 400, 'BAD_REQUEST'],
      [{ method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"variables":{}}' }, 400, 'BAD_REQUEST'],
      [{ method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{__typename}' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      [{ method: 'GET' }, 405, 'METHOD_NOT_ALLOWED'],
      [{ method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/html' }, body: '{"query":"{__typename}"}' }, 406, 'NOT_ACCEPTABLE'],
    ];
    for (const [init, status, code] of cases) {
      const response = await fetch(`${app.url}/graphql`, init);
      const body = (await response.json()) as Answer['body'];
      expect({ status: response.status, extensions: body.errors?.[0]?.extensions }).toEqual({ status, extensions: { code, httpStatus: status } });
    }
  });

  test('adding a record before choosing an organization is NO_ORGANIZATION; without signing in UNAUTHENTICATED', async () => {
    const create = 'mutation { createClientCompany(input: { clientCompany: { name: "Globex" } }) { clientCompany { rowId } } }';
    expect(firstError(await ask(create, {}, await tokenFor(owner, null))).extensions).toMatchObject({ code: 'NO_ORGANIZATION', httpStatus: 403 });
    const anonymous = await post(app.url!, { query: create }, {}, '');
    expect(firstError(anonymous).extensions).toMatchObject({ code: 'UNAUTHENTICATED', httpStatus: 401 });
    expect((await ask(create)).body.errors).toBeUndefined();
  });
});

describe('production closes the doors', () => {
  let prod: Atrium;
  let dir: string;
  const registered = 'query Me { viewer { name } }';
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-persisted-'));
    fs.writeFileSync(path.join(dir, `${operationId(registered)}.graphql`), registered);
    prod = await startTestApp({ env: { NODE_ENV: 'production', SMTP_URL: 'smtp://127.0.0.1:1', APP_URL: 'https://app.example.com' } });
  }, 60_000);
  afterAll(async () => {
    await prod?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('no introspection and no "Did you mean" suggestions', async () => {
    const intro = await post(prod.url!, { query: '{ __schema { types { name } } }' });
    expect(firstError(intro).extensions).toMatchObject({ code: 'GRAPHQL_VALIDATION_FAILED' });
    expect(firstError(await post(prod.url!, { query: '{ __type(name: "Invoice") { name } }' })).message).toMatch(/introspection/i);
    const typo = firstError(await post(prod.url!, { query: '{ clientCompanie { totalCount } }' }));
    expect(typo.message).not.toMatch(/did you mean/i);
    expect((await post(prod.url!, { query: '{ __typename }' })).body).toEqual({ data: { __typename: 'Query' } });
    // and development suggests
    expect(firstError(await ask('{ clientCompanie { totalCount } }')).message).toMatch(/did you mean/i);
  });

  test('GRAPHQL_INTROSPECTION=true opens introspection again', async () => {
    const open = await startTestApp({ env: { NODE_ENV: 'production', SMTP_URL: 'smtp://127.0.0.1:1', APP_URL: 'https://app.example.com', GRAPHQL_INTROSPECTION: 'true' } });
    try {
      expect((await post(open.url!, { query: '{ __type(name: "Invoice") { name } }' })).body).toEqual({ data: { __type: { name: 'Invoice' } } });
    } finally {
      await open.stop();
    }
  });

  test('with PERSISTED_OPERATIONS, only registered operations run (by documentId, id or Apollo sha256Hash)', async () => {
    const persisted = await startTestApp({ env: { NODE_ENV: 'production', SMTP_URL: 'smtp://127.0.0.1:1', APP_URL: 'https://app.example.com', PERSISTED_OPERATIONS: dir } });
    try {
      const id = operationId(registered);
      for (const body of [{ documentId: id }, { id }, { extensions: { persistedQuery: { version: 1, sha256Hash: id } } }]) {
        expect((await post(persisted.url!, body)).body).toEqual({ data: { viewer: { name: owner.name } } });
      }
      const adHoc = await post(persisted.url!, { query: '{ viewer { name } }' });
      expect({ status: adHoc.status, extensions: firstError(adHoc).extensions }).toEqual({ status: 400, extensions: { code: 'PERSISTED_OPERATION_REQUIRED', httpStatus: 400 } });
      const unknown = await post(persisted.url!, { documentId: 'f'.repeat(64), variables: { password: 'hunter2' } });
      expect(firstError(unknown).extensions).toMatchObject({ code: 'PERSISTED_OPERATION_REQUIRED' });
    } finally {
      await persisted.stop();
    }
  });
});

describe('registered operations are read once, and checked', () => {
  test('a JSON manifest (as GraphQL Codegen or Relay write it) and a folder load; a document under another document\'s SHA-256 is refused at start', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-manifest-'));
    try {
      const good = 'query A { __typename }';
      const manifest = path.join(dir, 'persisted-documents.json');
      fs.writeFileSync(manifest, JSON.stringify({ [operationId(good)]: good, 'relay-style-id': 'query B { viewer { name } }' }));
      expect([...loadPersistedOperations(manifest).keys()].sort()).toEqual([operationId(good), 'relay-style-id'].sort());
      fs.writeFileSync(manifest, JSON.stringify({ [operationId(good)]: 'mutation Evil { logout { loggedOut } }' }));
      expect(() => loadPersistedOperations(manifest)).toThrow(/is not the SHA-256 of its document/);
      fs.writeFileSync(manifest, '[]');
      expect(() => loadPersistedOperations(manifest)).toThrow(/JSON object/);
      expect(() => loadPersistedOperations(path.join(dir, 'missing'))).toThrow(/does not exist/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
