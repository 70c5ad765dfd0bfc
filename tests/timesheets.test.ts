// Timesheets and locked periods (sql/functions/timesheets.sql): a member's week submitted,
// approved (timesheets.approve) or rejected with a reason; submitted and approved time frozen;
// time closed up to a date; only approved time invoiced where the organization requires it.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import { asVisitor, attempt, closePools, sessionOf, type Session } from './support/db.ts';
import { commitAs, memberIdOf, one, oneTenant, signedEngagement, type Tenant } from './support/fixtures.ts';

let t: Tenant;
let own: Session;
let admin: Session;
let member: Session;
let memberId: string;
beforeAll(async () => {
  t = await oneTenant('timesheets');
  own = sessionOf(t.owner, t.orgId);
  admin = sessionOf(t.admin, t.orgId);
  member = sessionOf(t.member, t.orgId);
  memberId = await memberIdOf(t, t.member);
}, 60_000);
afterAll(closePools);

const logTime = (c: pg.PoolClient, engagementId: string, workDate: string, who = memberId) =>
  one<{ id: string }>(c, 'insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) values ($1, $2, $3, 60) returning id', [engagementId, who, workDate]);
const submit = (session: Session, day: string, who?: string) =>
  commitAs(session, (c) => one<{ id: string; status: string; week_starts_on: string }>(c, `select id, status, week_starts_on::text from app_public.submit_timesheet($1, $2)`, [day, who ?? null]));

describe('a week of time', () => {
  test('submitted: the week is frozen (no entry added, changed or deleted), other weeks and members are not; submitting again is refused', async () => {
    const entry = await commitAs(member, (c) => logTime(c, t.engagementId, '2026-05-06'));
    const sheet = await submit(member, '2026-05-08'); // any day names its week
    expect(sheet).toMatchObject({ status: 'submitted', week_starts_on: '2026-05-04' });
    await asVisitor(member, async (c) => {
      expect(await attempt(c, `insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) values ($1, $2, '2026-05-10', 30)`, [t.engagementId, memberId])).toBe('AT451');
      expect(await attempt(c, 'update app_public.time_entries set minutes = 30 where id = $1', [entry.id])).toBe('AT451');
      expect(await attempt(c, `update app_public.time_entries set work_date = '2026-05-12' where id = $1`, [entry.id])).toBe('AT451');
      expect(await attempt(c, 'select app_public.soft_delete_time_entry($1)', [entry.id])).toBe('AT451');
      // Moving time into the frozen week is an addition to it.
      const later = await logTime(c, t.engagementId, '2026-05-12');
      expect(await attempt(c, `update app_public.time_entries set work_date = '2026-05-05' where id = $1`, [later.id])).toBe('AT451');
      expect(await attempt(c, 'select app_public.submit_timesheet($1)', ['2026-05-04'])).toBe('AT450');
    });
    // The owner's own week is open.
    await asVisitor(own, async (c) => {
      const ownerId = (await one<{ id: string }>(c, 'select id from app_public.organization_members where user_id = $1', [t.owner.userId])).id;
      expect(await attempt(c, `insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) values ($1, $2, '2026-05-06', 30)`, [t.engagementId, ownerId])).toBeNull();
    });
  });

  test('approved by someone holding timesheets.approve, never by its own member unless an owner or admin; a viewer cannot submit', async () => {
    const sheet = await submit(member, '2026-05-18');
    await asVisitor(member, async (c) => {
      expect(await attempt(c, 'select app_public.approve_timesheet($1)', [sheet.id])).toBe('AT403');
    });
    await asVisitor(sessionOf(t.viewer, t.orgId), async (c) => {
      expect(await attempt(c, 'select app_public.submit_timesheet($1)', ['2026-05-18'])).toBe('AT403');
    });
    // A member whose custom role grants timesheets.approve approves others, not their own week.
    await commitAs(own, async (c) => {
      const role = await one<{ id: string }>(c, `insert into app_public.roles (name) values ('Approver') returning id`);
      await c.query(`insert into app_public.role_permissions (role_id, permission_key) select $1, unnest(array['time.read', 'time.write', 'timesheets.approve'])`, [role.id]);
      await c.query('insert into app_public.role_assignments (member_id, role_id) values ($1, $2)', [memberId, role.id]);
    });
    const selfApproval = await asVisitor(member, (c) => attempt(c, 'select app_public.approve_timesheet($1)', [sheet.id]));
    expect(selfApproval).toBe('AT403');
    const approved = await commitAs(admin, (c) => one<{ status: string; decided_by: string }>(c, 'select status, decided_by from app_public.approve_timesheet($1)', [sheet.id]));
    expect(approved.status).toBe('approved');
    expect(await asVisitor(admin, (c) => attempt(c, 'select app_public.approve_timesheet($1)', [sheet.id]))).toBe('AT450');
    // The owner approves their own week.
    const ownerSheet = await submit(own, '2026-05-18');
    expect((await commitAs(own, (c) => one<{ status: string }>(c, 'select status from app_public.approve_timesheet($1)', [ownerSheet.id]))).status).toBe('approved');
  });

  test('rejected with a reason: the week is open again, fixed and submitted again; an approved week with invoiced time is not rejected', async () => {
    const e = await commitAs(own, (c) => signedEngagement(c, 'rejections'));
    const entry = await commitAs(member, (c) => logTime(c, e.engagementId, '2026-06-02'));
    const sheet = await submit(member, '2026-06-01');
    await asVisitor(admin, async (c) => {
      expect(await attempt(c, 'select app_public.reject_timesheet($1, $2)', [sheet.id, '  '])).toBe('22023');
    });
    const rejected = await commitAs(admin, (c) => one<{ status: string; rejection_reason: string }>(c, `select status, rejection_reason from app_public.reject_timesheet($1, 'Tuesday is 6 hours, not 1')`, [sheet.id]));
    expect(rejected).toEqual({ status: 'rejected', rejection_reason: 'Tuesday is 6 hours, not 1' });
    await commitAs(member, (c) => c.query('update app_public.time_entries set minutes = 360 where id = $1', [entry.id]));
    expect((await submit(member, '2026-06-01')).status).toBe('submitted');
    await commitAs(admin, (c) => c.query('select app_public.approve_timesheet($1)', [sheet.id]));
    const invoice = await commitAs(own, (c) => one<{ id: string; subtotal: string }>(c, 'select id, subtotal from app_public.create_invoice_from_time($1)', [e.engagementId]));
    expect(invoice.subtotal).toBe('900.00'); // 6 h at 150
    await asVisitor(admin, async (c) => {
      expect(await attempt(c, `select app_public.reject_timesheet($1, 'late fix')`, [sheet.id])).toBe('AT451');
      // Cancelling the invoice frees the time: then the week can be rejected.
      await c.query('select app_public.cancel_invoice($1)', [invoice.id]);
      expect(await attempt(c, `select app_public.reject_timesheet($1, 'late fix')`, [sheet.id])).toBeNull();
    });
  });
});

describe('invoicing approved time', () => {
  test('only approved weeks are invoiced; an organization that does not require approval invoices any billable time', async () => {
    const e = await commitAs(own, (c) => signedEngagement(c, 'approval'));
    await commitAs(member, async (c) => {
      await logTime(c, e.engagementId, '2026-07-07');
      await logTime(c, e.engagementId, '2026-07-14');
    });
    await asVisitor(own, async (c) => {
      expect(await attempt(c, 'select app_public.create_invoice_from_time($1)', [e.engagementId])).toBe('AT462');
    });
    const sheet = await submit(member, '2026-07-07');
    await commitAs(admin, (c) => c.query('select app_public.approve_timesheet($1)', [sheet.id]));
    await asVisitor(own, async (c) => {
      expect((await one<{ subtotal: string }>(c, 'select subtotal from app_public.create_invoice_from_time($1)', [e.engagementId])).subtotal).toBe('150.00');
    });
    await asVisitor(own, async (c) => {
      await c.query('update app_public.organizations set time_approval_required = false where id = $1', [t.orgId]);
      expect((await one<{ subtotal: string }>(c, 'select subtotal from app_public.create_invoice_from_time($1)', [e.engagementId])).subtotal).toBe('300.00');
    });
  });
});

describe('locked periods', () => {
  test('time up to the locked date is neither added, changed, moved in or out, nor deleted; later time is; only owners and admins move the date', async () => {
    const older = await commitAs(member, (c) => logTime(c, t.engagementId, '2026-03-31'));
    await asVisitor(member, async (c) => {
      expect((await c.query(`update app_public.organizations set time_locked_through = '2026-03-31' where id = $1`, [t.orgId])).rowCount).toBe(0);
    });
    await asVisitor(admin, async (c) => {
      await c.query(`update app_public.organizations set time_locked_through = '2026-03-31' where id = $1`, [t.orgId]);
      expect(await attempt(c, `insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) values ($1, $2, '2026-03-31', 30)`, [t.engagementId, memberId])).toBe('AT451');
      expect(await attempt(c, 'update app_public.time_entries set minutes = 30 where id = $1', [older.id])).toBe('AT451');
      expect(await attempt(c, `update app_public.time_entries set work_date = '2026-04-01' where id = $1`, [older.id])).toBe('AT451');
      expect(await attempt(c, 'select app_public.soft_delete_time_entry($1)', [older.id])).toBe('AT451');
      const april = await logTime(c, t.engagementId, '2026-04-01');
      expect(await attempt(c, `update app_public.time_entries set work_date = '2026-03-30' where id = $1`, [april.id])).toBe('AT451');
      expect(await attempt(c, 'update app_public.time_entries set minutes = 45 where id = $1', [april.id])).toBeNull();
    });
  });
});
