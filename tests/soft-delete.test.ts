// Soft delete: deleting a business record hides it from every read; admins and owners see the
// deleted records and restore them within the organization's retention window; nobody can
// hard-delete a soft-delete table through the API role.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { addMember, asVisitor, closePools, createOrganization, inTransaction, pgError, pool, sessionOf, signUp, type User } from './support/db.ts';

let owner: User;
let admin: User;
let member: User;
let viewer: User;
let orgId: string;

beforeAll(async () => {
  owner = await signUp('sd-owner');
  orgId = await createOrganization(owner, 'soft-delete');
  [admin, member, viewer] = await Promise.all([addMember(orgId, owner, 'admin'), addMember(orgId, owner, 'member'), addMember(orgId, owner, 'viewer')]);
});
afterAll(closePools);

const newClient = (name: string) =>
  asVisitor(sessionOf(member, orgId), async (c) => (await c.query('insert into app_public.client_companies (name) values ($1) returning id', [name])).rows[0].id as string, { commit: true });
const visible = (user: User, id: string) =>
  asVisitor(sessionOf(user, orgId), async (c) => (await c.query('select count(*)::int as n from app_public.client_companies where id = $1', [id])).rows[0].n as number);
const call = (user: User, fn: string, id: string) => asVisitor(sessionOf(user, orgId), (c) => c.query(`select * from app_public.${fn}($1)`, [id]), { commit: true });

describe('soft delete', () => {
  test('a member deletes a client: it disappears from reads but the row is kept', async () => {
    const id = await newClient('Soon gone');
    const { rows } = await call(member, 'soft_delete_client_company', id);
    expect(rows[0].deleted_at).not.toBeNull();
    expect(await visible(member, id)).toBe(0);
    expect(await visible(owner, id)).toBe(0);
    expect((await pool('owner').query('select deleted_at from app_public.client_companies where id = $1', [id])).rows[0].deleted_at).not.toBeNull();
  });

  test('a viewer may not delete (NOT_PERMITTED); deleting twice or something unknown is NOT_FOUND', async () => {
    const id = await newClient('Stays');
    expect((await pgError(call(viewer, 'soft_delete_client_company', id))).code).toBe('AT403');
    await call(member, 'soft_delete_client_company', id);
    expect((await pgError(call(member, 'soft_delete_client_company', id))).code).toBe('AT404');
    expect((await pgError(call(member, 'soft_delete_client_company', '00000000-0000-4000-8000-000000000000'))).code).toBe('AT404');
  });

  test('a deleted row cannot be updated, and a hard DELETE is refused (42501)', async () => {
    const id = await newClient('Frozen');
    await call(member, 'soft_delete_client_company', id);
    const updated = await asVisitor(sessionOf(owner, orgId), async (c) => (await c.query(`update app_public.client_companies set notes = 'x' where id = $1`, [id])).rowCount);
    expect(updated).toBe(0);
    const live = await newClient('Live');
    expect((await pgError(asVisitor(sessionOf(owner, orgId), (c) => c.query('delete from app_public.client_companies where id = $1', [live])))).code).toBe('42501');
  });
});

describe('restore', () => {
  test('admins and owners list deleted records and restore them; members and viewers may not', async () => {
    const id = await newClient('Comes back');
    await call(member, 'soft_delete_client_company', id);
    const listed = await asVisitor(sessionOf(admin, orgId), async (c) => (await c.query('select id from app_public.deleted_client_companies()')).rows.map((r) => r.id));
    expect(listed).toContain(id);
    expect((await pgError(asVisitor(sessionOf(member, orgId), (c) => c.query('select * from app_public.deleted_client_companies()')))).code).toBe('AT403');
    expect((await pgError(call(member, 'restore_client_company', id))).code).toBe('AT403');
    expect((await pgError(call(viewer, 'restore_client_company', id))).code).toBe('AT403');
    const { rows } = await call(admin, 'restore_client_company', id);
    expect(rows[0].deleted_at).toBeNull();
    expect(await visible(viewer, id)).toBe(1);
  });

  test('past the retention window a record is no longer restorable (NOT_RESTORABLE), nor listed', async () => {
    const id = await newClient('Too late');
    await call(member, 'soft_delete_client_company', id);
    // Pretend it was deleted 31 days ago (the default retention is 30 days), with this session's
    // triggers off (replica mode) — not the table's, which other test files are using meanwhile.
    await inTransaction('superuser', { session_replication_role: 'replica' }, (c) =>
      c.query(`update app_public.client_companies set deleted_at = now() - interval '31 days' where id = $1`, [id]), true);
    expect((await pgError(call(owner, 'restore_client_company', id))).code).toBe('AT430');
    const listed = await asVisitor(sessionOf(owner, orgId), async (c) => (await c.query('select id from app_public.deleted_client_companies()')).rows.map((r) => r.id));
    expect(listed).not.toContain(id);
  });

  test('restoring a live record is NOT_RESTORABLE; another tenant cannot restore ours (NOT_FOUND)', async () => {
    const id = await newClient('Alive');
    expect((await pgError(call(owner, 'restore_client_company', id))).code).toBe('AT430');
    await call(member, 'soft_delete_client_company', id);
    const stranger = await signUp('sd-stranger');
    const theirOrg = await createOrganization(stranger, 'sd-other');
    const attempt = asVisitor(sessionOf(stranger, theirOrg), (c) => c.query('select * from app_public.restore_client_company($1)', [id]));
    expect((await pgError(attempt)).code).toBe('AT404');
  });
});
