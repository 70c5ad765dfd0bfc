--! Previous: sha1:3f0c5255dd01ad130ba6c167f67719f30f1e04cf
--! Hash: sha1:8f7ed614196bb18cad012f25f41ed98c05a6464a
--! Message: Timesheets: weeks submitted, approved or rejected with a reason (timesheets.approve), their time frozen; time locked up to a date; only approved time invoiced where required

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '60s';

-- Timesheets (issue: the firm's money): weeks submitted, approved or rejected with a reason
-- (timesheets.approve); submitted and approved time frozen; time locked up to a date; only
-- approved time invoiced where the organization requires approval (the default).
--! Included functions/permissions.sql
-- Permissions: "may the user do X here?" — one helper, app_public.permitted_org_id('invoices.write')
-- (the organization, if so), called by the policies of every business table;
-- app_public.has_permission('invoices.write') asks the same as a yes or no.
--
-- Permission keys are `<area>.<action>` (the catalogue is app_public.permissions, filled below):
-- read and write per area, plus a few special actions. What a member may do:
--   * owners and admins: everything;
--   * a member with one or more custom roles (app_public.roles, assigned in role_assignments): exactly
--     the permissions of those roles (e.g. "billing clerk": invoices.read, invoices.write,
--     clients.read — and nothing about deals);
--   * otherwise the defaults of their base role: viewers read every area; members read and write
--     every area, except the special actions, which stay with admins: portal.write, roles.write,
--     webhooks.write, rates.write (what the firm bills), costs.read/costs.write (what members
--     cost: confidential, so not even read by default) and timesheets.approve.
-- The job worker acts with admin rights inside the organization of its job.
-- Re-included by later migrations when areas or actions are added; idempotent.

insert into app_public.permissions (key, description) values
  ('clients.read', 'See client companies and contacts'),
  ('clients.write', 'Add, change and delete client companies and contacts'),
  ('deals.read', 'See the sales pipeline'),
  ('deals.write', 'Add, move and delete deals'),
  ('proposals.read', 'See proposals'),
  ('proposals.write', 'Draft, send and delete proposals'),
  ('contracts.read', 'See contracts'),
  ('contracts.write', 'Draft, send, sign and cancel contracts'),
  ('engagements.read', 'See engagements'),
  ('engagements.write', 'Change engagements'),
  ('projects.read', 'See project templates, projects, milestones and tasks'),
  ('projects.write', 'Plan and change projects, milestones and tasks'),
  ('time.read', 'See time entries'),
  ('time.write', 'Record and change time entries'),
  ('messages.read', 'Read threads and messages'),
  ('messages.write', 'Start threads and post messages'),
  ('files.read', 'See files'),
  ('files.write', 'Upload and delete files'),
  ('invoices.read', 'See invoices, invoice schedules and payments'),
  ('invoices.write', 'Draft, send and cancel invoices, record payments, manage invoice schedules'),
  ('vendors.read', 'See vendors'),
  ('vendors.write', 'Add and change vendors'),
  ('bills.read', 'See bills'),
  ('bills.write', 'Enter and change bills'),
  ('portal.read', 'See who has client-portal access'),
  ('portal.write', 'Give and revoke client-portal access (special: admins by default)'),
  ('roles.read', 'See custom roles and who holds them'),
  ('roles.write', 'Define custom roles and assign them (special: admins by default)'),
  ('webhooks.read', 'See webhook endpoints and their delivery log'),
  ('webhooks.write', 'Add, change and delete webhook endpoints, rotate their secrets, retry deliveries (special: admins by default)'),
  ('rates.read', 'See job roles and rate cards'),
  ('rates.write', 'Define job roles and rate cards, give members their job role, set a time entry''s rate by hand (special: admins by default)'),
  ('costs.read', 'See what members cost (cost rates) and the cost of time (special: admins by default)'),
  ('costs.write', 'Set members'' cost rates (special: admins by default)'),
  ('timesheets.approve', 'Approve and reject members'' timesheets (special: admins by default)')
on conflict (key) do update set description = excluded.description;

-- Is `permission` one of the special actions that only admins (or a custom role) grant?
create or replace function app_private.is_special_permission(permission text) returns boolean
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select permission in ('portal.write', 'roles.write', 'webhooks.write', 'rates.write', 'costs.read', 'costs.write', 'timesheets.approve')
$$;

-- The organization of this request, if the current user may do `permission` there; otherwise
-- null. The policies of business tables ask it once per query:
--   organization_id = (select app_public.permitted_org_id('deals.read'))
-- which is "in the current organization, holding deals.read" in one helper call.
create or replace function app_public.permitted_org_id(permission text) returns uuid
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.setting_uuid('app.org_id');
  v_user uuid;
  v_session uuid;
  v_member_id uuid;
  v_role app_public.member_role;
begin
  if v_org is null then
    return null;
  end if;
  if app_private.is_worker_session() then
    return (select o.id from app_public.organizations o where o.id = v_org);
  end if;
  v_user := app_private.setting_uuid('app.user_id');
  v_session := app_private.setting_uuid('app.session_id');
  if v_user is null or v_session is null then
    return null;
  end if;
  -- The member behind a live session (as current_user_id and current_org_id check): one query.
  select m.id, m.role into v_member_id, v_role
  from app_private.sessions s
  join app_public.organization_members m on m.organization_id = v_org and m.user_id = s.user_id
  where s.id = v_session and s.user_id = v_user and s.revoked_at is null and s.expires_at > now();
  if not found then
    return null;
  end if;
  if v_role >= 'admin' then
    return v_org;
  end if;
  if exists (select 1 from app_public.role_assignments mr where mr.organization_id = v_org and mr.member_id = v_member_id) then
    return case when exists (
      select 1
      from app_public.role_assignments mr
      join app_public.role_permissions rp on rp.organization_id = mr.organization_id and rp.role_id = mr.role_id
      join app_public.roles r on r.organization_id = mr.organization_id and r.id = mr.role_id and r.deleted_at is null
      where mr.organization_id = v_org and mr.member_id = v_member_id and rp.permission_key = permitted_org_id.permission
    ) then v_org end;
  end if;
  if permitted_org_id.permission like '%.read' and not app_private.is_special_permission(permitted_org_id.permission) then
    return v_org;
  end if;
  return case
    when v_role = 'member' and permitted_org_id.permission like '%.write' and not app_private.is_special_permission(permitted_org_id.permission) then v_org
  end;
end
$$;
comment on function app_public.permitted_org_id(text) is E'@behavior -queryField\nThe current organization, if you may do `permission` (e.g. deals.read) in it; otherwise null (for policies; clients ask hasPermission).';
revoke all on function app_public.permitted_org_id(text) from public;
grant execute on function app_public.permitted_org_id(text) to :DATABASE_VISITOR;

-- (SQL, no SET clause: PostgreSQL inlines it into its callers.)
create or replace function app_public.has_permission(permission text) returns boolean
language sql stable
as $$
  select app_public.permitted_org_id(permission) is not null
$$;
comment on function app_public.has_permission(text) is 'True when you may do `permission` (e.g. invoices.write) in the current organization: owners and admins always; members with custom roles what those roles grant; otherwise viewers read and members read and write.';

-- The current user's permissions in the current organization (for a UI to show or hide actions).
create or replace function app_public.my_permissions() returns setof text
language sql stable
set search_path = pg_catalog
as $$
  select p.key from app_public.permissions p where app_public.has_permission(p.key) order by p.key
$$;
comment on function app_public.my_permissions() is 'The permission keys you hold in the current organization.';

-- Raise the right error unless the current user may do `permission` in an organization.
create or replace function app_private.require_permission(permission text, action text) returns void
language plpgsql stable
set search_path = pg_catalog
as $$
begin
  if app_public.current_user_id() is null and not app_private.is_worker_session() then
    perform app_private.fail('UNAUTHENTICATED', format('Sign in to %s.', action));
  elsif app_public.current_org_id() is null then
    perform app_private.fail('NO_ORGANIZATION', format('Choose an organization to %s.', action));
  elsif not app_public.has_permission(permission) then
    perform app_private.fail('NOT_PERMITTED', format('You need the %s permission to %s.', permission, action));
  end if;
end
$$;

-- Roles cannot be used to gain more ------------------------------------------------------------
--
-- Holding roles.write lets a member define and assign custom roles, but a member may pass on
-- through roles only permissions they hold themselves (PERMISSION_NOT_HELD otherwise):
--   * adding a permission to a role (or moving one to another role) needs that permission — the
--     role may already be held by others, or by the member themself;
--   * assigning a role to anyone, the member themself included, needs every permission of it;
--   * removing a member's last custom role returns them to their base role's defaults (a member
--     reads and writes every area), so it needs every one of those defaults.
-- Owners and admins hold every permission, so for them nothing changes. Removing a permission
-- from a role, deleting a role, or assigning a role that narrows what someone may do only takes
-- away, and stays open to roles.write. A deleted role that members still hold is kept by the
-- retention purge (its foreign key below has no cascade): purging it would drop their last
-- custom role and hand them their base role's defaults, which nobody granted.
-- Checked in BEFORE ROW triggers on the API's and the worker's connections (like the owner rules
-- of sql/functions/members.sql); maintenance by the owner role is trusted. Without roles.write
-- the triggers leave the row to row-level security, which refuses it (42501). Every row is checked
-- against the permissions the member holds at that moment, and no allowed row adds to them, so
-- rows earlier in the same statement cannot lend the member anything.

-- The permissions of a base role without custom roles (what permitted_org_id answers for it).
create or replace function app_private.base_role_permissions(role app_public.member_role) returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(array_agg(p.key order by p.key), '{}')
  from app_public.permissions p
  where base_role_permissions.role >= 'admin'
    or (p.key like '%.read' and not app_private.is_special_permission(p.key))
    or (base_role_permissions.role = 'member' and p.key like '%.write' and not app_private.is_special_permission(p.key))
$$;
comment on function app_private.base_role_permissions(app_public.member_role) is 'The permissions a member of this base role holds when they hold no custom role (mirrors app_public.permitted_org_id).';

-- Raise PERMISSION_NOT_HELD unless the current user holds every one of `permissions` here.
create or replace function app_private.require_held(permissions text[], action text) returns void
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_missing text;
begin
  select string_agg(p.key, ', ' order by p.key) into v_missing
  from unnest(require_held.permissions) as p(key)
  where not app_public.has_permission(p.key);
  if v_missing is not null then
    perform app_private.fail('PERMISSION_NOT_HELD',
      format('Through roles you may pass on only permissions you hold yourself: to %s you would need %s.', action, v_missing));
  end if;
end
$$;

create or replace function app_private.tg_role_permissions__held() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if session_user in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name) and app_public.has_permission('roles.write')
     and (tg_op = 'INSERT' or new.permission_key is distinct from old.permission_key or new.role_id is distinct from old.role_id) then
    perform app_private.require_held(array[new.permission_key], 'add a permission to a role');
  end if;
  return new;
end
$$;
drop trigger if exists tg_role_permissions__held on app_public.role_permissions;
create trigger tg_role_permissions__held before insert or update on app_public.role_permissions
  for each row execute function app_private.tg_role_permissions__held();

create or replace function app_private.tg_role_assignments__held() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_base app_public.member_role;
begin
  if session_user not in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name) or not app_public.has_permission('roles.write')
     or (tg_op = 'UPDATE' and new.member_id = old.member_id and new.role_id = old.role_id) then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    perform app_private.require_held(array(
      select rp.permission_key from app_public.role_permissions rp
      where rp.organization_id = new.organization_id and rp.role_id = new.role_id
    ), 'assign this role');
  end if;
  if tg_op = 'DELETE' or new.member_id <> old.member_id then
    -- Their last custom role? Then they return to their base role's defaults. (A member being
    -- removed from the organization takes their roles along: no member row, nothing to check.)
    select m.role into v_base from app_public.organization_members m
    where m.organization_id = old.organization_id and m.id = old.member_id;
    if v_base < 'admin' and not exists (
      select from app_public.role_assignments ra
      where ra.organization_id = old.organization_id and ra.member_id = old.member_id and ra.id <> old.id
    ) then
      perform app_private.require_held(app_private.base_role_permissions(v_base),
        format('take away a member''s last custom role (they return to the %s role''s permissions)', v_base));
    end if;
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;
drop trigger if exists tg_role_assignments__held on app_public.role_assignments;
create trigger tg_role_assignments__held before insert or update or delete on app_public.role_assignments
  for each row execute function app_private.tg_role_assignments__held();

-- A deleted role that members still hold stays until they no longer do (see above).
-- (Replaced only while it still has another delete action: adding it checks every row.)
do $$
begin
  if exists (select from pg_constraint where conrelid = 'app_public.role_assignments'::regclass
             and conname = 'role_assignments_organization_id_role_id_fkey' and confdeltype <> 'a') then
    alter table app_public.role_assignments
      drop constraint role_assignments_organization_id_role_id_fkey,
      add constraint role_assignments_organization_id_role_id_fkey
        foreign key (organization_id, role_id) references app_public.roles;
  end if;
end
$$;
--! EndIncluded functions/permissions.sql
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
    perform app_private.fail('NOT_EDITABLE', format('This time is on a %s timesheet: it cannot be added, changed or deleted until the week is rejected.', v_status));
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
comment on function app_public.approve_timesheet(uuid) is 'Approves a submitted timesheet (timesheets.approve; one''s own only as an owner or admin): its time may be invoiced.';

create or replace function app_public.reject_timesheet(timesheet_id uuid, reason text) returns app_public.timesheets
language sql volatile security definer
set search_path = pg_catalog
as $$ select app_private.decide_timesheet(reject_timesheet.timesheet_id, false, reject_timesheet.reason) $$;
revoke all on function app_public.reject_timesheet(uuid, text) from public;
grant execute on function app_public.reject_timesheet(uuid, text) to :DATABASE_VISITOR;
comment on function app_public.reject_timesheet(uuid, text) is 'Rejects a submitted or approved timesheet with a reason (timesheets.approve): the week is open again for its member to fix and submit. Not when any of its time is invoiced.';
--! EndIncluded functions/timesheets.sql
--! Included functions/billing.sql
-- Billing and payables lifecycle: invoices from time, sending (numbering), viewing, cancelling,
-- payments, and bills. SECURITY DEFINER functions check organization and permission first.
-- Lock order (sql/functions/lock_order.sql): each function locks its document (the invoice, the
-- bill, the engagement it invoices) FOR UPDATE before it checks its status or touches its parts.

-- The next invoice number of an organization: 1, 2, 3, ... Takes the counter row's lock until
-- the calling transaction ends, so concurrent senders queue and a rolled-back send returns its
-- number: no gaps, no duplicates (tests/billing.test.ts proves it with parallel connections).
create or replace function app_private.next_invoice_number(organization_id uuid) returns integer
language sql volatile
set search_path = pg_catalog
as $$
  insert into app_private.invoice_counters as c (organization_id, last_number)
  values (next_invoice_number.organization_id, 1)
  on conflict on constraint invoice_counters_pkey do update set last_number = c.last_number + 1
  returning c.last_number
$$;

-- A draft invoice for an engagement's billable time not yet invoiced (invoices.write): one line
-- per task and rate (hours × rate), and the time entries point at it until it is cancelled.
create or replace function app_public.create_invoice_from_time(engagement_id uuid, tax_rate numeric default 0) returns app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_engagement app_public.engagements;
  v_invoice app_public.invoices;
  v_ids uuid[];
  v_approval boolean := coalesce((select o.time_approval_required from app_public.organizations o where o.id = v_org), true);
begin
  perform app_private.require_permission('invoices.write', 'invoice time');
  -- The engagement first: two invoicings of its time queue, and the second finds none left.
  select e.* into v_engagement from app_public.engagements e
  where e.organization_id = v_org and e.id = create_invoice_from_time.engagement_id and e.deleted_at is null
  for update;
  if v_engagement.id is null then
    perform app_private.fail('NOT_FOUND', 'No such engagement in this organization.');
  end if;
  select array_agg(t.id) into v_ids
  from (
    select t.id from app_public.time_entries t
    where t.organization_id = v_org and t.engagement_id = v_engagement.id
      and t.billable and t.invoice_id is null and t.deleted_at is null and t.rate > 0
      -- Only approved weeks, where the organization requires approval (sql/functions/timesheets.sql).
      and (not v_approval or exists (
        select from app_public.timesheets s
        where s.organization_id = t.organization_id and s.member_id = t.member_id
          and s.week_starts_on = date_trunc('week', t.work_date)::date and s.status = 'approved'))
    order by t.id
    for update of t
  ) t;
  if v_ids is null then
    perform app_private.fail('EMPTY_DOCUMENT', case when v_approval
      then 'This engagement has no billable time of approved timesheets that is not invoiced yet.'
      else 'This engagement has no billable time that is not invoiced yet.' end);
  end if;
  insert into app_public.invoices (organization_id, client_company_id, engagement_id, tax_rate)
  values (v_org, v_engagement.client_company_id, v_engagement.id, coalesce(create_invoice_from_time.tax_rate, 0))
  returning * into v_invoice;
  insert into app_public.invoice_line_items (organization_id, invoice_id, position, description, quantity, unit_price)
  select v_org, v_invoice.id, row_number() over (order by min(t.work_date), coalesce(k.title, '')),
    format('%s: %s h, %s – %s', coalesce(k.title, 'Time'), round(sum(t.minutes) / 60.0, 2), min(t.work_date), max(t.work_date)),
    round(sum(t.minutes) / 60.0, 2), t.rate
  from app_public.time_entries t
  left join app_public.tasks k on k.organization_id = t.organization_id and k.id = t.task_id
  where t.organization_id = v_org and t.id = any (v_ids)
  group by k.id, k.title, t.rate;
  update app_public.time_entries t set invoice_id = v_invoice.id
  where t.organization_id = v_org and t.id = any (v_ids);
  select i.* into v_invoice from app_public.invoices i where i.organization_id = v_org and i.id = v_invoice.id;
  return v_invoice;
end
$$;
comment on function app_public.create_invoice_from_time(uuid, numeric) is 'Creates a draft invoice of an engagement''s billable, not yet invoiced time (invoices.write) — of approved timesheets only, unless the organization does not require approval: a line per task and rate.';

-- Send a draft invoice (invoices.write): allocates its number, sets the issue date (today unless
-- set) and the due date (issue date + the organization''s payment terms unless set).
create or replace function app_public.send_invoice(invoice_id uuid) returns app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  perform app_private.require_permission('invoices.write', 'send an invoice');
  select i.* into v from app_public.invoices i
  where i.organization_id = app_public.current_org_id() and i.id = send_invoice.invoice_id and i.deleted_at is null
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such invoice in this organization.');
  elsif v.status <> 'draft' then
    perform app_private.fail('INVALID_TRANSITION', format('An invoice cannot go from %s to sent.', v.status));
  elsif v.total <= 0 then
    perform app_private.fail('EMPTY_DOCUMENT', 'Add at least one line with a price before sending the invoice.');
  end if;
  update app_public.invoices i
  set status = 'sent',
      number = app_private.next_invoice_number(i.organization_id),
      issued_on = coalesce(i.issued_on, current_date),
      due_on = coalesce(i.due_on, coalesce(i.issued_on, current_date) + o.payment_terms_days)
  from app_public.organizations o
  where o.id = i.organization_id and i.organization_id = v.organization_id and i.id = v.id
  returning i.* into v;
  return v;
end
$$;
comment on function app_public.send_invoice(uuid) is 'Sends a draft invoice (invoices.write): gives it the organization''s next number, its issue and due dates; it is frozen from now on.';

-- Record that the client opened a sent invoice (its portal user, or a member with invoices.write).
create or replace function app_public.mark_invoice_viewed(invoice_id uuid) returns app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  select i.* into v from app_public.invoices i
  where i.organization_id = app_private.acting_org_id() and i.id = mark_invoice_viewed.invoice_id and i.deleted_at is null
    and (app_public.has_permission('invoices.write')
      or (i.status in ('sent', 'viewed', 'paid', 'overdue') and app_private.is_portal_user_of(i.engagement_id)))
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such invoice for you.');
  end if;
  if v.status in ('draft', 'sent') then -- a draft is refused by the status machine
    update app_public.invoices i set status = 'viewed'
    where i.organization_id = v.organization_id and i.id = v.id
    returning i.* into v;
  end if;
  return v;
end
$$;
comment on function app_public.mark_invoice_viewed(uuid) is 'Records that the client has seen a sent invoice (stamps viewed_at once; later calls change nothing).';

-- Cancel an invoice without payments (invoices.write); its time entries can be invoiced again.
create or replace function app_public.cancel_invoice(invoice_id uuid) returns app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  perform app_private.require_permission('invoices.write', 'cancel an invoice');
  select i.* into v from app_public.invoices i
  where i.organization_id = app_public.current_org_id() and i.id = cancel_invoice.invoice_id and i.deleted_at is null
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such invoice in this organization.');
  elsif v.amount_paid > 0 then
    perform app_private.fail('INVALID_TRANSITION', 'An invoice with payments cannot be cancelled.');
  elsif v.amount_credited > 0 then
    perform app_private.fail('INVALID_TRANSITION', 'An invoice with credit notes cannot be cancelled.');
  end if;
  update app_public.invoices i set status = 'cancelled'
  where i.organization_id = v.organization_id and i.id = v.id
  returning i.* into v;
  update app_public.time_entries t set invoice_id = null
  where t.organization_id = v.organization_id and t.invoice_id = v.id;
  return v;
end
$$;
comment on function app_public.cancel_invoice(uuid) is 'Cancels an invoice that has no payments and no credit notes (invoices.write); its number stays taken and its time entries become invoiceable again.';

-- Payments, AFTER INSERT per row (whether through recordPayment or a direct insert): the invoice
-- must take payments (sent, viewed or overdue: NOT_PAYABLE), the amount must not exceed its
-- balance (OVERPAYMENT); amount_paid grows, and clearing the balance marks the invoice paid.
-- The invoice row is locked before the payment is inserted (by record_payment, or for any insert
-- by tg_payments__lock_parent: sql/functions/lock_order.sql), so concurrent payments of one
-- invoice queue on it and are applied in turn; the lock taken here is then already held.
create or replace function app_private.tg__payment_applied() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  select i.* into v from app_public.invoices i
  where i.organization_id = new.organization_id and i.id = new.invoice_id
  for update;
  if v.status not in ('sent', 'viewed', 'overdue') or v.deleted_at is not null then
    perform app_private.fail('NOT_PAYABLE', format('An invoice that is %s takes no payments.', case when v.deleted_at is null then v.status::text else 'deleted' end));
  end if;
  if new.amount > v.balance then
    perform app_private.fail('OVERPAYMENT', format('The payment of %s is more than the balance of %s.', new.amount, v.balance));
  end if;
  update app_public.invoices i
  set amount_paid = i.amount_paid + new.amount,
      status = case when new.amount = v.balance then 'paid' else i.status end
  where i.organization_id = v.organization_id and i.id = v.id;
  return null;
end
$$;

drop trigger if exists tg_payments__applied on app_public.payments;
create trigger tg_payments__applied after insert on app_public.payments
  for each row execute function app_private.tg__payment_applied();

create or replace function app_public.record_payment(invoice_id uuid, amount numeric, received_on date default current_date, method app_public.payment_method default 'bank_transfer', reference text default null) returns app_public.payments
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v app_public.payments;
begin
  perform app_private.require_permission('invoices.write', 'record a payment');
  -- The invoice first (lock order): concurrent payments queue here; the trigger checks its status
  -- and balance as the previous payment left them.
  perform from app_public.invoices i where i.organization_id = v_org and i.id = record_payment.invoice_id for update;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such invoice in this organization.');
  end if;
  insert into app_public.payments (organization_id, invoice_id, amount, received_on, method, reference)
  values (v_org, record_payment.invoice_id, record_payment.amount,
          coalesce(record_payment.received_on, current_date), coalesce(record_payment.method, 'bank_transfer'), record_payment.reference)
  returning * into v;
  return v;
end
$$;
comment on function app_public.record_payment(uuid, numeric, date, app_public.payment_method, text) is 'Records money received for a sent, viewed or overdue invoice (invoices.write). Partial payments add up; more than the balance is refused (OVERPAYMENT); clearing the balance marks the invoice paid.';

-- Move a bill of the current organization to `status`; approving, rejecting and paying are for
-- owners and admins only (approve_bill records who approved), cancelling needs bills.write.
-- The bill is locked before its status is read: of two concurrent approvals, the second finds
-- it approved (INVALID_TRANSITION) instead of approving it again.
create or replace function app_private.set_bill_status(bill_id uuid, status app_public.bill_status, action text) returns app_public.bills
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.bills;
begin
  if status = 'cancelled' then
    perform app_private.require_permission('bills.write', action);
  else
    perform app_private.require_member_role('admin', action);
  end if;
  select b.* into v from app_public.bills b
  where b.organization_id = app_public.current_org_id() and b.id = set_bill_status.bill_id
  for update;
  if v.status = set_bill_status.status then
    perform app_private.fail('INVALID_TRANSITION', format('The bill is already %s.', status));
  elsif v.id is null or v.deleted_at is not null then
    perform app_private.fail('NOT_FOUND', 'No such bill in this organization.');
  end if;
  update app_public.bills b
  set status = set_bill_status.status,
      approved_by = case when set_bill_status.status = 'approved' then app_public.current_user_id() else b.approved_by end
  where b.organization_id = v.organization_id and b.id = v.id
  returning b.* into v;
  return v;
end
$$;

create or replace function app_public.approve_bill(bill_id uuid) returns app_public.bills
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_bill_status(bill_id, 'approved', 'approve a bill')
$$;
comment on function app_public.approve_bill(uuid) is 'Approves a pending bill for payment (owners and admins); records who approved it.';

create or replace function app_public.reject_bill(bill_id uuid) returns app_public.bills
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_bill_status(bill_id, 'rejected', 'reject a bill')
$$;
comment on function app_public.reject_bill(uuid) is 'Rejects a pending bill (owners and admins).';

create or replace function app_public.pay_bill(bill_id uuid) returns app_public.bills
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_bill_status(bill_id, 'paid', 'mark a bill paid')
$$;
comment on function app_public.pay_bill(uuid) is 'Marks an approved bill paid (owners and admins).';

create or replace function app_public.cancel_bill(bill_id uuid) returns app_public.bills
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_bill_status(bill_id, 'cancelled', 'cancel a bill')
$$;
comment on function app_public.cancel_bill(uuid) is 'Cancels a pending or approved bill (bills.write).';
--! EndIncluded functions/billing.sql
