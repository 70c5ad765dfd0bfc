// No cross-tenant existence oracles: nothing a member of one organization sends tells them whether
// an id, or an organization's slug, exists in another organization.
//
//   ids        another tenant's id answers exactly as a random id does — same code, same message —
//              for every app_public function taking an id (read from the catalog at run time:
//              lifecycle steps, soft delete and restore, …), called in SQL and over GraphQL, and for
//              every generated update and delete mutation (read from the schema at run time). The
//              other tenant's id is one that works in its own organization; the other arguments
//              work in the caller's. The code paths are the same by construction (one lookup by
//              organization and id, which misses either way); no timing is asserted here.
//   slugs      creating or renaming an organization with another tenant's slug answers as with a
//              free one: every slug is made by the server with a random suffix
//              (sql/functions/organization_slugs.sql).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { buildSchema, introspectionFromSchema } from 'postgraphile/graphql';
import { createTokenService } from '../src/auth/tokens.ts';
import { ROOT } from '../src/paths.ts';
import type { Atrium } from '../src/index.ts';
import { asVisitor, closePools, pool, sessionOf, signUp, type Session, type User } from './support/db.ts';
import { one, twoTenants, type Tenant } from './support/fixtures.ts';
import { gql, startTestApp, type GraphQLResponse } from './support/app.ts';
import { appPublicFunctions, callIn, lifecycleStates, rowIds, workingArguments, type DbFunction, type Working } from './support/functions.ts';

const owner = pool('owner');
const FUNCTIONS = (await appPublicFunctions()).filter((fn) => Object.keys(fn.argTables).length > 0);

let a: Tenant;
let b: Tenant;
let app: Atrium;
let workingInA: Map<string, Working>;
let workingInB: Map<string, Working>;

beforeAll(async () => {
  ({ a, b } = await twoTenants());
  await Promise.all([lifecycleStates(a), lifecycleStates(b)]);
  workingInA = await workingArguments(a.owner, a.orgId, FUNCTIONS);
  workingInB = await workingArguments(b.owner, b.orgId, FUNCTIONS);
  // Hundreds of requests from one user in a minute: this test is about answers, not rate limits.
  app = await startTestApp({ env: { RATE_LIMITS: 'false' } });
}, 300_000);
afterAll(async () => {
  await app?.stop();
  await closePools();
});

const tokens = createTokenService(process.env.JWT_SECRET!, 900);
const tokenFor = async (user: User, orgId: string | null) => (await tokens.sign({ userId: user.userId, sessionId: user.sessionId, organizationId: orgId })).token;

/**
 * B's ids of the table `fn`'s argument names: the one that works for B's owner first, then every
 * other (in whatever state: a signed contract must not answer "already signed"), at most 12.
 */
async function theirIds(fn: DbFunction, arg: string): Promise<string[]> {
  const working = workingInB.get(fn.signature)!;
  const rows = await rowIds(fn.argTables[arg], b.orgId);
  expect({ fn: fn.signature, arg, rowInB: rows.length > 0 }).toEqual({ fn: fn.signature, arg, rowInB: true });
  const first = !working.outcome.code && rows.includes(working.values[arg] as string) ? [working.values[arg] as string] : [];
  return [...new Set([...first, ...rows])].slice(0, 12);
}

/** Code and message, with the id itself blanked (a message may quote what it was given). */
const answer = (code: string | undefined, message: string | undefined, id: string) => ({ code, message: message?.replaceAll(id, '<id>') });

describe('another tenant\'s id answers exactly as a random id', () => {
  test('the functions taking ids are read from the catalog and most work with the caller\'s own ids', () => {
    expect(FUNCTIONS.length).toBeGreaterThanOrEqual(60);
    const names = FUNCTIONS.map((fn) => fn.name);
    for (const name of ['send_proposal', 'accept_proposal', 'sign_contract', 'record_payment', 'soft_delete_deal', 'restore_deal', 'approve_bill', 'grant_portal_access', 'retry_webhook_delivery']) {
      expect(names).toContain(name);
    }
    const working = FUNCTIONS.filter((fn) => !workingInA.get(fn.signature)!.outcome.code && !workingInB.get(fn.signature)!.outcome.code);
    expect(working.length / FUNCTIONS.length).toBeGreaterThan(0.5);
  });

  const callers: Array<[string, (t: Tenant) => User]> = [['the owner', (t) => t.owner], ['a member', (t) => t.member], ['a viewer', (t) => t.viewer]];
  test.each(callers)('in SQL, every function taking ids, called by %s', async (_label, who) => {
    const differences: unknown[] = [];
    const session: Session = sessionOf(who(a), a.orgId);
    const cases: Array<{ fn: DbFunction; arg: string; theirs: string[] }> = [];
    for (const fn of FUNCTIONS) for (const arg of Object.keys(fn.argTables)) cases.push({ fn, arg, theirs: await theirIds(fn, arg) });
    await asVisitor(session, async (c) => {
      for (const { fn, arg, theirs } of cases) {
        const mine = workingInA.get(fn.signature)!.values;
        const random = randomUUID();
        const withRandom = await callIn(c, fn, { ...mine, [arg]: random });
        const expected = { fn: fn.signature, arg, ...answer(withRandom.code, withRandom.message, random) };
        for (const id of theirs) {
          const withTheirs = await callIn(c, fn, { ...mine, [arg]: id });
          const got = { fn: fn.signature, arg, ...answer(withTheirs.code, withTheirs.message, id) };
          // Functions that change something refuse an id they cannot act on; functions that only
          // read (the history of a record) may answer "nothing", exactly as for a random id.
          const quietRead = fn.readOnly && !withTheirs.code && !withRandom.code && withTheirs.rows.length === 0 && withRandom.rows.length === 0;
          if ((!withTheirs.code && !quietRead) || JSON.stringify(got) !== JSON.stringify(expected) || withTheirs.wrote.length) differences.push({ got, expected, wrote: withTheirs.wrote });
        }
      }
    });
    expect(differences).toEqual([]);
  }, 120_000);
});

// GraphQL -----------------------------------------------------------------------------------------

interface IntrospectedType {
  name: string;
  kind: string;
  inputFields?: Array<{ name: string; type: TypeRef }> | null;
  enumValues?: Array<{ name: string }> | null;
}
interface TypeRef {
  kind: string;
  name: string | null;
  ofType: TypeRef | null;
}
interface RootField {
  name: string;
  args: Array<{ name: string; type: TypeRef }>;
}

const named = (ref: TypeRef): TypeRef => (ref.ofType ? named(ref.ofType) : ref);
const camel = (snake: string) => snake.replace(/_([a-z0-9])/g, (_m, ch: string) => ch.toUpperCase());
const snake = (camelName: string) => camelName.replace(/[A-Z]/g, (ch) => `_${ch.toLowerCase()}`);
const pascal = (snakeName: string) => camel(snakeName).replace(/^[a-z]/, (ch) => ch.toUpperCase());
/** A table's GraphQL type name (simplify-inflection: the singular, in PascalCase). */
const singular = (table: string) => table.replace(/ies$/, 'y').replace(/(?<!s)s$/, '');

let schemaTypes: Map<string, IntrospectedType>;
let mutations: RootField[];
let queries: RootField[];

/** The API's schema, from schema.graphql (which tests/schema.test.ts keeps equal to the live one). */
function introspect(): void {
  const { __schema } = introspectionFromSchema(buildSchema(fs.readFileSync(path.join(ROOT, 'schema.graphql'), 'utf8'))) as unknown as {
    __schema: { types: Array<IntrospectedType & { fields?: RootField[] | null }>; mutationType: { name: string }; queryType: { name: string } };
  };
  schemaTypes = new Map(__schema.types.map((type) => [type.name, type]));
  mutations = __schema.types.find((type) => type.name === __schema.mutationType.name)!.fields!;
  queries = __schema.types.find((type) => type.name === __schema.queryType.name)!.fields!;
}

/** A plain value of a GraphQL input type, or undefined when there is none to give. */
function plainInput(ref: TypeRef): unknown {
  const type = named(ref);
  switch (type.name) {
    case 'String':
      return 'Generated';
    case 'Boolean':
      return false;
    case 'Int':
      return 1;
    case 'BigFloat':
      return '1';
    case 'Date':
      return '2026-01-05';
    case 'Datetime':
      return new Date().toISOString();
    case 'UUID':
      return randomUUID();
    default: {
      const values = schemaTypes.get(type.name!)?.enumValues;
      return values?.length ? values[0].name : undefined;
    }
  }
}

const inputTypeOf = (field: RootField) => schemaTypes.get(named(field.args.find((arg) => arg.name === 'input')!.type).name!)!;

async function call(field: RootField, input: Record<string, unknown>, token: string): Promise<GraphQLResponse> {
  return gql(app.url!, `mutation($input: ${inputTypeOf(field).name}!) { ${field.name}(input: $input) { clientMutationId } }`, { input }, token);
}

const errorOf = (res: GraphQLResponse, id: string) => answer(res.errors?.[0]?.extensions?.code, res.errors?.[0]?.message, id);

describe('over GraphQL', () => {
  let token: string;
  beforeAll(async () => {
    token = await tokenFor(a.owner, a.orgId);
    introspect();
  });

  test('reading another tenant\'s row by id (each table\'s field, and node) answers null, exactly as a random id', async () => {
    const tables = (await owner.query<{ name: string }>(`select relname::text as name from pg_class where relnamespace = 'app_public'::regnamespace and relkind in ('r', 'p')`)).rows.map((r) => r.name);
    const differences: unknown[] = [];
    let read = 0;
    let readAlone = 0;
    for (const table of tables) {
      const typeName = pascal(singular(table));
      const field = queries.find((q) => q.name === camel(singular(table)) && q.args.some((arg) => arg.name === 'rowId'));
      if (!field) continue;
      const global = !field.args.some((arg) => arg.name === 'organizationId');
      const [theirs] = table === 'users' ? [b.owner.userId] : await rowIds(table, b.orgId);
      const random = randomUUID();
      const byRowId = (org: string, id: string) =>
        global
          ? gql(app.url!, `query($r: UUID!) { ${field.name}(rowId: $r) { __typename } }`, { r: id }, token)
          : gql(app.url!, `query($o: UUID!, $r: UUID!) { ${field.name}(organizationId: $o, rowId: $r) { __typename } }`, { o: org, r: id }, token);
      const byNode = (org: string, id: string) =>
        gql(app.url!, 'query($n: ID!) { node(id: $n) { __typename } }', { n: Buffer.from(JSON.stringify(global ? [typeName, id] : [typeName, org, id])).toString('base64') }, token);
      // The field that takes the row id alone (src/http/row-id-uniques.ts: tables keyed by
      // (organization_id, id)).
      const alone = queries.find((q) => q.name === `${camel(singular(table))}ByRowId`);
      if (alone) readAlone++;
      const byRowIdAlone = (id: string) => gql(app.url!, `query($r: UUID!) { ${alone!.name}(rowId: $r) { __typename } }`, { r: id }, token);
      const answers = {
        theirs: await byRowId(b.orgId, theirs),
        theirsInMyOrg: await byRowId(a.orgId, theirs),
        random: await byRowId(a.orgId, random),
        theirNode: await byNode(b.orgId, theirs),
        randomNode: await byNode(a.orgId, random),
        ...(alone ? { theirsAlone: await byRowIdAlone(theirs), randomAlone: await byRowIdAlone(random) } : {}),
      };
      read++;
      const expected = (res: GraphQLResponse) => JSON.stringify(res) === JSON.stringify({ status: 200, data: { [res.data && 'node' in res.data ? 'node' : Object.keys(res.data ?? {})[0] ?? field.name]: null } });
      if (!Object.values(answers).every(expected)) differences.push({ table, answers });
    }
    expect(read).toBeGreaterThanOrEqual(30);
    expect(readAlone).toBeGreaterThanOrEqual(40);
    expect(differences).toEqual([]);
  }, 120_000);

  test('every generated update and delete mutation answers NOT_FOUND for another tenant\'s row, exactly as for a random one', async () => {
    const tables = (await owner.query<{ name: string }>(`select relname::text as name from pg_class where relnamespace = 'app_public'::regnamespace and relkind in ('r', 'p')`)).rows.map((r) => r.name);
    const tableOf = new Map(tables.map((table) => [pascal(singular(table)), table]));
    const generated = mutations.filter((m) => /^(update|delete)[A-Z]/.test(m.name) && inputTypeOf(m).inputFields!.some((f) => f.name === 'rowId' || f.name === 'id' || /By[A-Z]/.test(m.name)));
    expect(generated.length).toBeGreaterThanOrEqual(40);
    const differences: unknown[] = [];
    const skipped: string[] = [];
    for (const field of generated) {
      const typeName = field.name.replace(/^(update|delete)/, '').replace(/By[A-Z].*$/, '');
      const table = tableOf.get(typeName);
      if (!table) {
        differences.push({ field: field.name, problem: `no table for type ${typeName}` });
        continue;
      }
      const global = table === 'organizations' || table === 'users';
      const inputFields = inputTypeOf(field).inputFields!;
      const patchField = inputFields.find((f) => f.name.endsWith('Patch') || f.name === 'patch');
      // Their row: one of B's (B's owner, for users) whose keys this mutation takes are all set.
      const keys = inputFields.filter((f) => f !== patchField && !['clientMutationId', 'id', 'rowId', 'organizationId'].includes(f.name)).map((f) => snake(f.name));
      const { rows } = await owner.query<{ j: Record<string, unknown> }>(
        `select to_jsonb(t) as j from app_public.${table} t where ${table === 'users' ? 'id' : global ? 'id' : 'organization_id'} = $1 ${keys.map((k) => `and ${k} is not null`).join(' ')} order by id limit 1`,
        [table === 'users' ? b.owner.userId : b.orgId],
      );
      if (!rows.length) {
        skipped.push(field.name); // B has no row with these keys set (e.g. a scheduled invoice)
        continue;
      }
      const theirs = rows[0].j;
      const patch: Record<string, unknown> = {};
      if (patchField) {
        // One scalar field set to their row's own value (valid by construction; an id only if
        // there is nothing else): whatever the value, the row is never found.
        const scalars = ['String', 'Int', 'Boolean', 'BigFloat', 'Date', 'Datetime', 'UUID'];
        const fields = schemaTypes.get(named(patchField.type).name!)!.inputFields!.filter((f) => scalars.includes(named(f.type).name!) && theirs[snake(f.name)] != null);
        const chosen = fields.find((f) => named(f.type).name !== 'UUID') ?? fields[0];
        if (chosen) patch[chosen.name] = theirs[snake(chosen.name)];
        else {
          // Only enums (a member's role): the first value.
          const other = schemaTypes.get(named(patchField.type).name!)!.inputFields!.find((f) => plainInput(f.type) !== undefined);
          if (other) patch[other.name] = plainInput(other.type);
        }
      }
      // The keys of their row, as the mutation takes them; the random variant replaces its id,
      // and each other key by a random value of the same kind (a number, an email address, a date, text).
      const randomKey = (value: unknown) =>
        typeof value === 'number' ? 987654
        : typeof value === 'string' && value.includes('@') ? `${randomUUID()}@example.com`
        : typeof value === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(value) ? '2999-12-31' // a date (an exchange rate's)
        : randomUUID();
      const random = randomUUID();
      const inputs = (id: string, org: string): Record<string, unknown> => {
        const input: Record<string, unknown> = patchField ? { [patchField.name]: patch } : {};
        for (const f of inputFields) {
          if (f === patchField || f.name === 'clientMutationId') continue;
          if (f.name === 'id') input.id = Buffer.from(JSON.stringify(global ? [typeName, id] : [typeName, org, id])).toString('base64');
          else if (f.name === 'rowId') input.rowId = id;
          else if (f.name === 'organizationId') input.organizationId = org;
          else input[f.name] = id === theirs.id ? theirs[snake(f.name)] : plainInput(f.type) === undefined ? theirs[snake(f.name)] : randomKey(theirs[snake(f.name)]);
        }
        return input;
      };
      const answers: Record<string, unknown> = {
        theirs: errorOf(await call(field, inputs(theirs.id as string, b.orgId), token), theirs.id as string),
        random: errorOf(await call(field, inputs(random, a.orgId), token), random),
      };
      // Their id with my organization (when every key is an id: an invoice number or a slug of
      // mine may well exist in my organization).
      const idKeys = inputFields.filter((f) => f !== patchField && f.name !== 'clientMutationId' && f.name !== 'organizationId');
      if (idKeys.every((f) => f.name === 'id' || named(f.type).name === 'UUID')) {
        answers.theirsInMyOrg = errorOf(await call(field, inputs(theirs.id as string, a.orgId), token), theirs.id as string);
      }
      const expected = { code: 'NOT_FOUND', message: 'No such record in this organization (or it is not visible to you).' };
      if (Object.values(answers).some((x) => JSON.stringify(x) !== JSON.stringify(expected))) differences.push({ field: field.name, answers });
    }
    expect(differences).toEqual([]);
    expect(skipped.length).toBeLessThan(generated.length / 10);
  }, 120_000);

  test('every lifecycle mutation taking ids answers another tenant\'s id exactly as a random one', async () => {
    const differences: unknown[] = [];
    let called = 0;
    for (const fn of FUNCTIONS) {
      const field = mutations.find((m) => m.name === camel(fn.name));
      if (!field) continue; // not a mutation (a query function); SQL covers it above
      const mine = workingInA.get(fn.signature)!.values;
      const inputFields = inputTypeOf(field).inputFields!;
      for (const arg of Object.keys(fn.argTables)) {
        const random = randomUUID();
        const input = (id: string) => {
          const value: Record<string, unknown> = {};
          for (const f of inputFields) {
            const name = snake(f.name);
            if (name === arg) value[f.name] = id;
            else if (fn.argTables[name]) value[f.name] = mine[name];
            else if (f.type.kind === 'NON_NULL') value[f.name] = fn.args.find((x) => x.name === name)?.type === 'text[]' ? mine[name] : plainInput(f.type);
          }
          return value;
        };
        called++;
        const expected = errorOf(await call(field, input(random), token), random);
        for (const theirs of (await theirIds(fn, arg)).slice(0, 6)) {
          const got = errorOf(await call(field, input(theirs), token), theirs);
          if (!got.code || JSON.stringify(got) !== JSON.stringify(expected)) differences.push({ field: field.name, arg, got, expected });
        }
      }
    }
    expect(called).toBeGreaterThanOrEqual(50);
    expect(differences).toEqual([]);
  }, 120_000);
});

describe('organization slugs reveal no other tenant', () => {
  const SUFFIX = /^(.+)-[a-km-z2-9]{6}$/;
  const theirSlug = async () => (await owner.query<{ slug: string }>('select slug from app_public.organizations where id = $1', [b.orgId])).rows[0].slug;

  test('creating an organization with another tenant\'s slug answers exactly as with a free one (SQL)', async () => {
    const someone = await signUp('slug-prober');
    const taken = await theirSlug();
    const free = `free-${randomUUID().slice(0, 8)}`;
    const create = (slug: string) => asVisitor(sessionOf(someone), (c) => one<{ slug: string }>(c, `select slug from app_public.create_organization('Prober', $1)`, [slug]));
    const [withTaken, withFree] = [await create(taken), await create(free)];
    expect(withTaken.slug.match(SUFFIX)?.[1]).toBe(taken);
    expect(withFree.slug.match(SUFFIX)?.[1]).toBe(free);
    expect(await theirSlug()).toBe(taken);
    // Without a slug, one is made from the name; the name of an existing firm makes no difference.
    const theirName = (await owner.query<{ name: string }>('select name from app_public.organizations where id = $1', [b.orgId])).rows[0].name;
    const fromName = await asVisitor(sessionOf(someone), (c) => one<{ slug: string }>(c, 'select slug from app_public.create_organization($1)', [theirName]));
    expect(fromName.slug).toMatch(SUFFIX);
    expect(fromName.slug).not.toBe(taken);
  });

  test('renaming an organization to another tenant\'s slug answers exactly as to a free one (SQL)', async () => {
    const taken = await theirSlug();
    const rename = (slug: string) => asVisitor(sessionOf(a.owner, a.orgId), (c) => one<{ slug: string }>(c, 'update app_public.organizations set slug = $1 where id = $2 returning slug', [slug, a.orgId]));
    expect((await rename(taken)).slug.match(SUFFIX)?.[1]).toBe(taken);
    expect((await rename('a-free-one')).slug.match(SUFFIX)?.[1]).toBe('a-free-one');
  });

  test('over GraphQL, createOrganization and updateOrganization answer the same for a taken and a free slug', async () => {
    const taken = await theirSlug();
    const someone = await signUp('slug-prober-http');
    const create = async (slug: string) => gql<any>(app.url!, 'mutation($s: String!) { createOrganization(input: { name: "Prober", slug: $s }) { organization { slug } } }', { s: slug }, await tokenFor(someone, null));
    const update = async (slug: string) => gql<any>(app.url!, 'mutation($o: UUID!, $s: String!) { updateOrganization(input: { rowId: $o, patch: { slug: $s } }) { organization { slug } } }', { o: a.orgId, s: slug }, await tokenFor(a.owner, a.orgId));
    for (const send of [create, update]) {
      const [withTaken, withFree] = [await send(taken), await send('nobody-has-this')];
      expect([withTaken.errors, withFree.errors]).toEqual([undefined, undefined]);
      const slugs = [withTaken, withFree].map((res) => (Object.values(res.data)[0] as { organization: { slug: string } }).organization.slug);
      expect(slugs.map((slug) => slug.match(SUFFIX)?.[1])).toEqual([taken, 'nobody-has-this']);
    }
  });
});
