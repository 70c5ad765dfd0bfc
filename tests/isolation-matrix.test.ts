// The isolation matrix, generated from the catalog: every table in app_public (read at run
// time, so a new table is covered the moment it exists) × select/insert/update/delete × four
// contexts:
//   own        the user's current organization is the one the rows belong to
//   other      the user acts in their own organization and targets another tenant's rows
//   no org     no organization chosen (app.org_id unset)
//   not member app.org_id names an organization the user does not belong to
// Expected outcomes follow from the grants: where the visitor holds the privilege, an owner
// succeeds in their own organization and every other context yields zero rows (reads, updates,
// deletes) or 42501 (inserts); without the privilege every context is 42501. A viewer's writes
// always fail. The global tables (`users`: one account across organizations; `permissions`: the
// catalogue every organization shares) have no organization_id and their own tests at the end.
// An insert copies one of the organization's rows (the first whose copy a business rule, such as
// a status machine, accepts) with a new id.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { asVisitor, closePools, generatedColumns, pgError, pool, roleName, sessionOf, type Session } from './support/db.ts';
import { twoTenants, type Tenant } from './support/fixtures.ts';

const { rows: tableRows } = await pool('owner').query<{ name: string }>(
  `select c.relname as name from pg_class c
   where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p')
   order by 1`,
);
const allTables = tableRows.map((r) => r.name);
const GLOBAL_TABLES = ['users', 'permissions'];
const tenantTables = allTables.filter((t) => !GLOBAL_TABLES.includes(t));

let a: Tenant;
let b: Tenant;

beforeAll(async () => {
  ({ a, b } = await twoTenants());
}, 120_000);
afterAll(closePools);

const orgColumn = (table: string) => (table === 'organizations' ? 'id' : 'organization_id');

/** The ids of `table`'s rows that belong to `orgId`, read as the owner (no RLS). */
async function idsOf(table: string, orgId: string, options: { notAbout?: string } = {}): Promise<string[]> {
  // notAbout: leave out rows about this user (a viewer may still leave an organization).
  const { rows } = await pool('owner').query<{ id: string }>(
    `select id from app_public.${table} t where ${orgColumn(table)} = $1 and ($2::text is null or (to_jsonb(t) ->> 'user_id') is distinct from $2) order by id`,
    [orgId, options.notAbout ?? null],
  );
  return rows.map((r) => r.id);
}

async function visitorColumns(table: string, privilege: 'INSERT' | 'UPDATE'): Promise<string[]> {
  const { rows } = await pool('owner').query<{ name: string }>(
    `select attname as name from pg_attribute
     where attrelid = $1::regclass and attnum > 0 and not attisdropped
       and has_column_privilege($2, attrelid, attname, $3)
     order by attnum`,
    [`app_public.${table}`, roleName('visitor'), privilege],
  );
  return rows.map((r) => r.name);
}

async function visitorMay(table: string, privilege: 'DELETE'): Promise<boolean> {
  const { rows } = await pool('owner').query<{ ok: boolean }>('select has_table_privilege($1, $2, $3) as ok', [roleName('visitor'), `app_public.${table}`, privilege]);
  return rows[0].ok;
}

/** Copies of `fromOrg`'s rows with new ids, as JSON (read as the owner). */
async function rowsToInsert(table: string, fromOrg: string, intoOrg: string): Promise<Record<string, unknown>[]> {
  const { rows } = await pool('owner').query<{ j: Record<string, unknown> }>(
    `select to_jsonb(t) as j from app_public.${table} t where ${orgColumn(table)} = $1 order by id`,
    [fromOrg],
  );
  expect(rows.length).toBeGreaterThan(0);
  // (Without the generated columns, which no insert may name: 428C9.)
  const generated = await generatedColumns(table);
  return rows.map((r) => ({ ...Object.fromEntries(Object.entries(r.j).filter(([k]) => !generated.includes(k))), id: randomUUID(), [orgColumn(table)]: intoOrg }));
}

const rowToInsert = async (table: string, fromOrg: string, intoOrg: string) => (await rowsToInsert(table, fromOrg, intoOrg))[0];

/**
 * The first copy of one of the organization's rows that `session` can insert (each attempt rolled
 * back), or the error of the last attempt. Errors of class 23 (unique, check, foreign key) are
 * raised only after the row passed row-level security's WITH CHECK, so they still prove the
 * policy let the row in; a business rule (SQLSTATE class AT, e.g. a status that a new row may not
 * start in) moves on to the next row; a missing privilege or RLS refusal (42501) fails at once.
 */
async function insertableCopy(session: Session, table: string, orgId: string, columns: string[]): Promise<{ row?: Record<string, unknown>; error?: { code: string } }> {
  let error: { code: string } | undefined;
  for (const row of await rowsToInsert(table, orgId, orgId)) {
    try {
      expect(await tryInsert(session, table, row, columns)).toBe(1);
      return { row };
    } catch (e) {
      error = e as { code: string };
      if (error.code === '42501') throw e;
    }
  }
  return { error };
}

/** The visitor's insertable columns plus the organization column (set explicitly to target a tenant). */
const withOrg = (table: string, columns: string[], row: Record<string, unknown>) =>
  columns.length ? [...new Set([...columns, orgColumn(table)])] : Object.keys(row);

async function tryInsert(session: Session, table: string, row: Record<string, unknown>, columns: string[]): Promise<number> {
  const list = columns.map((c) => `"${c}"`).join(', ');
  return asVisitor(session, async (c) => {
    const result = await c.query(`insert into app_public.${table} (${list}) select ${list} from jsonb_populate_record(null::app_public.${table}, $1)`, [row]);
    return result.rowCount ?? 0;
  });
}

async function visibleIds(session: Session, table: string): Promise<string[]> {
  return asVisitor(session, async (c) => (await c.query<{ id: string }>(`select id from app_public.${table} order by id`)).rows.map((r) => r.id));
}

async function updateRows(session: Session, table: string, ids: string[], column: string): Promise<number> {
  return asVisitor(session, async (c) => (await c.query(`update app_public.${table} set "${column}" = "${column}" where id = any($1::uuid[])`, [ids])).rowCount ?? 0);
}

/** Deletes the given rows one at a time (each in a savepoint); returns how many went. */
async function deleteRows(session: Session, table: string, ids: string[]): Promise<number> {
  return asVisitor(session, async (c: pg.PoolClient) => {
    let deleted = 0;
    for (const id of ids) {
      await c.query('savepoint one');
      try {
        deleted += (await c.query(`delete from app_public.${table} where id = $1`, [id])).rowCount ?? 0;
        await c.query('release savepoint one');
      } catch (error) {
        await c.query('rollback to savepoint one');
        // A business rule (e.g. an organization keeps one owner) may refuse one row; RLS
        // refusing shows up as zero rows, and a missing privilege as 42501, thrown below.
        if ((error as { code?: string }).code === '42501') throw error;
      }
    }
    return deleted;
  });
}

test('the matrix covers every table in app_public, and each has fixture rows in both tenants', async () => {
  expect(allTables).toContain('users');
  expect(tenantTables.length).toBeGreaterThanOrEqual(5);
  for (const table of tenantTables) {
    expect({ table, a: (await idsOf(table, a.orgId)).length > 0, b: (await idsOf(table, b.orgId)).length > 0 }).toEqual({ table, a: true, b: true });
  }
});

describe.each(tenantTables)('%s', (table) => {
  const own = () => sessionOf(a.owner, a.orgId);
  const noOrg = () => sessionOf(a.owner);
  const notMember = () => sessionOf(a.owner, b.orgId);

  describe('select', () => {
    test('own org: the owner sees all of its rows and nothing else', async () => {
      const visible = await visibleIds(own(), table);
      expect(visible).toEqual(await idsOf(table, a.orgId));
    });
    test("other org: none of another tenant's rows are visible", async () => {
      const theirs = new Set(await idsOf(table, b.orgId));
      expect((await visibleIds(own(), table)).filter((id) => theirs.has(id))).toEqual([]);
    });
    test('no org set: no rows', async () => {
      expect(await visibleIds(noOrg(), table)).toEqual([]);
    });
    test('org the user is not a member of: no rows', async () => {
      expect(await visibleIds(notMember(), table)).toEqual([]);
    });
  });

  describe('insert', () => {
    test('own org: allowed exactly when the visitor holds INSERT; denied (42501) for a viewer', async () => {
      const columns = await visitorColumns(table, 'INSERT');
      if (columns.length === 0) {
        const row = await rowToInsert(table, a.orgId, a.orgId);
        expect((await pgError(tryInsert(own(), table, row, Object.keys(row)))).code).toBe('42501');
      } else {
        const { row, error } = await insertableCopy(own(), table, a.orgId, columns);
        if (!row) expect(error?.code).toMatch(/^23/);
        const probe = row ?? (await rowToInsert(table, a.orgId, a.orgId));
        expect((await pgError(tryInsert(sessionOf(a.viewer, a.orgId), table, probe, columns))).code).toBe('42501');
      }
    });
    test("other org: a row for another tenant is refused (42501)", async () => {
      const columns = await visitorColumns(table, 'INSERT');
      const row = await rowToInsert(table, a.orgId, b.orgId);
      expect((await pgError(tryInsert(own(), table, row, withOrg(table, columns, row)))).code).toBe('42501');
    });
    test('no org set: refused (42501)', async () => {
      const columns = await visitorColumns(table, 'INSERT');
      const row = await rowToInsert(table, a.orgId, a.orgId);
      expect((await pgError(tryInsert(noOrg(), table, row, withOrg(table, columns, row)))).code).toBe('42501');
    });
    test('org the user is not a member of: refused (42501)', async () => {
      const columns = await visitorColumns(table, 'INSERT');
      const row = await rowToInsert(table, b.orgId, b.orgId);
      expect((await pgError(tryInsert(notMember(), table, row, withOrg(table, columns, row)))).code).toBe('42501');
    });
  });

  describe('update', () => {
    test('own org: allowed exactly when the visitor holds UPDATE; a viewer changes nothing', async () => {
      const [column] = await visitorColumns(table, 'UPDATE');
      const ids = await idsOf(table, a.orgId);
      if (!column) {
        expect((await pgError(updateRows(own(), table, ids, 'id'))).code).toBe('42501');
        return;
      }
      expect(await updateRows(own(), table, ids, column)).toBeGreaterThan(0);
      expect(await updateRows(sessionOf(a.viewer, a.orgId), table, ids, column)).toBe(0);
    });
    test("other org: another tenant's rows are untouchable", async () => {
      const [column = 'id'] = await visitorColumns(table, 'UPDATE');
      const ids = await idsOf(table, b.orgId);
      const outcome = await updateRows(own(), table, ids, column).catch((e: { code: string }) => e.code);
      expect([0, '42501']).toContain(outcome);
    });
    test('no org set: nothing is updated', async () => {
      const [column = 'id'] = await visitorColumns(table, 'UPDATE');
      const outcome = await updateRows(noOrg(), table, await idsOf(table, a.orgId), column).catch((e: { code: string }) => e.code);
      expect([0, '42501']).toContain(outcome);
    });
    test('org the user is not a member of: nothing is updated', async () => {
      const [column = 'id'] = await visitorColumns(table, 'UPDATE');
      const outcome = await updateRows(notMember(), table, await idsOf(table, b.orgId), column).catch((e: { code: string }) => e.code);
      expect([0, '42501']).toContain(outcome);
    });
  });

  describe('delete', () => {
    test('own org: allowed exactly when the visitor holds DELETE; a viewer deletes nothing', async () => {
      const ids = await idsOf(table, a.orgId);
      if (!(await visitorMay(table, 'DELETE'))) {
        expect((await pgError(deleteRows(own(), table, ids))).code).toBe('42501');
        return;
      }
      expect(await deleteRows(own(), table, ids)).toBeGreaterThan(0);
      expect(await deleteRows(sessionOf(a.viewer, a.orgId), table, await idsOf(table, a.orgId, { notAbout: a.viewer.userId }))).toBe(0);
    });
    test("other org: another tenant's rows cannot be deleted", async () => {
      const outcome = await deleteRows(own(), table, await idsOf(table, b.orgId)).catch((e: { code: string }) => e.code);
      expect([0, '42501']).toContain(outcome);
    });
    test('no org set: nothing is deleted', async () => {
      const outcome = await deleteRows(noOrg(), table, await idsOf(table, a.orgId)).catch((e: { code: string }) => e.code);
      expect([0, '42501']).toContain(outcome);
    });
    test('org the user is not a member of: nothing is deleted', async () => {
      const outcome = await deleteRows(notMember(), table, await idsOf(table, b.orgId)).catch((e: { code: string }) => e.code);
      expect([0, '42501']).toContain(outcome);
    });
  });
});

describe('users (global: one account across organizations)', () => {
  const memberIds = async (orgId: string) =>
    (await pool('owner').query<{ user_id: string }>('select user_id from app_public.organization_members where organization_id = $1 order by user_id', [orgId])).rows.map((r) => r.user_id);

  test('own org: you see yourself and your colleagues, nobody else', async () => {
    expect(await visibleIds(sessionOf(a.owner, a.orgId), 'users')).toEqual(await memberIds(a.orgId));
  });
  test('no org set, or an org you are not in: you see only yourself', async () => {
    expect(await visibleIds(sessionOf(a.owner), 'users')).toEqual([a.owner.userId]);
    expect(await visibleIds(sessionOf(a.owner, b.orgId), 'users')).toEqual([a.owner.userId]);
  });
  test('signed out: nobody', async () => {
    expect(await visibleIds({ orgId: a.orgId }, 'users')).toEqual([]);
  });
  test('you update your own profile only', async () => {
    const colleagues = (await memberIds(a.orgId)).filter((id) => id !== a.owner.userId);
    expect(await updateRows(sessionOf(a.owner, a.orgId), 'users', [a.owner.userId], 'name')).toBe(1);
    expect(await updateRows(sessionOf(a.owner, a.orgId), 'users', colleagues, 'name')).toBe(0);
    expect(await updateRows(sessionOf(a.owner, a.orgId), 'users', await memberIds(b.orgId), 'name')).toBe(0);
  });
  test('nobody inserts or deletes users directly (42501)', async () => {
    expect((await pgError(deleteRows(sessionOf(a.owner, a.orgId), 'users', [a.owner.userId]))).code).toBe('42501');
    expect((await pgError(tryInsert(sessionOf(a.owner, a.orgId), 'users', { id: randomUUID(), email: 'x@example.com', name: 'x' }, ['id', 'email', 'name']))).code).toBe('42501');
  });
});

describe('permissions (global: the catalogue every organization shares)', () => {
  test('anyone reads the whole catalogue, in any context', async () => {
    const { rows } = await pool('owner').query<{ key: string }>('select key as id from app_public.permissions order by key');
    expect(rows.length).toBeGreaterThan(10);
    for (const session of [sessionOf(a.owner, a.orgId), sessionOf(a.viewer, a.orgId), sessionOf(a.owner), {}]) {
      expect(await asVisitor(session, async (c) => (await c.query('select key from app_public.permissions')).rowCount)).toBe(rows.length);
    }
  });
  test('nobody inserts, updates or deletes permissions (42501)', async () => {
    const own = sessionOf(a.owner, a.orgId);
    expect((await pgError(asVisitor(own, (c) => c.query(`insert into app_public.permissions (key, description) values ('x.read', 'x')`)))).code).toBe('42501');
    expect((await pgError(asVisitor(own, (c) => c.query(`update app_public.permissions set description = description`)))).code).toBe('42501');
    expect((await pgError(asVisitor(own, (c) => c.query(`delete from app_public.permissions`)))).code).toBe('42501');
  });
});
