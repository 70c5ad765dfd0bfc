// Permissions that cannot be used to gain more (sql/functions/permissions.sql, copies.sql):
//   * roles: a member holding roles.write passes on through roles only permissions they hold;
//   * copies of rows: webhook deliveries (their payloads, their events in the activity log) are
//     read only by those who read the source table, and an endpoint is subscribed only to events
//     whose source its subscriber reads.
// The generated cases (every permission × every table and function) are in
// tests/permission-areas.test.ts; these name each rule and its edges.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { createTokenService } from '../src/auth/tokens.ts';
import type { Atrium } from '../src/index.ts';
import { addMember, asVisitor, asWorker, closePools, pgError, pool, sessionOf, type Session, type User } from './support/db.ts';
import { commitAs, one, oneTenant, type Tenant } from './support/fixtures.ts';
import { errorCode, gql, startTestApp } from './support/app.ts';

const owner = pool('owner');
let t: Tenant;
/** Manages roles: roles.read, roles.write, deals.read (and nothing else). */
let lead: User;
let app: Atrium;

async function memberId(user: User): Promise<string> {
  return (await owner.query<{ id: string }>('select id from app_public.organization_members where organization_id = $1 and user_id = $2', [t.orgId, user.userId])).rows[0].id;
}

/** A role with `permissions`, made by the owner; its id. */
async function roleWith(name: string, permissions: string[], holders: User[] = []): Promise<string> {
  return commitAs(sessionOf(t.owner, t.orgId), async (c) => {
    const role = await one<{ id: string }>(c, 'insert into app_public.roles (name) values ($1) returning id', [name]);
    await c.query('insert into app_public.role_permissions (role_id, permission_key) select $1, unnest($2::text[])', [role.id, permissions]);
    for (const holder of holders) await c.query('insert into app_public.role_assignments (member_id, role_id) values ($1, $2)', [await memberId(holder), role.id]);
    return role.id;
  });
}

const permissionsOf = (session: Session) => asVisitor(session, async (c) => (await c.query<{ p: string }>('select app_public.my_permissions() as p')).rows.map((r) => r.p));

/** `sql` as `session` (rolled back): the SQLSTATE it fails with, or 'ok'. */
async function outcome(session: Session, sql: string, params: unknown[] = []): Promise<string> {
  try {
    await asVisitor(session, (c) => c.query(sql, params));
    return 'ok';
  } catch (error) {
    return (error as { code: string }).code;
  }
}

beforeAll(async () => {
  t = await oneTenant('grants');
  lead = await addMember(t.orgId, t.owner, 'member', 'lead');
  await roleWith('Team lead', ['roles.read', 'roles.write', 'deals.read'], [lead]);
  app = await startTestApp();
}, 120_000);
afterAll(async () => {
  await app?.stop();
  await closePools();
});

async function tokenFor(user: User): Promise<string> {
  const tokens = createTokenService(process.env.JWT_SECRET!, 900);
  return (await tokens.sign({ userId: user.userId, sessionId: user.sessionId, organizationId: t.orgId })).token;
}

describe('roles pass on only what their maker holds', () => {
  const asLead = () => sessionOf(lead, t.orgId);

  test('adding a permission to a role needs that permission (PERMISSION_NOT_HELD), even to a role one holds oneself', async () => {
    const mine = (await owner.query<{ role_id: string }>('select role_id from app_public.role_assignments where member_id = $1', [await memberId(lead)])).rows[0].role_id;
    const other = await roleWith('Empty', []);
    const add = (role: string, permission: string) => outcome(asLead(), 'insert into app_public.role_permissions (role_id, permission_key) values ($1, $2)', [role, permission]);
    expect(await add(other, 'deals.read')).toBe('ok');
    expect(await add(other, 'deals.write')).toBe('AT541');
    expect(await add(mine, 'invoices.write')).toBe('AT541');
    expect(await add(mine, 'portal.write')).toBe('AT541');
    // Moving a permission row to another key counts as adding it.
    const row = await commitAs(asLead(), (c) => one<{ id: string }>(c, `insert into app_public.role_permissions (role_id, permission_key) values ($1, 'deals.read') returning id`, [other]));
    expect(await outcome(asLead(), `update app_public.role_permissions set permission_key = 'deals.write' where id = $1`, [row.id])).toBe('AT541');
    const error = await pgError(asVisitor(asLead(), (c) => c.query('insert into app_public.role_permissions (role_id, permission_key) values ($1, $2)', [mine, 'invoices.write'])));
    expect(error.message).toBe('Through roles you may pass on only permissions you hold yourself: to add a permission to a role you would need invoices.write.');
    expect(await permissionsOf(asLead())).toEqual(['deals.read', 'roles.read', 'roles.write']);
  });

  test('assigning a role needs every permission it grants, to oneself and to anyone else', async () => {
    const clerkRole = (await owner.query<{ id: string }>(`select id from app_public.roles where organization_id = $1 and name = 'Billing clerk'`, [t.orgId])).rows[0].id;
    const dealsOnly = await roleWith('Deals reader', ['deals.read']);
    const assign = (user: User, role: string) => memberId(user).then((m) => outcome(asLead(), 'insert into app_public.role_assignments (member_id, role_id) values ($1, $2)', [m, role]));
    expect(await assign(lead, clerkRole)).toBe('AT541');
    expect(await assign(t.member, clerkRole)).toBe('AT541');
    expect(await assign(t.member, dealsOnly)).toBe('ok');
    expect(await assign(lead, dealsOnly)).toBe('ok');
    // Handing an assignment to another member, or another role, is assigning too.
    const assignment = (await owner.query<{ id: string }>('select id from app_public.role_assignments where member_id = $1', [await memberId(t.clerk)])).rows[0].id;
    expect(await outcome(asLead(), 'update app_public.role_assignments set member_id = $2 where id = $1', [assignment, await memberId(lead)])).toBe('AT541');
  });

  test("taking away a member's last custom role (back to the member defaults: every area) needs those defaults; one of several is fine", async () => {
    const assignmentOf = async (user: User) => (await owner.query<{ id: string }>('select id from app_public.role_assignments where member_id = $1 order by created_at', [await memberId(user)])).rows.map((r) => r.id);
    const [clerks] = await assignmentOf(t.clerk);
    const [leads] = await assignmentOf(lead);
    expect(await outcome(asLead(), 'delete from app_public.role_assignments where id = $1', [clerks])).toBe('AT541');
    expect(await outcome(asLead(), 'delete from app_public.role_assignments where id = $1', [leads])).toBe('AT541');
    const error = await pgError(asVisitor(asLead(), (c) => c.query('delete from app_public.role_assignments where id = $1', [leads])));
    expect(error.message).toMatch(/^Through roles you may pass on only permissions you hold yourself: to take away a member's last custom role \(they return to the member role's permissions\) you would need bills\.read, bills\.write, clients\.read/);
    // With a second role, taking one away leaves the other: nothing is gained.
    await roleWith('Also deals', ['deals.read'], [t.clerk]);
    expect(await outcome(asLead(), 'delete from app_public.role_assignments where id = $1', [clerks])).toBe('ok');
    // A viewer's defaults are every *.read: the lead does not hold them all either.
    const viewer = await addMember(t.orgId, t.owner, 'viewer', 'scoped-viewer');
    await roleWith('Viewer of deals', ['deals.read'], [viewer]);
    expect(await outcome(asLead(), 'delete from app_public.role_assignments where member_id = $1', [await memberId(viewer)])).toBe('AT541');
  });

  test('owners and admins hold every permission: they define, assign and take away roles freely', async () => {
    const admin = sessionOf(t.admin, t.orgId);
    const role = await roleWith('Admin-made', []);
    expect(await outcome(admin, `insert into app_public.role_permissions (role_id, permission_key) values ($1, 'webhooks.write')`, [role])).toBe('ok');
    expect(await outcome(admin, 'insert into app_public.role_assignments (member_id, role_id) values ($1, $2)', [await memberId(t.member), role])).toBe('ok');
    expect(await outcome(admin, 'delete from app_public.role_assignments where member_id = $1', [await memberId(t.clerk)])).toBe('ok');
  });

  test('a deleted role that members still hold is kept by the retention purge: they do not fall back to their defaults', async () => {
    const member = await addMember(t.orgId, t.owner, 'member', 'once-scoped');
    const role = await roleWith('Short-lived', ['deals.read'], [member]);
    await commitAs(sessionOf(t.owner, t.orgId), (c) => c.query('select app_public.soft_delete_role($1)', [role]));
    expect(await permissionsOf(sessionOf(member, t.orgId))).toEqual([]);
    await owner.query(`update app_public.roles set deleted_at = now() - interval '400 days' where id = $1`, [role]);
    const kept = await asWorker(t.orgId, async (c: pg.PoolClient) => {
      const summary = (await one<{ s: { kept: Record<string, number> } }>(c, 'select app_private.purge_deleted_records() as s')).s;
      const left = (await c.query('select 1 from app_public.role_assignments where role_id = $1', [role])).rowCount;
      return { kept: summary.kept.roles, left };
    });
    expect(kept).toEqual({ kept: 1, left: 1 });
  });

  test('over GraphQL the refusal is PERMISSION_NOT_HELD (403) with its message', async () => {
    const other = await roleWith('GraphQL empty', []);
    const res = await gql(app.url!, 'mutation($r: UUID!) { createRolePermission(input: { rolePermission: { roleId: $r, permissionKey: "invoices.write" } }) { clientMutationId } }', { r: other }, await tokenFor(lead));
    expect(errorCode(res)).toBe('PERMISSION_NOT_HELD');
    expect(res.errors![0].extensions?.httpStatus).toBe(403);
    expect(res.errors![0].message).toContain('you would need invoices.write');
  });
});

describe('copies of rows are read only by the readers of their source', () => {
  let hooksOnly: User;
  let hooksAndInvoices: User;
  let hookWriter: User;
  let hookWriterWithDeals: User;
  let endpointId: string;

  beforeAll(async () => {
    [hooksOnly, hooksAndInvoices, hookWriter, hookWriterWithDeals] = await Promise.all(
      ['hooks-only', 'hooks-invoices', 'hook-writer', 'hook-writer-deals'].map((label) => addMember(t.orgId, t.owner, 'member', label)),
    );
    await roleWith('Webhooks reader', ['webhooks.read'], [hooksOnly]);
    await roleWith('Webhooks and invoices reader', ['webhooks.read', 'invoices.read'], [hooksAndInvoices]);
    await roleWith('Webhook operator', ['webhooks.read', 'webhooks.write'], [hookWriter]);
    await roleWith('Webhook operator for deals', ['webhooks.read', 'webhooks.write', 'deals.read'], [hookWriterWithDeals]);
    endpointId = (await owner.query<{ id: string }>('select id from app_public.webhook_endpoints where organization_id = $1', [t.orgId])).rows[0].id;
    // One delivery per event type, as the worker makes them (their payloads copy the row), failed.
    await owner.query(
      `insert into app_public.webhook_deliveries (organization_id, endpoint_id, event_type, payload, status)
       select $1, $2, r.event_type, jsonb_build_object('type', r.event_type, 'data', jsonb_build_object('table', r.table_name, 'object', jsonb_build_object('total', '12000.00'))), 'failed'
       from app_private.webhook_event_rules r`,
      [t.orgId, endpointId],
    );
  }, 60_000);

  const deliveries = (user: User) =>
    asVisitor(sessionOf(user, t.orgId), async (c) => (await c.query<{ event_type: string; payload: unknown }>('select distinct event_type from app_public.webhook_deliveries order by 1')).rows.map((r) => r.event_type));

  test('webhooks.read alone shows the pings in the delivery log, no delivery (or payload) of deals, invoices, payments or contracts', async () => {
    expect(await deliveries(hooksOnly)).toEqual(['ping']);
    const res = await gql<any>(app.url!, '{ webhookDeliveries { nodes { eventType sourceTable payload } } }', {}, await tokenFor(hooksOnly));
    expect(res.errors).toBeUndefined();
    expect(res.data.webhookDeliveries.nodes.map((n: { eventType: string }) => n.eventType)).toEqual(['ping']);
  });

  test('with invoices.read too, the deliveries of invoices and payments, still none of deals or contracts', async () => {
    expect(await deliveries(hooksAndInvoices)).toEqual(['credit_note.issued', 'invoice.cancelled', 'invoice.overdue', 'invoice.paid', 'invoice.sent', 'payment.recorded', 'ping', 'refund.recorded']);
  });

  test('the activity log shows the events of those deliveries only to the readers of their source', async () => {
    const events = (user: User) => asVisitor(sessionOf(user, t.orgId), async (c) =>
      (await c.query<{ source: string }>(`select distinct new_values ->> 'source_table' as source from app_public.activity_events where table_name = 'webhook_deliveries' order by 1`)).rows.map((r) => r.source));
    expect(await events(hooksOnly)).toEqual(['webhook_endpoints']);
    expect(await events(hooksAndInvoices)).toEqual(['credit_notes', 'invoices', 'payments', 'refunds', 'webhook_endpoints']);
    expect(await events(t.admin)).toEqual(['bills', 'budget_alerts', 'client_companies', 'contracts', 'credit_notes', 'deals', 'engagements', 'expenses', 'invoices', 'payments', 'proposals', 'refunds', 'timesheets', 'webhook_endpoints']);
  });

  test("retrying a delivery one may not read answers NOT_FOUND, as a random id does", async () => {
    const dealWon = (await owner.query<{ id: string }>(`select id from app_public.webhook_deliveries where organization_id = $1 and event_type = 'deal.won'`, [t.orgId])).rows[0].id;
    const retry = async (user: User, id: string) => (await pgError(asVisitor(sessionOf(user, t.orgId), (c) => c.query('select app_public.retry_webhook_delivery($1)', [id])))).message;
    expect(await retry(hookWriter, dealWon)).toBe(await retry(hookWriter, randomUUID()));
    expect((await pgError(asVisitor(sessionOf(hookWriter, t.orgId), (c) => c.query('select app_public.retry_webhook_delivery($1)', [dealWon])))).code).toBe('AT404');
    // (The admin may: the endpoint is disabled, so it answers why not instead.)
    expect((await pgError(asVisitor(sessionOf(t.admin, t.orgId), (c) => c.query('select app_public.retry_webhook_delivery($1)', [dealWon])))).code).toBe('AT471');
  });

  test('subscribing an endpoint needs the read permission of every event it receives; so does pointing one elsewhere', async () => {
    const create = (user: User, events: string[]) => outcome(sessionOf(user, t.orgId), `select app_public.create_webhook_endpoint('https://hooks.example.test/mine', $1)`, [events]);
    expect(await create(hookWriter, ['*'])).toBe('AT541');
    expect(await create(hookWriter, ['deal.won'])).toBe('AT541');
    expect(await create(hookWriterWithDeals, ['deal.won', 'deal.lost'])).toBe('ok');
    expect(await create(hookWriterWithDeals, ['deal.won', 'invoice.paid'])).toBe('AT541');
    const error = await pgError(asVisitor(sessionOf(hookWriter, t.orgId), (c) => c.query(`select app_public.create_webhook_endpoint('https://hooks.example.test/mine', array['*'])`)));
    expect(error.message).toBe('A webhook endpoint receives the rows its events carry: to subscribe it to these events you need bills.read, clients.read, contracts.read, deals.read, engagements.read, expenses.read, invoices.read, proposals.read, time.read.');
    // The fixture's endpoint receives invoice.paid: re-pointing or widening it is subscribing.
    const update = (user: User, set: string) => outcome(sessionOf(user, t.orgId), `update app_public.webhook_endpoints set ${set} where id = $1`, [endpointId]);
    expect(await update(hookWriter, `url = 'https://attacker.example.test/'`)).toBe('AT541');
    expect(await update(hookWriterWithDeals, `event_types = array['deal.won']`)).toBe('ok');
    expect(await update(hookWriter, `description = 'still fine'`)).toBe('ok');
    expect(await outcome(sessionOf(t.admin, t.orgId), `select app_public.create_webhook_endpoint('https://hooks.example.test/all', array['*'])`)).toBe('ok');
  });
});
