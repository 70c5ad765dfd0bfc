--! Previous: sha1:8be26666ac792597f85a7dd40d68091428833676
--! Hash: sha1:e2d0f834bea46fce6764f3d6ddef11415f283057
--! Message: Timesheets: an approver also holds time.read

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '60s';

-- Timesheets: an approver also holds time.read (sees what they decide on).
--! Included functions/timesheets.sql
-- Timesheets and locked periods (docs/ENTITIES.md, "Timesheets").
--
--   A member's time of one ISO week (Monday to Sunday) is their timesheet. The week is open until
--   it is submitted (submitTimesheet, time.write: by the member, or for them);
--   a member holding timesheets.approve (special: admins by default) approves it or rejects it
--   with a reason (approveTimesheet, rejectTimesheet); a rejected week is open again. A row of
--   app_public.timesheets exists from the first submission on; a week without one is open.
--   Submitted and approved time is frozen: no entry of that member and week is added, changed or
--   deleted (NOT_EDITABLE) until the week is rejected. An approved week with invoiced time cannot
--   be rejected.
--
--   organizations.time_locked_through closes the books on time up to that date: no entry dated on
--   or before it is added, changed or deleted (NOT_EDITABLE); owners and admins move it.
--
--   organizations.time_approval_required (default true): only time of approved timesheets is
--   invoiced (create_invoice_from_time, sql/functions/billing.sql). Off: any billable time is.
--
-- Linking time to its invoice (invoice_id, by the invoicing functions) and an erasure's redaction
-- are not edits: they pass.
-- Idempotent; re-included by later migrations.

alter table app_public.organizations
  add column if not exists time_locked_through app_public.business_date,
  add column if not exists time_approval_required boolean not null default true;
comment on column app_public.organizations.time_locked_through is 'Time is closed up to this date: no time entry dated on or before it is added, changed or deleted.';
comment on column app_public.organizations.time_approval_required is 'Only time of approved timesheets is invoiced (default). Off: any billable time is.';
grant update (time_locked_through, time_approval_required) on app_public.organizations to :DATABASE_VISITOR;

create table if not exists app_public.timesheets (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  member_id uuid not null,
  week_starts_on app_public.business_date not null check (extract(isodow from week_starts_on) = 1),
  status text not null default 'submitted' check (status in ('submitted', 'approved', 'rejected')),
  submitted_at timestamptz not null default now(),
  submitted_by uuid,
  decided_at timestamptz,
  decided_by uuid,
  rejection_reason text check (length(btrim(rejection_reason)) between 1 and 2000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  unique (organization_id, member_id, week_starts_on),
  constraint timesheets_decided check ((status = 'submitted') = (decided_at is null)),
  constraint timesheets_rejected_with_reason check ((status = 'rejected') = (rejection_reason is not null)),
  foreign key (organization_id, member_id) references app_public.organization_members,
  foreign key (organization_id, decided_by) references app_public.organization_members (organization_id, id)
);
create index if not exists timesheets_organization_id_decided_by_idx on app_public.timesheets (organization_id, decided_by);
create index if not exists timesheets_organization_id_status_week_idx on app_public.timesheets (organization_id, status, week_starts_on);
comment on table app_public.timesheets is E'@behavior -insert -update -delete\nA member''s week of time (ISO week, Monday first) once submitted: submitted → approved or rejected (with a reason); rejected is open again. Submitted and approved time is frozen. Changed only by submitTimesheet, approveTimesheet and rejectTimesheet.';
comment on column app_public.timesheets.submitted_by is 'The user who submitted it (the member, or someone for them).';
comment on column app_public.timesheets.decided_by is 'The member who approved or rejected it.';

call app_private.make_tenant_table('app_public.timesheets', 'time', insertable => false, updatable => false);
call app_private.classify_columns('app_public.timesheets', '{"status": "none", "rejection_reason": "free_text"}');
call app_private.set_audit_parent('app_public.timesheets', 'member_id', 'app_public.organization_members');

-- The status of a member's week ('open' when never submitted or rejected).
create or replace function app_private.timesheet_status(organization_id uuid, member_id uuid, work_date date) returns text
language sql stable security definer
set search_path = pg_catalog
as $$
  select coalesce((
    select case when s.status = 'rejected' then 'open' else s.status end from app_public.timesheets s
    where s.organization_id = timesheet_status.organization_id and s.member_id = timesheet_status.member_id
      and s.week_starts_on = date_trunc('week', timesheet_status.work_date)::date
  ), 'open')
$$;
revoke all on function app_private.timesheet_status(uuid, uuid, date) from public;

-- AFTER INSERT OR UPDATE on time_entries (row-level security admitted the row): frozen weeks and
-- closed periods refuse the change (NOT_EDITABLE).
create or replace function app_private.tg__time_entry_period() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_locked date;
  v_status text;
begin
  if tg_op = 'UPDATE' and ((to_jsonb(old) - 'invoice_id' - 'updated_at') = (to_jsonb(new) - 'invoice_id' - 'updated_at')
                           or app_private.erasing(new.organization_id)) then
    return null; -- invoicing links, an erasure redacts: not edits
  end if;
  select o.time_locked_through into v_locked from app_public.organizations o where o.id = new.organization_id;
  if v_locked is not null and (new.work_date <= v_locked or (tg_op = 'UPDATE' and old.work_date <= v_locked)) then
    perform app_private.fail('NOT_EDITABLE', format('Time is closed up to %s: entries on or before it cannot be added, changed or deleted.', to_char(v_locked, 'YYYY-MM-DD')));
  end if;
  v_status := app_private.timesheet_status(new.organization_id, new.member_id, new.work_date);
  if v_status = 'open' and tg_op = 'UPDATE' then
    v_status := app_private.timesheet_status(old.organization_id, old.member_id, old.work_date);
  end if;
  if v_status <> 'open' then
    perform app_private.fail('NOT_EDITABLE', format('This time is on %s timesheet: it cannot be added, changed or deleted until the week is rejected.', case v_status when 'approved' then 'an approved' else 'a submitted' end));
  end if;
  return null;
end
$$;
drop trigger if exists tg_time_entries__period on app_public.time_entries;
create trigger tg_time_entries__period after insert or update on app_public.time_entries
  for each row execute function app_private.tg__time_entry_period();

-- The member of the current organization, or NOT_FOUND.
create or replace function app_private.require_member(member_id uuid) returns app_public.organization_members
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v app_public.organization_members;
begin
  select m.* into v from app_public.organization_members m where m.organization_id = app_public.current_org_id() and m.id = require_member.member_id;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such member in this organization.');
  end if;
  return v;
end
$$;
revoke all on function app_private.require_member(uuid) from public;

-- Submit a week (the member themselves, or someone holding time.write for them).
create or replace function app_public.submit_timesheet(week_starts_on date, member_id uuid default null) returns app_public.timesheets
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_member app_public.organization_members;
  v_week date := date_trunc('week', submit_timesheet.week_starts_on)::date;
  v app_public.timesheets;
begin
  if submit_timesheet.member_id is null then
    select m.* into v_member from app_public.organization_members m where m.organization_id = v_org and m.user_id = app_public.current_user_id();
    if v_member.id is null then
      perform app_private.fail('NO_ORGANIZATION', 'Choose an organization you belong to first.');
    end if;
  else
    v_member := app_private.require_member(submit_timesheet.member_id);
  end if;
  perform app_private.require_permission('time.write', 'submit a timesheet');
  if submit_timesheet.week_starts_on is null then
    perform app_private.fail('INVALID_VALUE', 'Name the week (any day of it; its Monday is taken).');
  end if;
  insert into app_public.timesheets as s (organization_id, member_id, week_starts_on, submitted_by)
  values (v_org, v_member.id, v_week, app_public.current_user_id())
  on conflict on constraint timesheets_organization_id_member_id_week_starts_on_key do update
    set status = 'submitted', submitted_at = now(), submitted_by = excluded.submitted_by, decided_at = null, decided_by = null, rejection_reason = null
    where s.status = 'rejected'
  returning * into v;
  if v.id is null then
    perform app_private.fail('INVALID_TRANSITION', 'This week is already submitted or approved.');
  end if;
  return v;
end
$$;
revoke all on function app_public.submit_timesheet(date, uuid) from public;
grant execute on function app_public.submit_timesheet(date, uuid) to :DATABASE_VISITOR;
comment on function app_public.submit_timesheet(date, uuid) is 'Submits a member''s week of time (time.write; any day of it names the week; by default your own): its time is frozen until the week is rejected. A submitted or approved week answers INVALID_TRANSITION.';

-- Approve or reject a submitted week (timesheets.approve; not one's own, unless an owner or admin).
create or replace function app_private.decide_timesheet(timesheet_id uuid, approve boolean, reason text) returns app_public.timesheets
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v app_public.timesheets;
  v_me app_public.organization_members;
begin
  perform app_private.require_permission('timesheets.approve', case when approve then 'approve timesheets' else 'reject timesheets' end);
  -- An approver sees what they decide on.
  perform app_private.require_permission('time.read', case when approve then 'approve timesheets' else 'reject timesheets' end);
  select s.* into v from app_public.timesheets s
  where s.organization_id = v_org and s.id = decide_timesheet.timesheet_id
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such timesheet in this organization.');
  end if;
  select m.* into v_me from app_public.organization_members m where m.organization_id = v_org and m.user_id = app_public.current_user_id();
  if v_me.id = v.member_id and v_me.role < 'admin' then
    perform app_private.fail('NOT_PERMITTED', 'A timesheet is approved or rejected by someone else than its member (or an owner or admin).');
  end if;
  if approve and v.status <> 'submitted' then
    perform app_private.fail('INVALID_TRANSITION', format('Only a submitted timesheet can be approved; this one is %s.', v.status));
  end if;
  if not approve then
    if v.status not in ('submitted', 'approved') then
      perform app_private.fail('INVALID_TRANSITION', format('Only a submitted or approved timesheet can be rejected; this one is %s.', v.status));
    end if;
    if nullif(btrim(decide_timesheet.reason), '') is null then
      perform app_private.fail('INVALID_VALUE', 'Say why the timesheet is rejected.');
    end if;
    if exists (select from app_public.time_entries t
               where t.organization_id = v_org and t.member_id = v.member_id and t.invoice_id is not null and t.deleted_at is null
                 and t.work_date >= v.week_starts_on and t.work_date < v.week_starts_on + 7) then
      perform app_private.fail('NOT_EDITABLE', 'Time of this week is invoiced: cancel the invoice before rejecting the week.');
    end if;
  end if;
  update app_public.timesheets s
  set status = case when approve then 'approved' else 'rejected' end, decided_at = now(), decided_by = v_me.id,
      rejection_reason = case when approve then null else btrim(decide_timesheet.reason) end
  where s.organization_id = v_org and s.id = v.id
  returning * into v;
  return v;
end
$$;
revoke all on function app_private.decide_timesheet(uuid, boolean, text) from public;

create or replace function app_public.approve_timesheet(timesheet_id uuid) returns app_public.timesheets
language sql volatile security definer
set search_path = pg_catalog
as $$ select app_private.decide_timesheet(approve_timesheet.timesheet_id, true, null) $$;
revoke all on function app_public.approve_timesheet(uuid) from public;
grant execute on function app_public.approve_timesheet(uuid) to :DATABASE_VISITOR;
comment on function app_public.approve_timesheet(uuid) is 'Approves a submitted timesheet (timesheets.approve and time.read; one''s own only as an owner or admin): its time may be invoiced.';

create or replace function app_public.reject_timesheet(timesheet_id uuid, reason text) returns app_public.timesheets
language sql volatile security definer
set search_path = pg_catalog
as $$ select app_private.decide_timesheet(reject_timesheet.timesheet_id, false, reject_timesheet.reason) $$;
revoke all on function app_public.reject_timesheet(uuid, text) from public;
grant execute on function app_public.reject_timesheet(uuid, text) to :DATABASE_VISITOR;
comment on function app_public.reject_timesheet(uuid, text) is 'Rejects a submitted or approved timesheet with a reason (timesheets.approve and time.read): the week is open again for its member to fix and submit. Not when any of its time is invoiced.';
--! EndIncluded functions/timesheets.sql
