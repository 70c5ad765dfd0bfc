// Who may do what: the four member roles, a custom role ("Billing clerk": invoices yes, deals
// no) and a client-portal contact, checked through the policies (RLS) and lifecycle functions.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { asVisitor, closePools, pgError, pool, sessionOf, type Session, type User } from './support/db.ts';
import { commitAs, one, oneTenant, twoTenants, type Tenant } from './support/fixtures.ts';

let t: Tenant;
let other: Tenant;

beforeAll(async () => {
  ({ a: t, b: other } = await twoTenants());
}, 120_000);
afterAll(closePools);

type Who = 'owner' | 'admin' | 'member' | 'viewer' | 'clerk' | 'portal';
const WHO: Who[] = ['owner', 'admin', 'member', 'viewer', 'clerk', 'portal'];
const as = (who: Who): Session => sessionOf(t[who] as User, t.orgId);

/** Whether `sql` succeeds (and affects at least one row) for `who`; rolled back. */
async function may(who: Who, sql: string, params: unknown[] = []): Promise<boolean> {
  try {
    const res = await asVisitor(as(who), (c) => c.query(sql, params));
    return (res.rowCount ?? 0) > 0;
  } catch (error) {
    const code = (error as { code: string }).code;
    if (['42501', 'AT403', 'AT404', 'AT402'].includes(code)) return false;
    throw error;
  }
}

async function table(sql: (who: Who) => Promise<boolean>): Promise<Record<Who, boolean>> {
  const out = {} as Record<Who, boolean>;
  for (const who of WHO) out[who] = await sql(who);
  return out;
}

const count = (who: Who, tbl: string) => asVisitor(as(who), async (c) => (await c.query(`select count(*)::int as n from app_public.${tbl}`)).rows[0].n as number);

describe('member roles, a custom role and a portal contact', () => {
  test('reading deals: every member role; not the billing clerk (no deals.read), not the portal', async () => {
    expect(await table(async (w) => (await count(w, 'deals')) > 0)).toEqual({ owner: true, admin: true, member: true, viewer: true, clerk: false, portal: false });
  });

  test('adding a deal: owner, admin and member; not the viewer, the clerk or the portal', async () => {
    expect(await table((w) => may(w, `insert into app_public.deals (client_company_id, title) values ($1, 'New') returning id`, [t.clientId]))).toEqual({
      owner: true, admin: true, member: true, viewer: false, clerk: false, portal: false,
    });
  });

  test('invoices: the clerk reads and writes them, like members; reads clients but cannot change them', async () => {
    expect(await table((w) => may(w, 'update app_public.invoices set notes = $2 where id = $1', [t.draftInvoiceId, 'note']))).toEqual({
      owner: true, admin: true, member: true, viewer: false, clerk: true, portal: false,
    });
    expect(await may('clerk', 'select app_public.record_payment($1, 1)', [t.invoiceId])).toBe(true);
    expect(await count('clerk', 'client_companies')).toBeGreaterThan(0);
    expect(await may('clerk', 'update app_public.client_companies set notes = $1', ['x'])).toBe(false);
    expect(await count('clerk', 'time_entries')).toBe(0);
  });

  test('the activity log shows each member the events of the tables they may read', async () => {
    const seen = (who: Who, tbl: string) =>
      asVisitor(as(who), async (c) => (await c.query('select count(*)::int as n from app_public.activity_events where table_name = $1', [tbl])).rows[0].n as number);
    const all = async (tbl: string) => (await pool('owner').query('select count(*)::int as n from app_public.activity_events where organization_id = $1 and table_name = $2', [t.orgId, tbl])).rows[0].n as number;
    expect(await all('deals')).toBeGreaterThan(0);
    expect(await all('invoices')).toBeGreaterThan(0);
    expect(await table(async (w) => (await seen(w, 'deals')) === (await all('deals')))).toEqual({
      owner: true, admin: true, member: true, viewer: true, clerk: false, portal: false,
    });
    expect(await seen('clerk', 'deals')).toBe(0);
    expect(await seen('clerk', 'time_entries')).toBe(0);
    expect(await seen('clerk', 'invoices')).toBe(await all('invoices'));
    expect(await seen('clerk', 'client_companies')).toBe(await all('client_companies'));
    expect(await seen('clerk', 'organization_members')).toBe(await all('organization_members'));
    expect(await seen('portal', 'invoices')).toBe(0);
  });

  test('invitation events are for admins, like invitations themselves', async () => {
    await commitAs(sessionOf(t.admin, t.orgId), (c) => c.query(`select app_public.invite_member('log-probe@example.test', 'member')`));
    const seen = (who: Who) =>
      asVisitor(as(who), async (c) => (await c.query(`select count(*)::int as n from app_public.activity_events where table_name = 'invitations'`)).rows[0].n as number);
    expect(await table(async (w) => (await seen(w)) > 0)).toEqual({ owner: true, admin: true, member: false, viewer: false, clerk: false, portal: false });
  });

  test('my_permissions lists exactly what each holds', async () => {
    const perms = (who: Who) => asVisitor(as(who), async (c) => (await c.query('select app_public.my_permissions() as p')).rows.map((r) => r.p as string));
    const all = (await pool('owner').query('select key from app_public.permissions order by key')).rows.map((r) => r.key as string);
    expect(await perms('owner')).toEqual(all);
    expect(await perms('admin')).toEqual(all);
    // The special ones stay with admins: cost is confidential, so not even read by default.
    const special = ['portal.write', 'roles.write', 'webhooks.write', 'rates.write', 'costs.read', 'costs.write', 'timesheets.approve', 'expenses.approve'];
    expect(await perms('member')).toEqual(all.filter((k) => !special.includes(k)));
    expect(await perms('viewer')).toEqual(all.filter((k) => k.endsWith('.read') && !special.includes(k)));
    expect(await perms('clerk')).toEqual(['clients.read', 'invoices.read', 'invoices.write']);
    expect(await perms('portal')).toEqual([]);
  });

  test('a deleted custom role grants nothing', async () => {
    const solo = await oneTenant('deleted-role'); // other tests keep this tenant's role
    const clerk = sessionOf(solo.clerk, solo.orgId);
    const check = `select app_public.has_permission('invoices.write') as w, app_public.has_permission('deals.read') as r`;
    expect(await asVisitor(clerk, async (c) => (await c.query(check)).rows[0])).toEqual({ w: true, r: false });
    await commitAs(sessionOf(solo.admin, solo.orgId), (c) => c.query(`select app_public.soft_delete_role(id) from app_public.roles where name = 'Billing clerk'`));
    expect(await asVisitor(clerk, async (c) => (await c.query(check)).rows[0])).toEqual({ w: false, r: false });
  }, 60_000);

  test('special actions: only owners and admins grant portal access and define roles', async () => {
    expect(await table((w) => may(w, 'select app_public.grant_portal_access($1, $2)', [t.contactId, t.engagementId]))).toEqual({
      owner: true, admin: true, member: false, viewer: false, clerk: false, portal: false,
    });
    expect(await table((w) => may(w, `insert into app_public.roles (name) values ('Auditor') returning id`))).toEqual({
      owner: true, admin: true, member: false, viewer: false, clerk: false, portal: false,
    });
  });

  test('approving bills: owners and admins only', async () => {
    const bill = (await pool('owner').query('select id from app_public.bills where organization_id = $1', [t.orgId])).rows[0].id;
    expect(await table((w) => may(w, 'select app_public.approve_bill($1)', [bill]))).toEqual({
      owner: true, admin: true, member: false, viewer: false, clerk: false, portal: false,
    });
  });

  test('a lifecycle function refuses another tenant\'s records as not found', async () => {
    const err = await pgError(asVisitor(as('owner'), (c) => c.query('select app_public.send_invoice($1)', [other.draftInvoiceId])));
    expect(err.code).toBe('AT404');
  });
});

describe('the client portal', () => {
  const portal = () => sessionOf(t.portal, t.orgId);
  const visible = (tbl: string, session: Session = portal()) =>
    asVisitor(session, async (c) => (await c.query(`select id from app_public.${tbl} order by id`)).rows.map((r) => r.id as string));
  const ids = async (sql: string, params: unknown[]) => (await pool('owner').query(`${sql} order by id`, params)).rows.map((r) => r.id as string);

  test('the portal user enters the organization, and sees only their engagement\'s client-facing records', async () => {
    expect(await visible('engagements')).toEqual([t.engagementId]);
    expect(await visible('threads')).toEqual([t.clientThreadId]);
    expect(await visible('messages')).toEqual(await ids('select id from app_public.messages where thread_id = $1', [t.clientThreadId]));
    expect(await visible('file_objects')).toEqual(await ids('select id from app_public.file_objects where engagement_id = $1 and client_visible', [t.engagementId]));
    // The engagement's issued invoices (the fixture's sent one and two settled by corrections), not the draft.
    const issued = await ids(`select id from app_public.invoices where engagement_id = $1 and status in ('sent', 'viewed', 'paid', 'overdue')`, [t.engagementId]);
    expect(issued).toContain(t.invoiceId);
    expect(await visible('invoices')).toEqual(issued);
    expect(issued).not.toContain(t.draftInvoiceId);
    expect(await visible('invoice_line_items')).toEqual(await ids('select id from app_public.invoice_line_items where invoice_id = any($1::uuid[])', [issued]));
    expect(await visible('payments')).toEqual(await ids('select id from app_public.payments where invoice_id = any($1::uuid[])', [issued]));
    expect(await visible('credit_notes')).toEqual(await ids(`select id from app_public.credit_notes where invoice_id = any($1::uuid[]) and kind = 'credit'`, [issued]));
    for (const hidden of ['client_companies', 'contacts', 'deals', 'contracts', 'projects', 'tasks', 'time_entries', 'bills', 'vendors', 'roles', 'organization_members', 'activity_events']) {
      expect({ hidden, rows: await visible(hidden) }).toEqual({ hidden, rows: [] });
    }
  });

  test('nothing of another organization, and nothing at all without portal access there', async () => {
    expect(await visible('threads', sessionOf(t.portal, other.orgId))).toEqual([]);
    expect(await visible('invoices', sessionOf(t.portal))).toEqual([]);
  });

  test('the portal user posts in client threads, not in internal ones, and only as themselves', async () => {
    await asVisitor(portal(), async (c) => {
      const msg = await one<{ organization_id: string; created_by: string }>(c, `insert into app_public.messages (thread_id, body) values ($1, 'Thanks!') returning organization_id, created_by`, [t.clientThreadId]);
      expect(msg).toEqual({ organization_id: t.orgId, created_by: t.portal.userId });
      await c.query('savepoint s');
      expect((await pgError(c.query(`insert into app_public.messages (thread_id, body) values ($1, 'Peek')`, [t.internalThreadId]))).code).toBe('42501');
      await c.query('rollback to savepoint s');
      expect((await pgError(c.query(`insert into app_public.threads (engagement_id, subject) values ($1, 'Mine')`, [t.engagementId]))).code).toBe('42501');
    });
  });

  test('the portal user accepts a proposal of their engagement (creating the contract), not a draft and not another\'s', async () => {
    const proposals = await commitAs(sessionOf(t.owner, t.orgId), async (c) => {
      const make = async (engagementId: string | null, send: boolean) => {
        const p = await one<{ id: string }>(c, `insert into app_public.proposals (client_company_id, engagement_id, title) values ($1, $2, 'Phase 2') returning id`, [t.clientId, engagementId]);
        await c.query(`insert into app_public.proposal_line_items (proposal_id, description, unit_price) values ($1, 'More', 900)`, [p.id]);
        if (send) await c.query('select app_public.send_proposal($1)', [p.id]);
        return p.id;
      };
      return { mine: await make(t.engagementId, true), draft: await make(t.engagementId, false), unrelated: await make(null, true) };
    });
    expect(await visible('proposals')).toEqual([proposals.mine]);
    expect((await pgError(asVisitor(portal(), (c) => c.query('select app_public.accept_proposal($1)', [proposals.draft]))).then((e) => e.code))).toBe('AT404');
    expect((await pgError(asVisitor(portal(), (c) => c.query('select app_public.accept_proposal($1)', [proposals.unrelated]))).then((e) => e.code))).toBe('AT404');
    await asVisitor(portal(), async (c) => {
      expect((await one<{ status: string }>(c, 'select status from app_public.mark_proposal_viewed($1)', [proposals.mine])).status).toBe('viewed');
      const contract = await one<{ value: string; status: string }>(c, 'select value, status from app_public.accept_proposal($1)', [proposals.mine]);
      expect(contract).toEqual({ value: '900.00', status: 'draft' });
      const decided = await one<{ decided_by_name: string }>(c, 'select decided_by_name from app_public.proposals where id = $1', [proposals.mine]);
      expect(decided.decided_by_name).toBe(t.portal.name);
      // The portal sees invoices, not contracts.
      expect((await c.query('select from app_public.contracts')).rowCount).toBe(0);
    });
  });

  test('deleting the contact (or the engagement) ends their portal access', async () => {
    const solo = await oneTenant('portal-leaver');
    const soloPortal = sessionOf(solo.portal, solo.orgId);
    expect(await visible('threads', soloPortal)).toEqual([solo.clientThreadId]);
    await commitAs(sessionOf(solo.admin, solo.orgId), (c) => c.query('select app_public.soft_delete_contact($1)', [solo.contactId]));
    expect(await visible('threads', soloPortal)).toEqual([]);
    expect(await visible('invoices', soloPortal)).toEqual([]);
  }, 60_000);

  test('portal access is for the contact\'s email only, and revoking it ends it at once', async () => {
    const { token } = await commitAs(sessionOf(t.admin, t.orgId), (c) => one<{ token: string }>(c, 'select token from app_public.grant_portal_access($1, $2)', [t.contactId, t.engagementId]));
    // Someone else cannot use the token.
    expect((await pgError(asVisitor(sessionOf(t.member), (c) => c.query('select app_public.accept_portal_access($1)', [token])))).code).toBe('AT422');
    // Granting again replaced the earlier access: the portal user is out until they accept anew.
    expect(await visible('engagements')).toEqual([]);
    await commitAs(sessionOf(t.portal), (c) => c.query('select app_public.accept_portal_access($1)', [token]));
    expect(await visible('engagements')).toEqual([t.engagementId]);
    const access = (await pool('owner').query('select id from app_public.client_portal_access where organization_id = $1 and revoked_at is null', [t.orgId])).rows[0].id;
    await commitAs(sessionOf(t.admin, t.orgId), (c) => c.query('select app_public.revoke_portal_access($1)', [access]));
    expect(await visible('engagements')).toEqual([]);
    expect(await visible('threads')).toEqual([]);
  });

  test('a portal invitation expires after 14 days', async () => {
    const solo = await oneTenant('portal-expiry');
    const grant = await commitAs(sessionOf(solo.admin, solo.orgId), (c) =>
      one<{ access_id: string; token: string; expires_at: Date }>(c, 'select * from app_public.grant_portal_access($1, $2)', [solo.contactId, solo.engagementId]));
    const days = (grant.expires_at.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(13.9);
    expect(days).toBeLessThanOrEqual(14);
    await pool('owner').query(`update app_private.portal_access_secrets set expires_at = now() - interval '1 second' where access_id = $1`, [grant.access_id]);
    const err = await pgError(asVisitor(sessionOf(solo.portal), (c) => c.query('select app_public.accept_portal_access($1)', [grant.token])));
    expect(err.code).toBe('AT422');
    expect(err.message).toContain('expired');
  }, 60_000);
});
