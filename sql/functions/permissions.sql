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
--     cost: confidential, so not even read by default), timesheets.approve and expenses.approve.
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
  ('timesheets.approve', 'Approve and reject members'' timesheets (special: admins by default)'),
  ('expenses.read', 'See expenses and expense categories'),
  ('expenses.write', 'Record and submit one''s expenses, manage expense categories'),
  ('expenses.approve', 'Approve and reject expenses, file them for other members (special: admins by default)')
on conflict (key) do update set description = excluded.description;

-- Is `permission` one of the special actions that only admins (or a custom role) grant?
create or replace function app_private.is_special_permission(permission text) returns boolean
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select permission in ('portal.write', 'roles.write', 'webhooks.write', 'rates.write', 'costs.read', 'costs.write', 'timesheets.approve', 'expenses.approve')
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
