// Connections over real HTTP: `filter` (postgraphile-plugin-connection-filter), `orderBy`, and the
// page-size cap (src/http/page-size.ts). The app runs with PAGE_SIZE_MAX=3 and the organization
// holds five client companies, so "at most the cap" is visible.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { Atrium } from '../src/index.ts';
import { closePools, unique } from './support/db.ts';
import { errorCode, gql, registerAndConfirm, startTestApp, type GraphQLResponse } from './support/app.ts';

const MAX = 3;
const NAMES = ['Beta Works', 'Alpha One', 'Delta Studio', 'Alpha Two', 'Gamma Labs']; // inserted in this order

let app: Atrium;
let url: string;
let token: string;

async function ok<T>(query: string, variables: Record<string, unknown> = {}, as = token): Promise<T> {
  const res = await gql<T>(url, query, variables, as);
  expect(res.errors).toBeUndefined();
  return res.data!;
}

/** A user with a new organization of their own, and a token scoped to it. */
async function ownerOfNewOrg(label: string): Promise<string> {
  const email = `${unique(label)}@example.com`;
  const register = await registerAndConfirm(url, { email, name: `Test ${label}` });
  const { createOrganization } = await ok<{ createOrganization: { organization: { rowId: string } } }>(
    'mutation($name: String!) { createOrganization(input: { name: $name }) { organization { rowId } } }',
    { name: unique('Org') },
    register.accessToken,
  );
  const { switchOrganization } = await ok<{ switchOrganization: { accessToken: string } }>(
    'mutation($id: UUID) { switchOrganization(input: { organizationId: $id }) { accessToken } }',
    { id: createOrganization.organization.rowId },
    register.accessToken,
  );
  return switchOrganization.accessToken;
}

async function addClient(name: string, as = token): Promise<string> {
  const data = await ok<{ createClientCompany: { clientCompany: { rowId: string } } }>(
    'mutation($name: String!) { createClientCompany(input: { clientCompany: { name: $name } }) { clientCompany { rowId } } }',
    { name },
    as,
  );
  return data.createClientCompany.clientCompany.rowId;
}

interface Page {
  totalCount: number;
  nodes: Array<{ name: string }>;
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; endCursor: string | null };
}
const PAGE = 'totalCount nodes { name } pageInfo { hasNextPage hasPreviousPage endCursor }';
const names = (page: Page) => page.nodes.map((n) => n.name);

/** `clientCompanies` with the given arguments (GraphQL syntax, e.g. `first: 2`). */
const clients = (args: string, variables: Record<string, unknown> = {}, varDefs = ''): Promise<GraphQLResponse<{ clientCompanies: Page }>> =>
  gql(url, `query${varDefs} { clientCompanies${args ? `(${args})` : ''} { ${PAGE} } }`, variables, token);

async function clientPage(args: string, variables: Record<string, unknown> = {}, varDefs = ''): Promise<Page> {
  const res = await clients(args, variables, varDefs);
  expect(res.errors).toBeUndefined();
  return res.data!.clientCompanies;
}

beforeAll(async () => {
  app = await startTestApp({ env: { PAGE_SIZE_MAX: String(MAX) } });
  url = app.url!;
  token = await ownerOfNewOrg('connections');
  for (const name of NAMES) await addClient(name);
}, 60_000);
afterAll(async () => {
  await app?.stop();
  await closePools();
});

describe('filter', () => {
  test('name startsWith returns only the matching rows', async () => {
    const page = await clientPage('filter: { name: { startsWith: "Alpha" } }, orderBy: NAME_ASC');
    expect(names(page)).toEqual(['Alpha One', 'Alpha Two']);
    expect(page.totalCount).toBe(2);
  });

  test('operators combine: includesInsensitive, in, and or/not', async () => {
    expect(names(await clientPage('filter: { name: { includesInsensitive: "STUDIO" } }'))).toEqual(['Delta Studio']);
    expect(names(await clientPage('filter: { name: { in: ["Beta Works", "Gamma Labs", "Nope"] } }, orderBy: NAME_ASC'))).toEqual(['Beta Works', 'Gamma Labs']);
    const either = await clientPage('filter: { or: [{ name: { equalTo: "Alpha Two" } }, { name: { endsWith: "Labs" } }] }, orderBy: NAME_ASC');
    expect(names(either)).toEqual(['Alpha Two', 'Gamma Labs']);
    const not = await clientPage('filter: { not: { name: { startsWith: "Alpha" } } }, orderBy: NAME_ASC');
    expect(names(not)).toEqual(['Beta Works', 'Delta Studio', 'Gamma Labs']);
  });

  test('a filter given as a variable works the same', async () => {
    const page = await clientPage('filter: $filter, orderBy: NAME_DESC', { filter: { name: { startsWith: 'Alpha' } } }, '($filter: ClientCompanyFilter)');
    expect(names(page)).toEqual(['Alpha Two', 'Alpha One']);
  });

  test('null and {} inside a filter are refused with INVALID_VALUE, not read as "no condition"', async () => {
    const nullFilter = await clients('filter: { name: null }');
    expect(errorCode(nullFilter)).toBe('INVALID_VALUE');
    expect(nullFilter.errors![0].message).toMatch(/null/i);
    const emptyFilter = await clients('filter: { name: {} }');
    expect(errorCode(emptyFilter)).toBe('INVALID_VALUE');
    expect(emptyFilter.errors![0].message).toMatch(/empty/i);
  });

  test('only indexed columns are filterable: not unindexed ones, not through relations', async () => {
    for (const [field, filter] of [['notes', '{ notes: { equalTo: "x" } }'], ['organization', '{ organization: { name: { equalTo: "x" } } }']]) {
      const res = await clients(`filter: ${filter}`);
      expect(res.errors?.[0].message).toMatch(new RegExp(`"${field}".*ClientCompanyFilter`));
      expect(res.data).toBeUndefined();
    }
  });
});

describe('orderBy', () => {
  test('NAME_ASC and NAME_DESC order by name', async () => {
    const sorted = [...NAMES].sort();
    expect(names(await clientPage(`orderBy: NAME_ASC, first: ${MAX}`))).toEqual(sorted.slice(0, MAX));
    expect(names(await clientPage(`orderBy: NAME_DESC, first: ${MAX}`))).toEqual([...sorted].reverse().slice(0, MAX));
  });
});

describe('page size', () => {
  test('first above the maximum is refused with PAGE_SIZE_TOO_LARGE naming the maximum', async () => {
    for (const first of [101, MAX + 1]) {
      const res = await clients(`first: ${first}`);
      expect(errorCode(res)).toBe('PAGE_SIZE_TOO_LARGE');
      expect(res.errors![0].extensions).toMatchObject({ httpStatus: 400, maximum: MAX });
      expect(res.errors![0].message).toContain(`at most ${MAX}`);
      expect(res.data?.clientCompanies ?? null).toBeNull();
    }
  });

  test('the same for last, and for a value given as a variable', async () => {
    expect(errorCode(await clients(`last: ${MAX + 1}`))).toBe('PAGE_SIZE_TOO_LARGE');
    expect(errorCode(await clients('first: $n', { n: 101 }, '($n: Int)'))).toBe('PAGE_SIZE_TOO_LARGE');
  });

  test('first and last up to the maximum work', async () => {
    expect((await clientPage(`first: ${MAX}`)).nodes).toHaveLength(MAX);
    expect(names(await clientPage(`orderBy: NAME_ASC, last: ${MAX}`))).toEqual([...NAMES].sort().slice(-MAX));
  });

  test('negative first, or first together with last, is INVALID_VALUE', async () => {
    expect(errorCode(await clients('first: -1'))).toBe('INVALID_VALUE');
    expect(errorCode(await clients('first: 1, last: 1'))).toBe('INVALID_VALUE');
  });

  test('without first or last a connection returns at most the maximum, and says more follow', async () => {
    const page = await clientPage('orderBy: NAME_ASC');
    expect(page.nodes).toHaveLength(MAX);
    expect(page.totalCount).toBe(NAMES.length);
    expect(page.pageInfo.hasNextPage).toBe(true);
    // The next page, from the cursor, holds the rest.
    const next = await clientPage('orderBy: NAME_ASC, after: $after', { after: page.pageInfo.endCursor }, '($after: Cursor)');
    expect(names(next)).toEqual([...NAMES].sort().slice(MAX));
    expect(next.pageInfo.hasNextPage).toBe(false);
  });

  test('with only before, the default page is the last one before the cursor', async () => {
    const sorted = [...NAMES].sort();
    const lastRow = await clientPage('orderBy: NAME_ASC, last: 1');
    expect(names(lastRow)).toEqual(sorted.slice(-1));
    const before = await clientPage('orderBy: NAME_ASC, before: $before', { before: lastRow.pageInfo.endCursor }, '($before: Cursor)');
    expect(names(before)).toEqual(sorted.slice(-1 - MAX, -1));
    expect(before.pageInfo.hasPreviousPage).toBe(true);
  });

  test('a null first (from a variable) also gets the default page', async () => {
    expect((await clientPage('first: $n', { n: null }, '($n: Int)')).nodes).toHaveLength(MAX);
  });

  test('the cap also holds for nested connections', async () => {
    const data = await ok<{ currentOrganization: { clientCompanies: Page } }>(`{ currentOrganization { clientCompanies { ${PAGE} } } }`);
    expect(data.currentOrganization.clientCompanies.nodes).toHaveLength(MAX);
    expect(data.currentOrganization.clientCompanies.totalCount).toBe(NAMES.length);
    const tooMany = await gql(url, '{ currentOrganization { clientCompanies(first: 101) { nodes { name } } } }', {}, token);
    expect(errorCode(tooMany)).toBe('PAGE_SIZE_TOO_LARGE');
  });

  test('the cap also holds for connections returned by SQL functions (deletedClientCompanies)', async () => {
    const other = await ownerOfNewOrg('deleted');
    for (let i = 0; i < MAX + 1; i++) {
      const rowId = await addClient(`Gone ${i}`, other);
      await ok(`mutation($id: UUID!) { softDeleteClientCompany(input: { id: $id }) { clientMutationId } }`, { id: rowId }, other);
    }
    const res = await gql<{ deletedClientCompanies: { nodes: unknown[]; pageInfo: { hasNextPage: boolean } } }>(
      url,
      '{ deletedClientCompanies { nodes { name } pageInfo { hasNextPage } } }',
      {},
      other,
    );
    expect(res.errors).toBeUndefined();
    expect(res.data!.deletedClientCompanies.nodes).toHaveLength(MAX);
    expect(res.data!.deletedClientCompanies.pageInfo.hasNextPage).toBe(true);
    expect(errorCode(await gql(url, '{ deletedClientCompanies(first: 101) { nodes { name } } }', {}, other))).toBe('PAGE_SIZE_TOO_LARGE');
  });
});
