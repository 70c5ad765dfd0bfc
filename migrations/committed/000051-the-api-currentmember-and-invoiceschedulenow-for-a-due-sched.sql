--! Previous: sha1:e2d0f834bea46fce6764f3d6ddef11415f283057
--! Hash: sha1:12d607cdac2164bc9c98889fbd1313a9eb36b63b
--! Message: The API: currentMember, and invoiceScheduleNow for a due schedule

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '60s';

-- The API: currentMember (the viewer's membership in the current organization).
--! Included functions/members.sql
-- Membership rules that policies alone cannot express. Who may change members at all is in the
-- policies on app_public.organization_members (owners and admins); these triggers add:
--   * only an owner may grant the owner role, or change or remove an owner       (OWNER_REQUIRED)
--   * an organization always keeps at least one owner, even under concurrency     (LAST_OWNER)

-- BEFORE UPDATE OR DELETE on organization_members, per row. SECURITY DEFINER so that it sees
-- (and locks) every owner of the organization, whatever the acting user can see; nobody can call
-- it directly. Changes made through the API or by the worker (their session logs in as the
-- authenticator or the worker) are checked; maintenance by the owner role is trusted.
create or replace function app_private.tg_organization_members__guard_owners() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_checked boolean := session_user in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name);
begin
  if tg_op = 'DELETE' and app_private.erasing(old.organization_id, 'organization') then
    return old; -- the purge of a deleted organization (sql/functions/organization_deletion.sql)
  end if;
  if tg_op = 'UPDATE' and (new.user_id <> old.user_id or new.organization_id <> old.organization_id) then
    perform app_private.fail('IMMUTABLE', 'A membership cannot be moved to another user or organization.');
  end if;
  if v_checked and (old.role = 'owner' or (tg_op = 'UPDATE' and new.role = 'owner'))
     and app_public.current_member_role() is distinct from 'owner' then
    perform app_private.fail('OWNER_REQUIRED', 'Only an owner may grant, change or remove the owner role.');
  end if;
  if old.role = 'owner' and (tg_op = 'DELETE' or new.role <> 'owner') then
    -- Lock the organization, so that concurrent changes to its owners queue up, then count.
    perform 1 from app_public.organizations o where o.id = old.organization_id for no key update;
    if not exists (
      select 1 from app_public.organization_members m
      where m.organization_id = old.organization_id and m.role = 'owner' and m.id <> old.id
    ) then
      perform app_private.fail('LAST_OWNER', 'An organization must keep at least one owner; make someone else owner first.');
    end if;
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

-- The signed-in user's membership in the current organization (role, job role), for a client to
-- show who it acts as; null without an organization.
create or replace function app_public.current_member() returns app_public.organization_members
language sql stable
set search_path = pg_catalog
as $$
  select m.* from app_public.organization_members m
  where m.organization_id = app_public.current_org_id() and m.user_id = app_public.current_user_id()
$$;
revoke all on function app_public.current_member() from public;
grant execute on function app_public.current_member() to :DATABASE_VISITOR;
comment on function app_public.current_member() is 'Your membership in the current organization (role, job role); null when no organization is chosen.';
--! EndIncluded functions/members.sql

-- The API: invoiceScheduleNow (a due schedule billed at once, as the nightly job would).
--! Included functions/invoice_schedules.sql
-- Scheduled invoicing: invoices generated from app_public.invoice_schedules by the job worker
-- (src/worker/tasks/scheduled_invoicing.ts fans out, tenant_invoicing.ts runs one organization):
--
--   recurring  one invoice per period: the period starting on next_run_on, then every week,
--              month, quarter or year after it, up to and including `day`; a run that comes late
--              (the worker was down) bills every missed period, each on its own invoice. Periods
--              are counted from the schedule's anchor (anchor_on), so month ends do not drift:
--              Jan 31, Feb 28, Mar 31. A period starting after ends_on is not billed: the
--              schedule then becomes inactive.
--   fixed      one invoice on next_run_on, then the schedule becomes inactive.
--   milestone  one invoice once its milestone is reached, then the schedule becomes inactive.
--
-- Exactly once per period: each invoice carries its schedule and period_start, and the unique
-- constraint invoices_organization_id_schedule_id_period_start_key admits one invoice per
-- schedule and period, whatever runs concurrently. The generator also locks each due schedule
-- (FOR UPDATE) before billing it, so a second run waits, then finds the schedule advanced and
-- bills nothing (tests/invoice-schedules.test.ts, two parallel connections).
--
-- An invoice is a draft with one line (the schedule's description and amount, for the period)
-- and the schedule's tax rate. With auto_send the generator sends it at once through
-- app_public.send_invoice, in the same transaction: the gapless number, issue and due dates
-- (issue date + the organization's payment_terms_days), status stamps, audit event and outbox job
-- are exactly those of a person sending it.
-- Only schedules of live engagements (active or on hold, not deleted) bill; soft-deleted or
-- inactive schedules never do. Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- Columns

alter table app_public.invoice_schedules
  add column if not exists auto_send boolean not null default false,
  add column if not exists tax_rate numeric(5,2) not null default 0 check (tax_rate between 0 and 100),
  add column if not exists anchor_on date;
comment on column app_public.invoice_schedules.auto_send is 'Send each generated invoice at once (numbered, dated, due after the organization''s payment terms); otherwise it stays a draft to review and send.';
comment on column app_public.invoice_schedules.tax_rate is 'Tax rate (percent) of the invoices it generates.';
comment on column app_public.invoice_schedules.anchor_on is 'Recurring schedules: the date periods are counted from (kept by the database: the first next_run_on, and any next_run_on moved off its rhythm).';
comment on column app_public.invoice_schedules.next_run_on is 'Recurring: the start of the next period to bill; fixed: the billing date. Advanced by the invoicing job.';
comment on column app_public.invoice_schedules.active is 'Inactive schedules bill nothing; a fixed or milestone schedule, or a recurring one past ends_on, becomes inactive once it has billed.';
-- The visitor sets auto_send and tax_rate like the other schedule fields; anchor_on is the
-- database's (no privilege, like last_invoiced_at).
grant insert (auto_send, tax_rate), update (auto_send, tax_rate) on app_public.invoice_schedules to :DATABASE_VISITOR;

alter table app_public.invoices
  add column if not exists period_start date,
  add column if not exists period_end date;
comment on column app_public.invoices.period_start is 'Invoices generated by a schedule: the start of the period billed (recurring), the billing date (fixed) or the day the milestone was reached. One invoice per schedule and period.';
comment on column app_public.invoices.period_end is 'Recurring schedules: the last day of the period billed.';
-- Exactly once per period: the one rule every concurrent or repeated run meets. (Each constraint
-- is added once: adding it checks every invoice.)
do $$
begin
  if not exists (select from pg_constraint where conname = 'invoices_schedule_period_check' and conrelid = 'app_public.invoices'::regclass) then
    alter table app_public.invoices add constraint invoices_schedule_period_check
      check ((schedule_id is null) = (period_start is null) and period_end >= period_start);
  end if;
  if not exists (select from pg_constraint where conname = 'invoices_organization_id_schedule_id_period_start_key' and conrelid = 'app_public.invoices'::regclass) then
    alter table app_public.invoices
      add constraint invoices_organization_id_schedule_id_period_start_key unique (organization_id, schedule_id, period_start);
  end if;
end
$$;
-- period_start and period_end get no visitor privilege: only the generator writes them (like
-- schedule_id, a read-only column of invoices).

------------------------------------------------------------------------------------------------
-- Periods

-- The length of one period of a recurring schedule.
create or replace function app_private.schedule_step(frequency app_public.schedule_frequency) returns interval
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select case frequency
    when 'weekly' then interval '7 days'
    when 'monthly' then interval '1 month'
    when 'quarterly' then interval '3 months'
    when 'yearly' then interval '1 year'
  end
$$;

-- The first period start after `after` of a schedule anchored on `anchor`: anchor + n steps for
-- the smallest such n, each counted from the anchor (never from the previous, possibly clamped,
-- start), so a schedule anchored on the 31st bills on the 31st of every month that has one.
create or replace function app_private.schedule_next_start(anchor date, frequency app_public.schedule_frequency, after date) returns date
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
declare
  v_step interval := app_private.schedule_step(frequency);
  -- A lower bound for n: no period is longer than this many days.
  v_n integer := greatest(0, (after - anchor) / case frequency when 'weekly' then 7 when 'monthly' then 31 when 'quarterly' then 92 else 366 end - 1);
begin
  while (anchor + v_n * v_step)::date <= after loop
    v_n := v_n + 1;
  end loop;
  return (anchor + v_n * v_step)::date;
end
$$;

-- BEFORE INSERT OR UPDATE OF next_run_on, frequency, kind: keeps anchor_on. A new recurring
-- schedule is anchored on its next_run_on; moving next_run_on to a date off the anchor's rhythm
-- (or changing the frequency so that it is) re-anchors it there. The generator only moves
-- next_run_on along the rhythm, which keeps the anchor. SECURITY DEFINER so that the visitor
-- needs no privilege on the period helpers.
create or replace function app_private.tg__invoice_schedule_anchor() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if new.kind <> 'recurring' or new.next_run_on is null then
    new.anchor_on := null;
  elsif tg_op = 'INSERT' or new.anchor_on is null or new.anchor_on > new.next_run_on
     or app_private.schedule_next_start(new.anchor_on, new.frequency, new.next_run_on - 1) <> new.next_run_on then
    new.anchor_on := new.next_run_on;
  end if;
  return new;
end
$$;

drop trigger if exists tg_invoice_schedules__anchor on app_public.invoice_schedules;
create trigger tg_invoice_schedules__anchor before insert or update of next_run_on, frequency, kind on app_public.invoice_schedules
  for each row execute function app_private.tg__invoice_schedule_anchor();
-- Schedules made before the column existed.
update app_public.invoice_schedules s set anchor_on = s.next_run_on
where s.kind = 'recurring' and s.anchor_on is null and s.next_run_on is not null;

------------------------------------------------------------------------------------------------
-- Generating

-- Is schedule `s` due on `day`? Active, not deleted, its engagement live (active or on hold, not
-- deleted), and: a date schedule's next_run_on has come; a milestone schedule's milestone is
-- reached. One definition for the fan-out and the generator.
create or replace function app_private.invoice_schedule_is_due(s app_public.invoice_schedules, day date) returns boolean
language sql stable
set search_path = pg_catalog
as $$
  select s.active and s.deleted_at is null
    and exists (
      select from app_public.engagements e
      where e.organization_id = s.organization_id and e.id = s.engagement_id
        and e.deleted_at is null and e.status in ('active', 'on_hold')
    )
    and case
      when s.kind = 'milestone' then exists (
        select from app_public.milestones m
        where m.organization_id = s.organization_id and m.id = s.milestone_id and m.status = 'reached'
      )
      else s.next_run_on <= day
    end
$$;

-- One invoice of schedule `s` for the period [period_start, period_end]: a draft with one line,
-- sent at once when the schedule says so. Returns its id, or null when that period already has
-- its invoice (the unique constraint decides, so concurrent runs cannot both create it).
create or replace function app_private.create_scheduled_invoice(s app_public.invoice_schedules, period_start date, period_end date, label text) returns uuid
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_id uuid;
begin
  insert into app_public.invoices (organization_id, client_company_id, engagement_id, schedule_id, period_start, period_end, tax_rate)
  select s.organization_id, e.client_company_id, e.id, s.id, create_scheduled_invoice.period_start, create_scheduled_invoice.period_end, s.tax_rate
  from app_public.engagements e
  where e.organization_id = s.organization_id and e.id = s.engagement_id
  on conflict on constraint invoices_organization_id_schedule_id_period_start_key do nothing
  returning id into v_id;
  if v_id is null then
    return null;
  end if;
  insert into app_public.invoice_line_items (organization_id, invoice_id, position, description, quantity, unit_price)
  values (s.organization_id, v_id, 1, left(s.description || coalesce(', ' || label, ''), 1000), 1, s.amount);
  if s.auto_send then
    perform app_public.send_invoice(v_id);
  end if;
  return v_id;
end
$$;

-- Bills schedule `s` (locked by the caller, and due) for every due period up to `day`, advances
-- or ends it, and returns how many invoices it created.
create or replace function app_private.bill_schedule(s app_public.invoice_schedules, day date) returns integer
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_start date;
  v_next date;
  v_last date;
  v_created integer := 0;
begin
  if s.kind = 'recurring' then
    v_start := s.next_run_on;
    v_last := s.next_run_on;
    while v_start <= day and (s.ends_on is null or v_start <= s.ends_on) loop
      v_next := app_private.schedule_next_start(coalesce(s.anchor_on, s.next_run_on), s.frequency, v_start);
      if app_private.create_scheduled_invoice(s, v_start, v_next - 1, format('%s – %s', v_start, v_next - 1)) is not null then
        v_created := v_created + 1;
      end if;
      v_last := v_start;
      v_start := v_next;
    end loop;
    if s.ends_on is not null and v_start > s.ends_on then
      -- The last period is billed: next_run_on stays on it (it may not pass ends_on).
      update app_public.invoice_schedules t set active = false, next_run_on = v_last,
        last_invoiced_at = case when v_created > 0 then now() else t.last_invoiced_at end
      where t.organization_id = s.organization_id and t.id = s.id;
    else
      update app_public.invoice_schedules t set next_run_on = v_start,
        last_invoiced_at = case when v_created > 0 then now() else t.last_invoiced_at end
      where t.organization_id = s.organization_id and t.id = s.id;
    end if;
  else
    if app_private.create_scheduled_invoice(
      s,
      case when s.kind = 'fixed' then s.next_run_on else (
        select (m.reached_at at time zone 'UTC')::date from app_public.milestones m
        where m.organization_id = s.organization_id and m.id = s.milestone_id
      ) end,
      null,
      null
    ) is not null then
      v_created := v_created + 1;
    end if;
    update app_public.invoice_schedules t set active = false,
      last_invoiced_at = case when v_created > 0 then now() else t.last_invoiced_at end
    where t.organization_id = s.organization_id and t.id = s.id;
  end if;
  return v_created;
end
$$;
revoke all on function app_private.bill_schedule(app_public.invoice_schedules, date) from public;

-- Bills every due period of the current organization's schedules up to `day` (see the top of
-- this file) and returns how many invoices it created. Only the worker's session, inside one
-- organization; a second run for the same day creates nothing.
create or replace function app_private.generate_scheduled_invoices(day date) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  s app_public.invoice_schedules;
  v_created integer := 0;
begin
  -- Locked in id order (two runs never deadlock); a row changed by a concurrent run is re-read
  -- and re-checked after its lock is granted, so a schedule that run advanced is no longer due.
  for s in
    select t.* from app_public.invoice_schedules t
    where t.organization_id = v_org and t.active and t.deleted_at is null
      and (t.kind = 'milestone' or t.next_run_on <= day)
      and app_private.invoice_schedule_is_due(t, day)
    order by t.id
    for update of t
  loop
    v_created := v_created + app_private.bill_schedule(s, day);
  end loop;
  return v_created;
end
$$;

-- "Invoice this schedule now" (invoices.write): what the nightly job would bill for it today, at
-- once — every due period, the schedule advanced or ended as the job leaves it. Not due: refused.
create or replace function app_public.invoice_schedule_now(schedule_id uuid) returns setof app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  s app_public.invoice_schedules;
begin
  perform app_private.require_permission('invoices.write', 'invoice a schedule');
  -- The schedule first, as the job locks it: a concurrent run of the job waits, then finds it
  -- advanced (nothing due) instead of billing the period again.
  select t.* into s from app_public.invoice_schedules t
  where t.organization_id = v_org and t.id = invoice_schedule_now.schedule_id and t.deleted_at is null
  for update;
  if s.id is null then
    perform app_private.fail('NOT_FOUND', 'No such invoice schedule in this organization.');
  end if;
  if not app_private.invoice_schedule_is_due(s, current_date) then
    perform app_private.fail('INVALID_TRANSITION', case
      when not s.active then 'This schedule is not active.'
      when s.kind = 'milestone' then 'This schedule bills when its milestone is reached.'
      else format('This schedule has nothing due before %s.', s.next_run_on) end);
  end if;
  perform app_private.bill_schedule(s, current_date);
  -- The invoices this transaction made for it.
  return query select i.* from app_public.invoices i
    where i.organization_id = v_org and i.schedule_id = s.id and i.created_at = now()
    order by i.period_start nulls first, i.id;
end
$$;
revoke all on function app_public.invoice_schedule_now(uuid) from public;
grant execute on function app_public.invoice_schedule_now(uuid) to :DATABASE_VISITOR;
comment on function app_public.invoice_schedule_now(uuid) is 'Bills a due schedule now (invoices.write), as the nightly job would today: every due period on its own invoice (sent at once with auto_send); the schedule advances or ends. Returns the invoices it made. A schedule with nothing due is refused (INVALID_TRANSITION).';

-- One tenant_invoicing job per organization that has a schedule due on `day` (job key
-- tenant_invoicing:<organization>:<day>: one per organization and day, however often the crontab
-- fires or backfills). Returns how many organizations.
create or replace function app_private.enqueue_scheduled_invoicing(day date) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_count integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker runs scheduled invoicing.');
  end if;
  select count(*) into v_count
  from (
    select distinct s.organization_id
    from app_public.invoice_schedules s
    where s.active and s.deleted_at is null
      and (s.kind = 'milestone' or s.next_run_on <= day)
      and app_private.invoice_schedule_is_due(s, day)
  ) o,
    lateral graphile_worker.add_job(
      'tenant_invoicing',
      json_build_object('organization_id', o.organization_id, 'day', day),
      job_key => format('tenant_invoicing:%s:%s', o.organization_id, day),
      max_attempts => 10
    ) j;
  return v_count;
end
$$;

revoke all on function
  app_private.schedule_step(app_public.schedule_frequency),
  app_private.schedule_next_start(date, app_public.schedule_frequency, date),
  app_private.tg__invoice_schedule_anchor(),
  app_private.invoice_schedule_is_due(app_public.invoice_schedules, date),
  app_private.create_scheduled_invoice(app_public.invoice_schedules, date, date, text),
  app_private.generate_scheduled_invoices(date),
  app_private.enqueue_scheduled_invoicing(date)
from public;
-- The worker's grants are at the end of the migration that includes this file.
--! EndIncluded functions/invoice_schedules.sql
