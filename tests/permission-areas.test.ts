// The isolation matrix inside one organization, generated from the catalog: for every permission
// in app_public.permissions (read at run time), a member whose only custom role grants exactly
// that one permission reads and writes nothing of another area, through any table and any
// function. A new table, permission or function is covered the moment it exists.
//
//   tables     every app_public tenant table × select / insert / update / delete. A table's area
//              is its rule in app_private.activity_read_rules (make_tenant_table records it):
//              reading needs `<area>.read`, writing `<area>.write`; foundation tables have a
//              minimum role instead (organizations and members: every member; invitations: admins).
//   side doors rows that copy other rows are read only with the source's permission too: webhook
//              deliveries (every table with a `source_table` column) and the activity log.
//   functions  every app_public function, called with arguments that work for the organization's
//              owner (found by trying the organization's rows: tests/support/functions.ts). The
//              member's call must fail as a refusal (NOT_PERMITTED, FORBIDDEN, NOT_FOUND,
//              PERMISSION_NOT_HELD) or exactly as the owner's does, or succeed writing and
//              returning only rows of the member's own area — plus the documented consequences of
//              a lifecycle step (CONSEQUENCES below: accepting a proposal creates its contract).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { addMember, asVisitor, closePools, generatedColumns, pool, roleName, sessionOf, type Session, type User } from './support/db.ts';
import { commitAs, oneTenant, one, type Tenant } from './support/fixtures.ts';
import { appPublicFunctions, callIn, lifecycleStates, rowIds, workingArguments, type DbFunction, type Outcome, type Working } from './support/functions.ts';

const owner = pool('owner');
const { rows: permissionRows } = await owner.query<{ key: string }>('select key from app_public.permissions order by key');
const PERMISSIONS = permissionRows.map((r) => r.key);
const { rows: ruleRows } = await owner.query<{ table_name: string; permission: string | null; min_role: string | null }>(
  'select table_name, permission, min_role from app_private.activity_read_rules',
);
const RULES = new Map(ruleRows.map((r) => [r.table_name, r]));
const { rows: tableRows } = await owner.query<{ name: string; copies: boolean }>(
  `select c.relname as name, exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'source_table' and not a.attisdropped) as copies
   from pg_class c where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p') order by 1`,
);
/** The global tables (no organization): users see themselves and colleagues; the catalogue is public. */
const GLOBAL = ['users', 'permissions'];
/** The activity log has its own rule per event (its table's), checked below. */
const LOG = 'activity_events';
const TABLES = tableRows.map((t) => t.name).filter((t) => !GLOBAL.includes(t) && t !== LOG);
const COPY_TABLES = tableRows.filter((t) => t.copies).map((t) => t.name);

/**
 * Rows a lifecycle step writes (and may return) outside the area of the permission it needs, as
 * the documented consequence of that step (each function's comment says so). Anything else a
 * function writes must be of the caller's area.
 */
const CONSEQUENCES: Record<string, string[]> = {
  create_organization: ['organizations', 'organization_members'], // a new organization, of your own
  accept_proposal: ['contracts', 'deals'], // creates the draft contract; an open deal behind it is won
  sign_contract: ['engagements'], // starts the engagement
  create_invoice_from_time: ['time_entries'], // the invoiced entries point at the invoice
  cancel_invoice: ['time_entries'], // they become invoiceable again
  delete_account: ['organization_members', 'role_assignments', 'erasures'], // leaving (everyone's right), and the erasure of oneself on record
  export_user: ['data_exports'], // the export of one's own data (everyone's right), which they read
};

const MEMBER = 'member'; // the base role of the single-permission members
const ROLE_ORDER = ['viewer', 'member', 'admin', 'owner'];
const areaOf = (permission: string) => permission.split('.')[0];

/** May a member holding only `permission` read `table`'s rows? */
function reads(permission: string, table: string): boolean {
  const rule = RULES.get(table);
  if (!rule) throw new Error(`${table} has no rule in app_private.activity_read_rules`);
  return rule.permission ? rule.permission === permission : ROLE_ORDER.indexOf(rule.min_role!) <= ROLE_ORDER.indexOf(MEMBER);
}

/** May a member holding only `permission` write `table` (as far as its area goes)? */
function writes(permission: string, table: string): boolean {
  const rule = RULES.get(table);
  return rule?.permission != null && `${areaOf(rule.permission)}.write` === permission;
}

const sameArea = (permission: string, table: string) => {
  const rule = RULES.get(table);
  return rule?.permission != null && areaOf(rule.permission) === areaOf(permission);
};

let t: Tenant;
const holders = new Map<string, User>();
const as = (permission: string): Session => sessionOf(holders.get(permission)!, t.orgId);

beforeAll(async () => {
  t = await oneTenant('areas');
  // Deliveries whose payloads copy rows of other areas (as the worker makes them: one per event).
  await owner.query(
    `insert into app_public.webhook_deliveries (organization_id, endpoint_id, event_type, payload)
     select w.organization_id, w.id, r.event_type, jsonb_build_object('type', r.event_type, 'data', jsonb_build_object('table', r.table_name, 'object', jsonb_build_object('secret', 'of ' || r.table_name)))
     from app_public.webhook_endpoints w, app_private.webhook_event_rules r
     where w.organization_id = $1`,
    [t.orgId],
  );
  await lifecycleStates(t);
  // One member per permission, whose only custom role grants exactly that permission.
  for (let i = 0; i < PERMISSIONS.length; i += 6) {
    await Promise.all(PERMISSIONS.slice(i, i + 6).map(async (permission) => {
      const user = await addMember(t.orgId, t.owner, 'member', `only-${permission.replace('.', '-')}`);
      await commitAs(sessionOf(t.owner, t.orgId), async (c) => {
        const role = await one<{ id: string }>(c, 'insert into app_public.roles (name) values ($1) returning id', [`Only ${permission}`]);
        await c.query('insert into app_public.role_permissions (role_id, permission_key) values ($1, $2)', [role.id, permission]);
        await c.query('insert into app_public.role_assignments (member_id, role_id) select id, $2 from app_public.organization_members where user_id = $1', [user.userId, role.id]);
      });
      holders.set(permission, user);
    }));
  }
}, 300_000);
afterAll(closePools);

test('the matrix covers every permission, and every tenant table has a rule and rows', async () => {
  expect(PERMISSIONS.length).toBeGreaterThanOrEqual(30);
  for (const permission of PERMISSIONS) {
    expect(await asVisitor(as(permission), async (c) => (await c.query<{ p: string }>('select app_public.my_permissions() as p')).rows.map((r) => r.p))).toEqual([permission]);
  }
  for (const table of TABLES) {
    expect({ table, rule: RULES.has(table), rows: (await rowIds(table, t.orgId)).length > 0 }).toEqual({ table, rule: true, rows: true });
  }
  expect(COPY_TABLES).toContain('webhook_deliveries');
});

/** Columns the visitor may insert into / update in `table`. */
async function visitorColumns(table: string, privilege: 'INSERT' | 'UPDATE'): Promise<string[]> {
  const { rows } = await owner.query<{ name: string }>(
    `select attname as name from pg_attribute where attrelid = $1::regclass and attnum > 0 and not attisdropped and has_column_privilege($2, attrelid, attname, $3) order by attnum`,
    [`app_public.${table}`, roleName('visitor'), privilege],
  );
  return rows.map((r) => r.name);
}

async function attempt(c: pg.PoolClient, sql: string, params: unknown[] = []): Promise<number | string> {
  await c.query('savepoint attempt');
  try {
    return (await c.query(sql, params)).rowCount ?? 0;
  } catch (error) {
    return (error as { code: string }).code;
  } finally {
    await c.query('rollback to savepoint attempt');
  }
}

async function othersMemberships(permission: string): Promise<string[]> {
  const { rows } = await owner.query<{ id: string }>('select id from app_public.organization_members where organization_id = $1 and user_id <> $2 order by id', [t.orgId, holders.get(permission)!.userId]);
  return rows.map((r) => r.id);
}

const insertSql = (table: string, columns: string[]) => {
  const list = columns.map((col) => `"${col}"`).join(', ');
  return `insert into app_public.${table} (${list}) select ${list} from jsonb_populate_record(null::app_public.${table}, $1)`;
};

/** Per table: a copy of one of its rows (new id) that the owner may insert, and the columns to insert. */
const insertable = new Map<string, { row: Record<string, unknown>; columns: string[] }>();
beforeAll(async () => {
  await asVisitor(sessionOf(t.owner, t.orgId), async (c) => {
    for (const table of TABLES) {
      const columns = await visitorColumns(table, 'INSERT');
      const { rows } = await owner.query<{ j: Record<string, unknown> }>(`select to_jsonb(x) as j from app_public.${table} x where ${table === 'organizations' ? 'id' : 'organization_id'} = $1 order by id`, [t.orgId]);
      const copies = rows.map((r) => ({ ...r.j, id: randomUUID() }));
      let found: Record<string, unknown> | undefined;
      for (const row of columns.length ? copies : []) {
        if ((await attempt(c, insertSql(table, columns), [row])) === 1) {
          found = row;
          break;
        }
      }
      const generated = await generatedColumns(table);
      insertable.set(table, { row: found ?? copies[0], columns: columns.length ? columns : Object.keys(copies[0]).filter((k) => k !== 'organization_id' && !generated.includes(k)) });
    }
  });
}, 120_000);

describe.each(PERMISSIONS)('a member holding only %s', (permission) => {
  test('reads the rows of its own area only, in every table (copies: only of sources it reads)', async () => {
    const wrong: string[] = [];
    await asVisitor(as(permission), async (c) => {
      for (const table of TABLES) {
        const visible = Number((await c.query<{ n: string }>(`select count(*) as n from app_public.${table}`)).rows[0].n);
        const expected = reads(permission, table);
        if (COPY_TABLES.includes(table)) {
          const { rows } = await c.query<{ source: string }>(`select distinct source_table as source from app_public.${table}`);
          for (const { source } of rows) if (!reads(permission, source)) wrong.push(`${table}: sees copies of ${source}`);
          if (expected && visible === 0) wrong.push(`${table}: sees nothing, though it reads the copies of its own area`);
        } else if ((visible > 0) !== expected) {
          wrong.push(`${table}: ${visible} rows visible, expected ${expected ? 'some' : 'none'}`);
        }
      }
    });
    expect(wrong).toEqual([]);
  });

  test('reads the activity log of its own area only (events of copies: only of sources it reads)', async () => {
    const events = await asVisitor(as(permission), async (c) =>
      (await c.query<{ table_name: string; source: string | null }>(`select table_name, coalesce(new_values, old_values) ->> 'source_table' as source from app_public.activity_events`)).rows);
    const wrong = events.filter((e) => !reads(permission, e.table_name) || (e.source !== null && !reads(permission, e.source)));
    expect(wrong).toEqual([]);
    const ownArea = TABLES.filter((table) => reads(permission, table) && RULES.get(table)!.permission);
    if (ownArea.length) expect(events.some((e) => ownArea.includes(e.table_name))).toBe(true);
  });

  test('inserts, updates and deletes rows of its own area only, in every table', async () => {
    const wrong: string[] = [];
    await asVisitor(as(permission), async (c) => {
      for (const table of TABLES) {
        const may = writes(permission, table);
        const { row, columns } = insertable.get(table)!;
        const inserted = await attempt(c, insertSql(table, columns), [row]);
        // Refused by row-level security or privileges (42501), unless it may write the area; then
        // it gets past them (a row, or a business rule such as PERMISSION_NOT_HELD saying no).
        const mayInsert = may && (await visitorColumns(table, 'INSERT')).length > 0;
        if (mayInsert ? inserted === '42501' : inserted !== '42501') wrong.push(`${table}: insert gave ${inserted}`);

        // (Leaving the organization, deleting one's own membership, is every member's right.)
        const ids = table === 'organization_members' ? await othersMemberships(permission) : await rowIds(table, t.orgId);
        const [column = 'id'] = await visitorColumns(table, 'UPDATE');
        const updated = await attempt(c, `update app_public.${table} set "${column}" = "${column}" where id = any($1::uuid[])`, [ids]);
        if (!may && updated !== 0 && updated !== '42501') wrong.push(`${table}: update gave ${updated}`);
        const deleted = await attempt(c, `delete from app_public.${table} where id = any($1::uuid[])`, [ids]);
        if (!may && deleted !== 0 && deleted !== '42501') wrong.push(`${table}: delete gave ${deleted}`);
      }
    });
    expect(wrong).toEqual([]);
  });
});

describe.each(PERMISSIONS)('a member holding only %s', (permission) => {
  test('gains no other permission through roles (adding to its role, a new role for itself)', async () => {
    const { rows: [mine] } = await owner.query<{ member_id: string; role_id: string }>(
      `select m.id as member_id, ra.role_id from app_public.organization_members m
       join app_public.role_assignments ra on ra.organization_id = m.organization_id and ra.member_id = m.id
       where m.organization_id = $1 and m.user_id = $2`,
      [t.orgId, holders.get(permission)!.userId],
    );
    const held = await asVisitor(as(permission), async (c) => {
      // Each step that goes through is kept, so that steps can build on each other.
      const step = async (sql: string, params: unknown[]) => {
        await c.query('savepoint step');
        try {
          await c.query(sql, params);
          await c.query('release savepoint step');
        } catch {
          await c.query('rollback to savepoint step');
        }
      };
      const everything = randomUUID();
      await step(`insert into app_public.roles (id, name) values ($1, 'Everything')`, [everything]);
      for (const other of PERMISSIONS) {
        await step('insert into app_public.role_permissions (role_id, permission_key) values ($1, $2)', [mine.role_id, other]);
        await step('insert into app_public.role_permissions (role_id, permission_key) values ($1, $2)', [everything, other]);
      }
      await step('insert into app_public.role_assignments (member_id, role_id) values ($1, $2)', [mine.member_id, everything]);
      return (await c.query<{ p: string }>('select app_public.my_permissions() as p')).rows.map((r) => r.p);
    });
    expect(held).toEqual([permission]);
  });
});

// Functions -------------------------------------------------------------------------------------

const FUNCTIONS = await appPublicFunctions();
/** Refusals: the call did nothing and said no. */
const REFUSALS = ['AT403', '42501', 'AT404', 'AT541'];

const baselines = new Map<string, Working>();

beforeAll(async () => {
  for (const [signature, working] of await workingArguments(t.owner, t.orgId, FUNCTIONS)) baselines.set(signature, working);
}, 300_000);

function judge(permission: string, fn: DbFunction, outcome: Outcome, baseline: Outcome): string[] {
  if (outcome.code) {
    if (REFUSALS.includes(outcome.code) || outcome.code === baseline.code) return [];
    return [`${fn.signature}: failed with ${outcome.code} (${outcome.message}), where the owner ${baseline.code ? `failed with ${baseline.code}` : 'succeeded'}`];
  }
  const consequences = CONSEQUENCES[fn.name] ?? [];
  const wrong = outcome.wrote.filter((table) => !writes(permission, table) && !consequences.includes(table)).map((table) => `${fn.signature}: wrote ${table}`);
  const returned = fn.returnsTable;
  if (returned === 'activity_events') {
    // events (the history functions): only of tables it reads, and of copies whose source it reads
    const events = outcome.rows as Array<{ table_name: string; new_values: Record<string, unknown> | null; old_values: Record<string, unknown> | null }>;
    const source = (e: (typeof events)[number]) => (e.new_values ?? e.old_values)?.source_table as string | undefined;
    for (const e of events) {
      if (!reads(permission, e.table_name) || (source(e) && !reads(permission, source(e)!))) wrong.push(`${fn.signature}: returned events of ${e.table_name}`);
    }
    return wrong;
  }
  if (returned && outcome.rows.length && !sameArea(permission, returned) && !consequences.includes(returned) && !GLOBAL.includes(returned) && !reads(permission, returned)) {
    wrong.push(`${fn.signature}: returned rows of ${returned}`);
  }
  return wrong;
}

test('every app_public function is called, most with arguments that work for the owner', () => {
  expect(FUNCTIONS.length).toBeGreaterThanOrEqual(90);
  const working = FUNCTIONS.filter((fn) => !baselines.get(fn.signature)!.outcome.code);
  expect(working.length / FUNCTIONS.length).toBeGreaterThan(0.6);
  for (const name of ['send_proposal', 'accept_proposal', 'sign_contract', 'send_contract', 'record_payment', 'create_invoice_from_time', 'pay_bill', 'grant_portal_access', 'retry_webhook_delivery', 'soft_delete_deal']) {
    expect({ name, works: working.some((fn) => fn.name === name) }).toEqual({ name, works: true });
  }
});

test.each(PERMISSIONS)('a member holding only %s gets nothing of another area from any function', async (permission) => {
  const wrong = await asVisitor(as(permission), async (c) => {
    const found: string[] = [];
    for (const fn of FUNCTIONS) {
      const baseline = baselines.get(fn.signature)!;
      found.push(...judge(permission, fn, await callIn(c, fn, baseline.values), baseline.outcome));
    }
    return found;
  });
  expect(wrong).toEqual([]);
}, 60_000);
