// Rates and cost (sql/functions/rates.sql): rate cards resolved when time is logged, most specific
// first and by effective date, frozen on the entry; billable time without a rate refused
// (RATE_MISSING); a rate by hand needs rates.write; members' cost frozen on each entry and read
// only with costs.read (admins by default), in the rows and in the activity log.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import { asVisitor, attempt, closePools, pgError, sessionOf, unique, type Session } from './support/db.ts';
import { approveTime, commitAs, one, oneTenant, signedEngagement, type Tenant } from './support/fixtures.ts';

let t: Tenant;
let own: Session;
beforeAll(async () => {
  t = await oneTenant('rates');
  own = sessionOf(t.owner, t.orgId);
}, 60_000);
afterAll(closePools);

const memberIdOf = async (c: pg.PoolClient, userId: string) => (await one<{ id: string }>(c, 'select id from app_public.organization_members where user_id = $1', [userId])).id;

interface Entry { id: string; rate: string; rate_source: string | null; job_role_id: string | null }
const logTime = (c: pg.PoolClient, engagementId: string, memberId: string, workDate: string, extra: { billable?: boolean; rate?: number; jobRoleId?: string } = {}) =>
  one<Entry>(
    c,
    `insert into app_public.time_entries (engagement_id, member_id, work_date, minutes, billable, rate, job_role_id)
     values ($1, $2, $3, 60, $4, $5, $6) returning id, rate, rate_source, job_role_id`,
    [engagementId, memberId, workDate, extra.billable ?? true, extra.rate ?? 0, extra.jobRoleId ?? null],
  );

describe('the bill rate of a time entry', () => {
  test('the most specific rate card wins: engagement, then the engagement\'s own rate, then client, then organization; member, then job role, then everyone', async () => {
    await asVisitor(own, async (c) => {
      const e = await signedEngagement(c, 'precedence');
      await c.query('update app_public.engagements set hourly_rate = null where id = $1', [e.engagementId]);
      const other = await signedEngagement(c, 'elsewhere');
      const member = await memberIdOf(c, t.member.userId);
      const admin = await memberIdOf(c, t.admin.userId);
      const role = (await one<{ id: string }>(c, `insert into app_public.job_roles (name) values ('Strategist') returning id`)).id;
      const otherRole = (await one<{ id: string }>(c, `insert into app_public.job_roles (name) values ('Copywriter') returning id`)).id;
      await c.query('update app_public.organization_members set job_role_id = $1 where id = $2', [role, member]);
      // The fixture's own cards (a designer rate) do not apply to a strategist.
      await c.query(`select app_public.soft_delete_bill_rate(id) from app_public.bill_rates where job_role_id <> $1 or job_role_id is null`, [role]);

      const card = (rate: number, scope: { client?: string; engagement?: string; role?: string; member?: string }) =>
        c.query(
          'insert into app_public.bill_rates (client_company_id, engagement_id, job_role_id, member_id, hourly_rate) values ($1, $2, $3, $4, $5)',
          [scope.client ?? null, scope.engagement ?? null, scope.role ?? null, scope.member ?? null, rate],
        );
      const expectRate = async (rate: string | null, source: string) => {
        expect((await one<{ r: string | null }>(c, 'select app_public.applicable_bill_rate($1, $2, $3) as r', [e.engagementId, member, '2026-05-04'])).r).toBe(rate);
        if (rate === null) {
          expect(await attempt(c, 'insert into app_public.time_entries (engagement_id, member_id, work_date, minutes) values ($1, $2, $3, 60)', [e.engagementId, member, '2026-05-04'])).toBe('AT464');
        } else {
          expect(await logTime(c, e.engagementId, member, '2026-05-04')).toMatchObject({ rate, rate_source: source, job_role_id: role });
        }
      };

      await expectRate(null, 'none');
      // Non-billable time needs no rate.
      expect(await logTime(c, e.engagementId, member, '2026-05-04', { billable: false })).toMatchObject({ rate: '0.00', rate_source: 'non_billable' });
      // Cards of another client, engagement, member or role never apply.
      await card(90, { client: other.clientId });
      await card(91, { engagement: other.engagementId });
      await card(92, { member: admin });
      await card(93, { role: otherRole });
      await expectRate(null, 'none');

      await card(100, {});
      await expectRate('100.00', 'organization');
      await card(110, { role });
      await expectRate('110.00', 'organization_role');
      await card(115, { member });
      await expectRate('115.00', 'organization_member');
      await card(120, { client: e.clientId });
      await expectRate('120.00', 'client');
      await card(125, { client: e.clientId, role });
      await expectRate('125.00', 'client_role');
      await card(130, { client: e.clientId, member });
      await expectRate('130.00', 'client_member');
      await c.query('update app_public.engagements set hourly_rate = 140 where id = $1', [e.engagementId]);
      await expectRate('140.00', 'engagement_default');
      await card(150, { engagement: e.engagementId });
      await expectRate('150.00', 'engagement');
      await card(155, { engagement: e.engagementId, role });
      await expectRate('155.00', 'engagement_role');
      await card(160, { engagement: e.engagementId, member });
      await expectRate('160.00', 'engagement_member');

      // Logged under another job role: that role's cards, not the member's.
      await card(170, { engagement: e.engagementId, role: otherRole });
      await c.query('select app_public.soft_delete_bill_rate(id) from app_public.bill_rates where member_id = $1', [member]);
      expect(await logTime(c, e.engagementId, member, '2026-05-04', { jobRoleId: otherRole })).toMatchObject({ rate: '170.00', rate_source: 'engagement_role', job_role_id: otherRole });
      // A deleted card no longer applies.
      await expectRate('155.00', 'engagement_role');
    });
  });

  test('rates are effective-dated and frozen on the entry: a later card never changes logged time; a new date is priced again', async () => {
    await asVisitor(own, async (c) => {
      const e = await signedEngagement(c, 'dates');
      const member = await memberIdOf(c, t.member.userId);
      expect(await attempt(c, `insert into app_public.bill_rates (engagement_id, hourly_rate) values ($1, 100), ($1, 200)`, [e.engagementId])).toBe('23505');
      await c.query(`insert into app_public.bill_rates (engagement_id, hourly_rate, effective_from) values ($1, 100, null), ($1, 200, '2026-03-01'), ($1, 250, '2026-06-01')`, [e.engagementId]);
      expect((await logTime(c, e.engagementId, member, '2026-02-28')).rate).toBe('100.00');
      expect((await logTime(c, e.engagementId, member, '2026-03-01')).rate).toBe('200.00');
      expect((await logTime(c, e.engagementId, member, '2026-05-31')).rate).toBe('200.00');
      const june = await logTime(c, e.engagementId, member, '2026-06-15');
      expect(june.rate).toBe('250.00');
      // A new card for June does not touch June's entry, until its date changes.
      await c.query(`insert into app_public.bill_rates (engagement_id, hourly_rate, effective_from) values ($1, 300, '2026-06-10')`, [e.engagementId]);
      expect((await one<{ rate: string }>(c, 'select rate from app_public.time_entries where id = $1', [june.id])).rate).toBe('250.00');
      await c.query(`update app_public.time_entries set description = 'workshop' where id = $1`, [june.id]);
      expect((await one<{ rate: string }>(c, 'select rate from app_public.time_entries where id = $1', [june.id])).rate).toBe('250.00');
      await c.query(`update app_public.time_entries set work_date = '2026-06-16' where id = $1`, [june.id]);
      expect((await one<{ rate: string; rate_source: string }>(c, 'select rate, rate_source from app_public.time_entries where id = $1', [june.id]))).toEqual({ rate: '300.00', rate_source: 'engagement' });
      // Made non-billable: 0; billable again: priced again.
      await c.query('update app_public.time_entries set billable = false where id = $1', [june.id]);
      expect((await one<{ rate: string; rate_source: string }>(c, 'select rate, rate_source from app_public.time_entries where id = $1', [june.id]))).toEqual({ rate: '0.00', rate_source: 'non_billable' });
      await c.query('update app_public.time_entries set billable = true where id = $1', [june.id]);
      expect((await one<{ rate: string }>(c, 'select rate from app_public.time_entries where id = $1', [june.id])).rate).toBe('300.00');
      // The source is the trigger's to say.
      expect(await attempt(c, `update app_public.time_entries set rate_source = 'entry' where id = $1`, [june.id])).toBe('42501');
      // Both a client and an engagement: one scope only.
      expect(await attempt(c, 'insert into app_public.bill_rates (client_company_id, engagement_id, hourly_rate) values ($1, $2, 1)', [e.clientId, e.engagementId])).toBe('23514');
    });
  });

  test('an invoice bills the frozen rates; invoiced time keeps its rate when the cards change', async () => {
    await asVisitor(own, async (c) => {
      const e = await signedEngagement(c, 'invoiced');
      const member = await memberIdOf(c, t.member.userId);
      await c.query(`insert into app_public.bill_rates (engagement_id, member_id, hourly_rate) values ($1, $2, 180)`, [e.engagementId, member]);
      await logTime(c, e.engagementId, member, '2026-04-01');
      await logTime(c, e.engagementId, member, '2026-04-02', { billable: false });
      await approveTime(c, e.engagementId);
      const invoice = await one<{ id: string; subtotal: string }>(c, 'select id, subtotal from app_public.create_invoice_from_time($1)', [e.engagementId]);
      expect(invoice.subtotal).toBe('180.00');
      await c.query(`update app_public.bill_rates set hourly_rate = 999 where engagement_id = $1`, [e.engagementId]);
      expect((await one<{ rate: string }>(c, `select rate from app_public.time_entries where invoice_id = $1`, [invoice.id])).rate).toBe('180.00');
    });
  });

  test('a rate by hand needs rates.write: refused for a member, kept by an owner through later changes', async () => {
    const member = sessionOf(t.member, t.orgId);
    const memberId = await commitAs(own, (c) => memberIdOf(c, t.member.userId));
    await asVisitor(member, async (c) => {
      expect(await attempt(c, 'insert into app_public.time_entries (engagement_id, member_id, minutes, rate) values ($1, $2, 60, 1)', [t.engagementId, memberId])).toBe('AT403');
      const entry = await logTime(c, t.engagementId, memberId, '2026-02-02');
      expect(entry).toMatchObject({ rate: '150.00', rate_source: 'engagement_default' });
      expect(await attempt(c, 'update app_public.time_entries set rate = 1 where id = $1', [entry.id])).toBe('AT403');
    });
    await asVisitor(own, async (c) => {
      const entry = await logTime(c, t.engagementId, memberId, '2026-02-02', { rate: 95 });
      expect(entry).toMatchObject({ rate: '95.00', rate_source: 'entry' });
      await c.query(`update app_public.time_entries set work_date = '2026-02-03' where id = $1`, [entry.id]);
      expect((await one<{ rate: string }>(c, 'select rate from app_public.time_entries where id = $1', [entry.id])).rate).toBe('95.00');
    });
  });

  test('members read rates but do not set them; a viewer reads them too', async () => {
    await asVisitor(sessionOf(t.member, t.orgId), async (c) => {
      expect(Number((await one<{ n: string }>(c, 'select count(*) as n from app_public.bill_rates')).n)).toBeGreaterThan(0);
      expect(await attempt(c, 'insert into app_public.bill_rates (hourly_rate) values (1)')).toBe('42501');
      expect(await attempt(c, `insert into app_public.job_roles (name) values ('Intern')`)).toBe('42501');
      // Giving a colleague a job role is an admin's.
      expect((await c.query('update app_public.organization_members set job_role_id = null')).rowCount).toBe(0);
    });
    await asVisitor(sessionOf(t.viewer, t.orgId), async (c) => {
      expect(Number((await one<{ n: string }>(c, 'select count(*) as n from app_public.job_roles')).n)).toBeGreaterThan(0);
      expect((await one<{ r: string }>(c, 'select app_public.applicable_bill_rate($1, (select id from app_public.organization_members where user_id = $2)) as r', [t.engagementId, t.owner.userId])).r).toBe('150.00');
    });
    await asVisitor(sessionOf(t.admin, t.orgId), async (c) => {
      expect(await attempt(c, `insert into app_public.job_roles (name) values ($1)`, [unique('Intern')])).toBeNull();
      expect(await attempt(c, `insert into app_public.job_roles (name) values (' designer ')`)).toBe('23505');
    });
  });
});

describe('the cost of time', () => {
  test('each entry freezes its member\'s cost rate in force on its date; no cost rate: cost unknown', async () => {
    await asVisitor(own, async (c) => {
      const member = await memberIdOf(c, t.member.userId);
      const cost = (id: string) => one<{ hourly_cost: string | null }>(c, 'select hourly_cost from app_public.time_entry_costs where id = $1', [id]);
      const before = await logTime(c, t.engagementId, member, '2026-01-15');
      expect((await cost(before.id)).hourly_cost).toBeNull();
      await c.query(`insert into app_public.member_cost_rates (member_id, hourly_cost, effective_from) values ($1, 50, '2026-02-01'), ($1, 65, '2026-07-01')`, [member]);
      expect((await cost(before.id)).hourly_cost).toBeNull();
      const feb = await logTime(c, t.engagementId, member, '2026-02-10');
      expect((await cost(feb.id)).hourly_cost).toBe('50.00');
      const july = await logTime(c, t.engagementId, member, '2026-07-10');
      expect((await cost(july.id)).hourly_cost).toBe('65.00');
      // A later cost rate does not change logged time; a new date is costed again.
      await c.query(`update app_public.member_cost_rates set hourly_cost = 70 where member_id = $1 and effective_from = '2026-07-01'`, [member]);
      expect((await cost(july.id)).hourly_cost).toBe('65.00');
      await c.query(`update app_public.time_entries set work_date = '2026-07-11' where id = $1`, [july.id]);
      expect((await cost(july.id)).hourly_cost).toBe('70.00');
      // Another member's entry: their cost.
      const owner = await memberIdOf(c, t.owner.userId);
      await c.query(`update app_public.time_entries set member_id = $2 where id = $1`, [july.id, owner]);
      expect((await cost(july.id)).hourly_cost).toBe('60.00');
      // The rows are the trigger's: not even an owner writes them.
      expect(await attempt(c, 'update app_public.time_entry_costs set hourly_cost = 1 where id = $1', [july.id])).toBe('42501');
      expect(await attempt(c, 'delete from app_public.time_entry_costs where id = $1', [july.id])).toBe('42501');
    });
  });

  test('cost is confidential: members and viewers read neither cost rates nor the cost of time, nor their events; admins do', async () => {
    for (const user of [t.member, t.viewer]) {
      await asVisitor(sessionOf(user, t.orgId), async (c) => {
        expect(Number((await one<{ n: string }>(c, 'select count(*) as n from app_public.time_entries')).n)).toBeGreaterThan(0);
        expect(Number((await one<{ n: string }>(c, 'select count(*) as n from app_public.time_entry_costs')).n)).toBe(0);
        expect(Number((await one<{ n: string }>(c, 'select count(*) as n from app_public.member_cost_rates')).n)).toBe(0);
        expect(Number((await one<{ n: string }>(c, `select count(*) as n from app_public.activity_events where table_name in ('member_cost_rates', 'time_entry_costs')`)).n)).toBe(0);
        expect(await attempt(c, 'insert into app_public.member_cost_rates (member_id, hourly_cost) values ((select id from app_public.organization_members limit 1), 1)')).toBe('42501');
        expect((await one<{ p: string[] }>(c, 'select array_agg(p order by p) as p from app_public.my_permissions() p')).p).not.toEqual(expect.arrayContaining(['costs.read']));
      });
    }
    await asVisitor(sessionOf(t.admin, t.orgId), async (c) => {
      expect(Number((await one<{ n: string }>(c, 'select count(*) as n from app_public.time_entry_costs')).n)).toBeGreaterThan(0);
      expect(Number((await one<{ n: string }>(c, 'select count(*) as n from app_public.member_cost_rates')).n)).toBeGreaterThan(0);
      expect(Number((await one<{ n: string }>(c, `select count(*) as n from app_public.activity_events where table_name = 'member_cost_rates'`)).n)).toBeGreaterThan(0);
    });
  });
});

describe('the rate agreed at signing', () => {
  test('signContract with an hourly rate starts the engagement priced at it; giving one needs engagements.write', async () => {
    const sentContract = () => commitAs(own, async (c) => {
      const company = await one<{ id: string }>(c, 'insert into app_public.client_companies (name) values ($1) returning id', [unique('Signed client')]);
      const proposal = await one<{ id: string }>(c, `select id from app_public.create_proposal_with_lines($1, 'Support', array[row('Support', 1, 1000, null)]::app_public.document_line[])`, [company.id]);
      await c.query('select app_public.send_proposal($1)', [proposal.id]);
      const contract = await one<{ id: string }>(c, `select id from app_public.accept_proposal($1, 'Casey')`, [proposal.id]);
      await c.query('select app_public.send_contract($1)', [contract.id]);
      return contract.id;
    });
    const engagement = await commitAs(own, async (c) => one<{ id: string; hourly_rate: string }>(c, `select id, hourly_rate from app_public.sign_contract($1, 'Casey', 135)`, [await sentContract()]));
    expect(engagement.hourly_rate).toBe('135.00');
    await asVisitor(own, async (c) => {
      const entry = await logTime(c, engagement.id, await memberIdOf(c, t.owner.userId), '2026-06-01');
      expect(entry).toMatchObject({ rate: '135.00', rate_source: 'engagement_default' });
    });
    // A member whose role signs contracts but does not change engagements signs, without a rate.
    const role = await commitAs(own, async (c) => {
      const r = await one<{ id: string }>(c, `insert into app_public.roles (name) values ('Contract signer') returning id`);
      await c.query(`insert into app_public.role_permissions (role_id, permission_key) select $1, unnest(array['contracts.read', 'contracts.write'])`, [r.id]);
      await c.query('insert into app_public.role_assignments (member_id, role_id) values ($1, $2)', [await memberIdOf(c, t.member.userId), r.id]);
      return r.id;
    });
    try {
      const contractId = await sentContract();
      await asVisitor(sessionOf(t.member, t.orgId), async (c) => {
        expect(await attempt(c, `select app_public.sign_contract($1, 'Casey', 135)`, [contractId])).toBe('AT403');
        expect(await attempt(c, `select app_public.sign_contract($1, 'Casey')`, [contractId])).toBeNull();
      });
    } finally {
      await commitAs(own, async (c) => c.query('delete from app_public.role_assignments where role_id = $1', [role]));
    }
  });
});
