--! Previous: sha1:5b8e3cbabaa22eee46abe7cc98296a21bb15be27
--! Hash: sha1:a65d549a30917b2b2716780609f6207a5a60b04e
--! Message: Rates and cost: job roles, rate cards resolved when time is logged, members' cost rates frozen on each time entry; billable time without a rate is refused

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '60s';

-- Rates and cost (issue: the firm's money): job roles, rate cards, members' cost rates, the cost
-- frozen on each time entry; a billable entry without a rate is refused (RATE_MISSING).
--! Included errors.sql
-- Error codes: the one list of errors a client can get, each with a stable code, the SQLSTATE
-- that carries it out of PostgreSQL, and the HTTP status the API answers with.
-- SQL raises them by name: `perform app_private.fail('LAST_OWNER', 'An organization must keep an owner');`
-- The API maps the SQLSTATE back to the code (src/http/errors.ts loads this table at start), and
-- docs/ERRORS.md lists the same rows (tests/docs.test.ts checks they agree).
-- Re-included by later migrations whenever a code is added; every statement is idempotent.

create table if not exists app_private.error_codes (
  code text primary key check (code ~ '^[A-Z][A-Z_]*$'),
  sqlstate text not null unique check (sqlstate ~ '^[0-9A-Z]{5}$'),
  http_status int not null check (http_status between 400 and 599),
  description text not null
);
alter table app_private.error_codes enable row level security;
alter table app_private.error_codes force row level security;
comment on table app_private.error_codes is 'Stable error codes: SQLSTATE carried by PostgreSQL, code and HTTP status returned by the API.';

insert into app_private.error_codes (code, sqlstate, http_status, description) values
  -- Raised by PostgreSQL itself
  ('FORBIDDEN', '42501', 403, 'The current user may not do this (permission denied or row-level security).'),
  ('ALREADY_EXISTS', '23505', 409, 'A record with these unique values already exists.'),
  ('INVALID_REFERENCE', '23503', 422, 'A referenced record does not exist in this organization, or is still referenced.'),
  ('CONSTRAINT_VIOLATION', '23514', 422, 'A value breaks a rule of the data model (check constraint).'),
  ('REQUIRED_VALUE', '23502', 422, 'A required value is missing.'),
  ('INVALID_INPUT', '22P02', 400, 'A value has the wrong format (e.g. not a UUID or number).'),
  ('INVALID_VALUE', '22023', 400, 'A value is outside what is allowed.'),
  ('VALUE_TOO_LONG', '22001', 400, 'A text value is longer than allowed.'),
  ('RETRY', '40001', 409, 'The transaction conflicted with another one; retry it.'),
  ('DEADLOCK', '40P01', 409, 'The transaction deadlocked with another one; retry it.'),
  -- Raised by Atrium's functions and triggers (class AT)
  ('UNAUTHENTICATED', 'AT401', 401, 'Sign in first: this needs a signed-in user.'),
  ('NO_ORGANIZATION', 'AT402', 403, 'Choose an organization first (switchOrganization): this needs one.'),
  ('NOT_PERMITTED', 'AT403', 403, 'Your role in this organization does not allow this.'),
  ('NOT_FOUND', 'AT404', 404, 'No such record in this organization (or it is not visible to you).'),
  ('INVALID_CREDENTIALS', 'AT410', 401, 'Email or password is wrong.'),
  ('INVALID_REFRESH_TOKEN', 'AT411', 401, 'The refresh token is unknown, expired, revoked or was already used; sign in again.'),
  ('EMAIL_TAKEN', 'AT412', 409, 'An account with this email already exists.'),
  ('WEAK_PASSWORD', 'AT413', 400, 'The password must be 8 to 72 characters long.'),
  ('INVALID_EMAIL', 'AT414', 400, 'The email address is not valid.'),
  ('TOO_MANY_ATTEMPTS', 'AT417', 429, 'Too many failed sign-ins for this account from your network address: wait before the next attempt (extensions.retryAfterSeconds).'),
  ('LAST_OWNER', 'AT420', 409, 'An organization must keep at least one owner.'),
  ('OWNER_REQUIRED', 'AT421', 403, 'Only an owner may grant, change or remove the owner role.'),
  ('INVITATION_INVALID', 'AT422', 404, 'The invitation is unknown, expired, revoked, already used, or for another email.'),
  ('ALREADY_MEMBER', 'AT423', 409, 'This user is already a member of the organization.'),
  ('NOT_RESTORABLE', 'AT430', 409, 'The record is not deleted, or its retention window has passed.'),
  ('IMMUTABLE', 'AT440', 403, 'This record cannot be changed or deleted.'),
  ('INVALID_TRANSITION', 'AT450', 409, 'The record''s status cannot change that way (see app_private.status_transitions).'),
  ('NOT_EDITABLE', 'AT451', 409, 'The record has left its editable status (e.g. a sent invoice, a signed contract) and can no longer be changed.'),
  ('HAS_LIVE_ENGAGEMENTS', 'AT452', 409, 'The client company still has active or on-hold engagements; complete or cancel them first.'),
  ('OVERPAYMENT', 'AT460', 422, 'The payment is larger than the invoice''s balance.'),
  ('NOT_PAYABLE', 'AT461', 409, 'The invoice does not take payments in its status (only sent, viewed or overdue invoices do).'),
  ('EMPTY_DOCUMENT', 'AT462', 422, 'A proposal or invoice needs at least one line and a total above zero before it is sent.'),
  ('EXPIRED', 'AT463', 409, 'The proposal''s validity date has passed.'),
  ('RATE_MISSING', 'AT464', 422, 'No bill rate applies to this billable time: set the engagement''s hourly rate or a rate card for it, its client or the organization, or log the time as non-billable.'),
  ('INVALID_EVENT_TYPE', 'AT470', 422, 'A webhook endpoint names an event type that does not exist (see webhookEventTypes).'),
  ('NOT_RETRYABLE', 'AT471', 409, 'Only failed or cancelled deliveries of an enabled endpoint, whose payload is still kept, can be sent again.'),
  ('UNKNOWN_TASK', 'AT472', 422, 'The task is not one that other services may queue (see app_private.producer_tasks).'),
  ('INTERNAL', 'AT500', 500, 'Unexpected error.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- Raise a catalogued error. Unknown codes are a bug and raise INTERNAL with the code in the message.
create or replace function app_private.fail(code text, message text) returns void
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_sqlstate text;
begin
  select e.sqlstate into v_sqlstate from app_private.error_codes e where e.code = fail.code;
  if v_sqlstate is null then
    raise exception 'unknown error code %: %', code, message using errcode = 'AT500';
  end if;
  raise exception using message = message, errcode = v_sqlstate;
end
$$;
comment on function app_private.fail(text, text) is 'Raises the catalogued error `code` (app_private.error_codes) with a human message.';

-- Password reset (sql/functions/password_reset.sql).
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('RESET_TOKEN_INVALID', 'AT415', 400, 'The password-reset token is unknown, was replaced by a newer one, or was already used; ask for a new one.'),
  ('RESET_TOKEN_EXPIRED', 'AT416', 400, 'The password-reset token has expired; ask for a new one.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- The API edge: a request's statements run at most STATEMENT_TIMEOUT_MS (set per transaction
-- by the API, src/http/auth.ts); PostgreSQL cancels a longer one with 57014.
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('QUERY_TIMEOUT', '57014', 503, 'The request ran longer than the server allows (STATEMENT_TIMEOUT_MS) and was stopped; ask for less, or retry later.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- Permissions that cannot be used to gain more (sql/functions/permissions.sql, sql/functions/copies.sql).
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('PERMISSION_NOT_HELD', 'AT541', 403, 'This would pass on permissions (or data) you do not hold yourself: through roles and webhooks you may grant only what you hold.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- Input values (sql/functions/value_domains.sql): errors PostgreSQL raises itself about a value
-- it cannot take answer a catalogued code too, never INTERNAL.
-- More SQLSTATEs for a code: the catalogue above holds one SQLSTATE per code; these map further
-- ones onto existing codes, each with the message the API answers (PostgreSQL's own would quote
-- SQL). src/http/errors.ts loads both; docs/ERRORS.md lists them (tests/docs.test.ts).
create table if not exists app_private.error_sqlstates (
  sqlstate text primary key check (sqlstate ~ '^[0-9A-Z]{5}$'),
  code text not null references app_private.error_codes (code),
  message text not null
);
create index if not exists error_sqlstates_code_idx on app_private.error_sqlstates (code);
alter table app_private.error_sqlstates enable row level security;
alter table app_private.error_sqlstates force row level security;
comment on table app_private.error_sqlstates is 'SQLSTATEs PostgreSQL raises about values it cannot take, mapped onto catalogued codes (app_private.error_codes), with the message the API answers.';

insert into app_private.error_sqlstates (sqlstate, code, message) values
  ('22003', 'INVALID_VALUE', 'A number is too large for its field (or not finite).'),
  ('22008', 'INVALID_VALUE', 'A date or time does not exist (e.g. 2024-02-30) or is out of range.'),
  ('22007', 'INVALID_INPUT', 'A date or time has the wrong format (use YYYY-MM-DD, or ISO 8601 for a point in time).'),
  ('22021', 'INVALID_VALUE', 'A text contains a character that cannot be stored (the NUL character, \u0000).'),
  ('22P05', 'INVALID_VALUE', 'A text contains a character that cannot be stored (the NUL character, \u0000).')
on conflict (sqlstate) do update set code = excluded.code, message = excluded.message;

-- Domain rules: a value outside a domain (app_public.money_amount, …) is refused by PostgreSQL
-- with SQLSTATE 23514 naming the domain and the constraint; the API answers this code and
-- message instead of CONSTRAINT_VIOLATION. Every CHECK of an app_public domain has a row here
-- (sql/checks/domain_rules_catalogued.sql).
create table if not exists app_private.domain_rules (
  domain_name text not null check (domain_name ~ '^[a-z_]+\.[a-z_]+$'),
  constraint_name text not null,
  code text not null references app_private.error_codes (code),
  message text not null,
  primary key (domain_name, constraint_name)
);
create index if not exists domain_rules_code_idx on app_private.domain_rules (code);
alter table app_private.domain_rules enable row level security;
alter table app_private.domain_rules force row level security;
comment on table app_private.domain_rules is 'The code and message the API answers when a value breaks a rule (CHECK) of an app_public domain.';

insert into app_private.domain_rules (domain_name, constraint_name, code, message) values
  ('app_public.money_amount', 'money_amount_finite', 'INVALID_VALUE', 'An amount of money must be a finite number below 1,000,000,000,000 (with at most two decimals).'),
  ('app_public.quantity', 'quantity_finite', 'INVALID_VALUE', 'A quantity must be a finite number below 10,000,000,000 (with at most two decimals).'),
  ('app_public.percentage', 'percentage_range', 'INVALID_VALUE', 'A percentage must be a number from 0 to 100.'),
  ('app_public.business_date', 'business_date_range', 'INVALID_VALUE', 'A date must be between 1900-01-01 and 2999-12-31.'),
  ('app_public.business_timestamp', 'business_timestamp_range', 'INVALID_VALUE', 'A point in time must be between the years 1900 and 2999.'),
  ('app_public.email_address', 'email_address_format', 'INVALID_EMAIL', 'An email address must look like name@example.com (at most 320 characters, no spaces inside).')
on conflict (domain_name, constraint_name) do update set code = excluded.code, message = excluded.message;

-- Sign-up by email (sql/functions/registration.sql): confirming a registration.
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('REGISTRATION_TOKEN_INVALID', 'AT491', 400, 'The confirmation token is unknown, was replaced by a newer one, or was already used; sign up again.'),
  ('REGISTRATION_TOKEN_EXPIRED', 'AT492', 400, 'The confirmation token has expired; sign up again.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;
--! EndIncluded errors.sql
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
--     webhooks.write, rates.write (what the firm bills) and costs.read/costs.write (what members
--     cost: confidential, so not even read by default).
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
  ('costs.write', 'Set members'' cost rates (special: admins by default)')
on conflict (key) do update set description = excluded.description;

-- Is `permission` one of the special actions that only admins (or a custom role) grant?
create or replace function app_private.is_special_permission(permission text) returns boolean
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select permission in ('portal.write', 'roles.write', 'webhooks.write', 'rates.write', 'costs.read', 'costs.write')
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
--! Included functions/delivery.sql
-- Delivery rules: projects from templates, and time entries.

-- Create a project in an engagement from a template (projects.write): copies the template's
-- milestones and tasks as rows of the new project, each due `offset_days` after `starts_on`,
-- tasks under the copies of their milestones.
create or replace function app_public.create_project_from_template(engagement_id uuid, template_id uuid, name text default null, starts_on date default current_date) returns app_public.projects
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_template app_public.project_templates;
  v_project app_public.projects;
  v_starts date := coalesce(create_project_from_template.starts_on, current_date);
begin
  perform app_private.require_permission('projects.write', 'create a project');
  -- FOR SHARE: the engagement stays active or on hold until the project is in it, while time
  -- entries and other projects may still be added to it (lock order: sql/functions/lock_order.sql).
  perform from app_public.engagements e
  where e.organization_id = v_org and e.id = create_project_from_template.engagement_id
    and e.deleted_at is null and e.status in ('active', 'on_hold')
  for share;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such active or on-hold engagement in this organization.');
  end if;
  select t.* into v_template from app_public.project_templates t
  where t.organization_id = v_org and t.id = create_project_from_template.template_id and t.deleted_at is null;
  if v_template.id is null then
    perform app_private.fail('NOT_FOUND', 'No such project template in this organization.');
  end if;

  insert into app_public.projects (organization_id, engagement_id, template_id, name, description, status, starts_on, due_on)
  values (
    v_org, create_project_from_template.engagement_id, v_template.id,
    coalesce(nullif(btrim(create_project_from_template.name), ''), v_template.name), v_template.description, 'planned', v_starts,
    v_starts + greatest(
      (select max(m.offset_days) from app_public.project_template_milestones m where m.organization_id = v_org and m.template_id = v_template.id),
      (select max(t.offset_days) from app_public.project_template_tasks t where t.organization_id = v_org and t.template_id = v_template.id)
    )
  )
  returning * into v_project;

  with template_milestones as (
    select m.*, gen_random_uuid() as new_id
    from app_public.project_template_milestones m
    where m.organization_id = v_org and m.template_id = v_template.id
  ), new_milestones as ( -- a data-modifying CTE always runs, referenced or not
    insert into app_public.milestones (organization_id, id, project_id, name, position, due_on)
    select v_org, tm.new_id, v_project.id, tm.name, tm.position, v_starts + tm.offset_days
    from template_milestones tm
    returning id
  )
  insert into app_public.tasks (organization_id, project_id, milestone_id, title, description, priority, position, due_on, estimate_minutes)
  select v_org, v_project.id, tm.new_id, t.title, t.description, t.priority, t.position, v_starts + t.offset_days, t.estimate_minutes
  from app_public.project_template_tasks t
  left join template_milestones tm on tm.id = t.template_milestone_id
  where t.organization_id = v_org and t.template_id = v_template.id;
  return v_project;
end
$$;
comment on function app_public.create_project_from_template(uuid, uuid, text, date) is 'Creates a project in an active or on-hold engagement from a template (projects.write), copying its milestones and tasks with due dates counted from starts_on.';

-- Time entries. BEFORE INSERT OR UPDATE, the job role and the bill rate (sql/functions/rates.sql).
-- AFTER INSERT OR UPDATE (so row-level security has admitted the row first): the task must belong
-- to the entry's engagement; once invoiced (invoice_id set) an entry no longer changes
-- (NOT_EDITABLE) until its invoice is cancelled. SECURITY DEFINER: reads projects and tasks
-- whatever the caller may read.
create or replace function app_private.tg__time_entry_rules() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if tg_op = 'UPDATE' and old.invoice_id is not null
     and (to_jsonb(old) - 'invoice_id' - 'updated_at') is distinct from (to_jsonb(new) - 'invoice_id' - 'updated_at')
     and not app_private.erasing(new.organization_id) then -- (an erasure redacts its description: sql/functions/erasure.sql)
    perform app_private.fail('NOT_EDITABLE', 'This time entry is on an invoice; cancel the invoice to change it.');
  end if;
  if new.task_id is not null and not exists (
    select from app_public.tasks t
    join app_public.projects p on p.organization_id = t.organization_id and p.id = t.project_id
    where t.organization_id = new.organization_id and t.id = new.task_id and p.engagement_id = new.engagement_id
  ) then
    perform app_private.fail('INVALID_VALUE', 'The task belongs to another engagement than the time entry.');
  end if;
  return null;
end
$$;

drop trigger if exists tg_time_entries__rules on app_public.time_entries;
create trigger tg_time_entries__rules after insert or update on app_public.time_entries
  for each row execute function app_private.tg__time_entry_rules();
--! EndIncluded functions/delivery.sql
--! Included functions/rates.sql
-- Rates and cost: what an hour is billed at and what it costs, resolved by SQL when time is
-- logged and frozen on the entry (docs/ENTITIES.md, "Rates and cost").
--
--   job_roles          the firm's roles (Designer, Senior developer): a member has one
--                      (organization_members.job_role_id), a time entry is logged under one.
--   bill_rates         the rate cards: one hourly rate for a scope (the organization, a client or
--                      an engagement) and a subject (everyone, a job role or a member), from a date
--                      (effective_from; none: since always). A later row of the same scope and
--                      subject supersedes an earlier one from its date; past entries keep theirs.
--   member_cost_rates  what an hour of a member costs the firm, from a date. Cost is confidential:
--                      its own permission area (costs.read, special: admins by default).
--   time_entry_costs   the cost rate frozen on each time entry (one row per entry, written by the
--                      entry's trigger; readable with costs.read only, so a member who reads time
--                      never reads what colleagues cost).
--
-- Resolution (app_private.resolve_bill_rate): the most specific rate in force on the entry's date
-- wins, in this order —
--   engagement: member, job role, everyone; then the engagement's own hourly_rate;
--   client:     member, job role, everyone;
--   organization: member, job role, everyone.
-- A billable entry for which none applies is refused (RATE_MISSING): time never bills at 0 by
-- omission. An explicit rate on the entry overrides the cards and needs rates.write.
-- Idempotent; re-included by later migrations.

-- The firm's job roles.
create table if not exists app_public.job_roles (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 100),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create unique index if not exists job_roles_organization_id_name_key on app_public.job_roles (organization_id, lower(btrim(name))) where deleted_at is null;
comment on table app_public.job_roles is 'The firm''s job roles (e.g. Designer, Senior developer): members hold one, time is logged under one, and rate cards may price one.';
comment on column app_public.job_roles.name is 'Unique in the organization (case and surrounding spaces ignored) among live roles.';

alter table app_public.organization_members add column if not exists job_role_id uuid;
do $$
begin
  if not exists (select from pg_constraint where conrelid = 'app_public.organization_members'::regclass and conname = 'organization_members_job_role_fkey') then
    alter table app_public.organization_members add constraint organization_members_job_role_fkey
      foreign key (organization_id, job_role_id) references app_public.job_roles (organization_id, id) not valid;
  end if;
end
$$;
-- (Its index: migration 000037, built concurrently.)
comment on column app_public.organization_members.job_role_id is 'The member''s job role: the role their time is logged under unless an entry names another (rate cards may price it).';
grant update (job_role_id) on app_public.organization_members to :DATABASE_VISITOR;

-- Rate cards.
create table if not exists app_public.bill_rates (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  client_company_id uuid,
  engagement_id uuid,
  job_role_id uuid,
  member_id uuid,
  hourly_rate app_public.money_amount not null check (hourly_rate >= 0),
  effective_from app_public.business_date,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  constraint bill_rates_one_scope check (num_nonnulls(client_company_id, engagement_id) <= 1),
  constraint bill_rates_one_subject check (num_nonnulls(job_role_id, member_id) <= 1),
  foreign key (organization_id, client_company_id) references app_public.client_companies,
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, job_role_id) references app_public.job_roles,
  foreign key (organization_id, member_id) references app_public.organization_members
);
-- One rate per scope, subject and start date among live rows; it also serves the client lookup.
create unique index if not exists bill_rates_scope_subject_from_key on app_public.bill_rates
  (organization_id, client_company_id, engagement_id, job_role_id, member_id, effective_from) nulls not distinct where deleted_at is null;
create index if not exists bill_rates_organization_id_client_company_id_idx on app_public.bill_rates (organization_id, client_company_id);
create index if not exists bill_rates_organization_id_engagement_id_idx on app_public.bill_rates (organization_id, engagement_id);
create index if not exists bill_rates_organization_id_job_role_id_idx on app_public.bill_rates (organization_id, job_role_id);
create index if not exists bill_rates_organization_id_member_id_idx on app_public.bill_rates (organization_id, member_id);
comment on table app_public.bill_rates is 'Rate cards: the hourly rate billed for a scope (the organization; a client; an engagement) and a subject (everyone; a job role; a member), from effective_from on. The most specific rate in force on a time entry''s date is frozen on it (app_private.resolve_bill_rate).';
comment on column app_public.bill_rates.client_company_id is 'The client the rate is for (with no engagement); none with no engagement either: the whole organization.';
comment on column app_public.bill_rates.engagement_id is 'The engagement the rate is for.';
comment on column app_public.bill_rates.job_role_id is 'The job role the rate prices (none with no member either: everyone).';
comment on column app_public.bill_rates.member_id is 'The member the rate prices.';
comment on column app_public.bill_rates.effective_from is 'The first day the rate applies to (none: since always); it applies until a later rate of the same scope and subject starts.';

-- Members' cost.
create table if not exists app_public.member_cost_rates (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  member_id uuid not null,
  hourly_cost app_public.money_amount not null check (hourly_cost >= 0),
  effective_from app_public.business_date,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, member_id) references app_public.organization_members
);
create unique index if not exists member_cost_rates_member_from_key on app_public.member_cost_rates
  (organization_id, member_id, effective_from) nulls not distinct where deleted_at is null;
create index if not exists member_cost_rates_organization_id_member_id_idx on app_public.member_cost_rates (organization_id, member_id);
comment on table app_public.member_cost_rates is 'What an hour of a member costs the firm (salary and overhead), from effective_from on. Confidential: costs.read (admins by default).';
comment on column app_public.member_cost_rates.effective_from is 'The first day the cost applies to (none: since always); it applies until a later one of the member starts.';

-- The cost frozen on each time entry.
create table if not exists app_public.time_entry_costs (
  organization_id uuid not null references app_public.organizations,
  id uuid not null,
  member_cost_rate_id uuid,
  hourly_cost app_public.money_amount check (hourly_cost >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, id) references app_public.time_entries on delete cascade,
  foreign key (organization_id, member_cost_rate_id) references app_public.member_cost_rates on delete set null (member_cost_rate_id)
);
create index if not exists time_entry_costs_organization_id_member_cost_rate_id_idx on app_public.time_entry_costs (organization_id, member_cost_rate_id);
comment on table app_public.time_entry_costs is E'@behavior -insert -update -delete\nThe cost of each time entry (same id as the entry): the member''s hourly cost in force on its date, frozen when it is logged (or when its member or date change). Written by the entry''s trigger; confidential (costs.read).';
comment on column app_public.time_entry_costs.hourly_cost is 'The member''s hourly cost on the entry''s date; none when no cost rate was set for them then (cost unknown, reported as such).';
comment on column app_public.time_entry_costs.member_cost_rate_id is 'The cost rate it came from.';

-- Time entries: the role worked under and where the rate came from.
alter table app_public.time_entries
  add column if not exists job_role_id uuid,
  add column if not exists rate_source text;
do $$
begin
  if not exists (select from pg_constraint where conrelid = 'app_public.time_entries'::regclass and conname = 'time_entries_job_role_fkey') then
    alter table app_public.time_entries add constraint time_entries_job_role_fkey
      foreign key (organization_id, job_role_id) references app_public.job_roles (organization_id, id) not valid;
  end if;
  if not exists (select from pg_constraint where conrelid = 'app_public.time_entries'::regclass and conname = 'time_entries_rate_source_check') then
    alter table app_public.time_entries add constraint time_entries_rate_source_check check (rate_source in (
      'engagement_member', 'engagement_role', 'engagement', 'engagement_default',
      'client_member', 'client_role', 'client',
      'organization_member', 'organization_role', 'organization',
      'entry', 'non_billable')) not valid;
  end if;
end
$$;
-- (The job role's index: migration 000036, built concurrently; the constraints above are validated
-- by migration 000038.)
comment on column app_public.time_entries.rate is 'Hourly bill rate, frozen when the entry is logged: the rate card in force on work_date (rate_source says which), or the rate given (needs rates.write). 0 for non-billable time.';
comment on column app_public.time_entries.job_role_id is 'The job role the time was worked under (by default the member''s).';
comment on column app_public.time_entries.rate_source is 'Where the rate came from: a rate card''s scope and subject (engagement_member … organization), engagement_default (the engagement''s hourly_rate), entry (given on the entry), non_billable. None for time logged before rates were resolved (migration 000035).';

call app_private.make_tenant_table('app_public.job_roles', 'rates', soft_delete_as => 'job_role');
call app_private.make_tenant_table('app_public.bill_rates', 'rates', soft_delete_as => 'bill_rate');
call app_private.make_tenant_table('app_public.member_cost_rates', 'costs', soft_delete_as => 'member_cost_rate');
call app_private.make_tenant_table('app_public.time_entry_costs', 'costs', insertable => false, updatable => false);
-- The job role is the member's to choose; rate_source is the trigger's alone.
grant insert (job_role_id), update (job_role_id) on app_public.time_entries to :DATABASE_VISITOR;

call app_private.classify_columns('app_public.job_roles', '{"name": "free_text"}');
call app_private.classify_columns('app_public.time_entries', '{"rate_source": "none"}');
call app_private.set_audit_parent('app_public.time_entry_costs', 'id', 'app_public.time_entries');
call app_private.set_audit_parent('app_public.member_cost_rates', 'member_id', 'app_public.organization_members');
call app_private.declare_record_retention('app_public.bill_rates', false, 'a price list; what was billed is on the invoices');
call app_private.declare_record_retention('app_public.member_cost_rates', false, 'internal cost, not a booking');
call app_private.declare_record_retention('app_public.time_entry_costs', false, 'internal cost of time worked, not a booking');

-- The bill rate for an hour of `member_id` (under `job_role_id`) on `engagement_id` on `on_date`:
-- the most specific rate card in force (see the top of this file), or no row.
create or replace function app_private.resolve_bill_rate(organization_id uuid, engagement_id uuid, member_id uuid, job_role_id uuid, on_date date)
returns table (hourly_rate numeric, source text, bill_rate_id uuid)
language sql stable security definer
set search_path = pg_catalog
as $$
  with e as (
    select e.client_company_id, e.hourly_rate from app_public.engagements e
    where e.organization_id = resolve_bill_rate.organization_id and e.id = resolve_bill_rate.engagement_id
  ), candidates as (
    select r.hourly_rate, r.id, r.effective_from,
      case when r.engagement_id is not null then 'engagement' when r.client_company_id is not null then 'client' else 'organization' end
        || case when r.member_id is not null then '_member' when r.job_role_id is not null then '_role' else '' end as source,
      case when r.engagement_id is not null then 0 when r.client_company_id is not null then 4 else 8 end
        + case when r.member_id is not null then 0 when r.job_role_id is not null then 1 else 2 end as rank
    from app_public.bill_rates r
    where r.organization_id = resolve_bill_rate.organization_id and r.deleted_at is null
      and (r.effective_from is null or r.effective_from <= resolve_bill_rate.on_date)
      and (r.engagement_id = resolve_bill_rate.engagement_id
        or (r.engagement_id is null and (r.client_company_id is null or r.client_company_id = (select e.client_company_id from e))))
      and (r.member_id = resolve_bill_rate.member_id
        or (r.member_id is null and (r.job_role_id is null or r.job_role_id = resolve_bill_rate.job_role_id)))
    union all
    select e.hourly_rate, null, null, 'engagement_default', 3 from e where e.hourly_rate is not null
  )
  select c.hourly_rate, c.source, c.id from candidates c
  order by c.rank, c.effective_from desc nulls last
  limit 1
$$;
revoke all on function app_private.resolve_bill_rate(uuid, uuid, uuid, uuid, date) from public;
comment on function app_private.resolve_bill_rate(uuid, uuid, uuid, uuid, date) is 'The bill rate in force for an hour of a member (under a job role) on an engagement on a date: the most specific rate card (engagement, then client, then organization; member, then job role, then everyone; the engagement''s hourly_rate after its own cards), the latest started. No row when none applies.';

-- The member's hourly cost on a date, or no row.
create or replace function app_private.resolve_cost_rate(organization_id uuid, member_id uuid, on_date date)
returns table (hourly_cost numeric, member_cost_rate_id uuid)
language sql stable security definer
set search_path = pg_catalog
as $$
  select c.hourly_cost, c.id from app_public.member_cost_rates c
  where c.organization_id = resolve_cost_rate.organization_id and c.member_id = resolve_cost_rate.member_id and c.deleted_at is null
    and (c.effective_from is null or c.effective_from <= resolve_cost_rate.on_date)
  order by c.effective_from desc nulls last
  limit 1
$$;
revoke all on function app_private.resolve_cost_rate(uuid, uuid, date) from public;
comment on function app_private.resolve_cost_rate(uuid, uuid, date) is 'A member''s hourly cost in force on a date (the latest started cost rate); no row when none.';

-- For a form: the rate an entry would get (rates.read).
create or replace function app_public.applicable_bill_rate(engagement_id uuid, member_id uuid, work_date date default current_date, job_role_id uuid default null)
returns numeric
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_role uuid := applicable_bill_rate.job_role_id;
begin
  perform app_private.require_permission('rates.read', 'read rates');
  if v_role is null then
    select m.job_role_id into v_role from app_public.organization_members m where m.organization_id = v_org and m.id = applicable_bill_rate.member_id;
  end if;
  return (select r.hourly_rate from app_private.resolve_bill_rate(v_org, applicable_bill_rate.engagement_id, applicable_bill_rate.member_id, v_role, coalesce(applicable_bill_rate.work_date, current_date)) r);
end
$$;
revoke all on function app_public.applicable_bill_rate(uuid, uuid, date, uuid) from public;
grant execute on function app_public.applicable_bill_rate(uuid, uuid, date, uuid) to :DATABASE_VISITOR;
comment on function app_public.applicable_bill_rate(uuid, uuid, date, uuid) is 'The hourly rate a time entry of the member on the engagement on that date (under that job role; by default the member''s) would be billed at, from the rate cards; null when none applies (a billable entry would be refused). Needs rates.read.';

-- Time entries. BEFORE INSERT OR UPDATE: the job role (the member's by default) and the bill rate,
-- resolved on insert and again when what decides it changes (engagement, member, job role, date,
-- billable), unless the entry carries a rate given by hand. SECURITY DEFINER: reads rate cards and
-- engagements whatever the caller may read.
create or replace function app_private.tg__time_entry_rate() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_given boolean;
  v_rate record;
begin
  if tg_op = 'UPDATE' then
    new.rate_source := old.rate_source;
  end if;
  if tg_op = 'UPDATE' and old.invoice_id is not null then
    return new; -- invoiced: frozen (tg__time_entry_rules refuses a change)
  end if;
  if new.job_role_id is null and (tg_op = 'INSERT' or new.member_id is distinct from old.member_id) then
    new.job_role_id := (select m.job_role_id from app_public.organization_members m where m.organization_id = new.organization_id and m.id = new.member_id);
  end if;
  v_given := case when tg_op = 'INSERT' then new.rate <> 0 else new.rate is distinct from old.rate end;
  if v_given then
    if app_public.current_user_id() is not null and not app_public.has_permission('rates.write') then
      perform app_private.fail('NOT_PERMITTED', 'Setting a time entry''s rate by hand needs rates.write; leave it out to bill the rate card''s.');
    end if;
    new.rate_source := 'entry';
    return new;
  end if;
  if tg_op = 'UPDATE' and (old.rate_source = 'entry'
      or (new.engagement_id, new.member_id, new.job_role_id, new.work_date, new.billable)
         is not distinct from (old.engagement_id, old.member_id, old.job_role_id, old.work_date, old.billable)) then
    return new;
  end if;
  if not new.billable then
    new.rate := 0;
    new.rate_source := 'non_billable';
    return new;
  end if;
  select * into v_rate from app_private.resolve_bill_rate(new.organization_id, new.engagement_id, new.member_id, new.job_role_id, new.work_date);
  if v_rate.source is null then
    perform app_private.fail('RATE_MISSING', format(
      'No bill rate applies to this billable time on %s: set the engagement''s hourly rate or a rate card (billRates) for the engagement, its client or the organization, or log the time as non-billable.',
      to_char(new.work_date, 'YYYY-MM-DD')));
  end if;
  new.rate := v_rate.hourly_rate;
  new.rate_source := v_rate.source;
  return new;
end
$$;
drop trigger if exists tg_time_entries__rate on app_public.time_entries;
create trigger tg_time_entries__rate before insert or update on app_public.time_entries
  for each row execute function app_private.tg__time_entry_rate();

-- AFTER INSERT OR UPDATE OF member_id, work_date: the entry's cost, frozen (see time_entry_costs).
create or replace function app_private.tg__time_entry_cost() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_cost record;
begin
  if tg_op = 'UPDATE' and (new.member_id, new.work_date) is not distinct from (old.member_id, old.work_date) then
    return null;
  end if;
  select * into v_cost from app_private.resolve_cost_rate(new.organization_id, new.member_id, new.work_date);
  insert into app_public.time_entry_costs as c (organization_id, id, member_cost_rate_id, hourly_cost)
  values (new.organization_id, new.id, v_cost.member_cost_rate_id, v_cost.hourly_cost)
  on conflict (organization_id, id) do update
    set member_cost_rate_id = excluded.member_cost_rate_id, hourly_cost = excluded.hourly_cost
    where (c.member_cost_rate_id, c.hourly_cost) is distinct from (excluded.member_cost_rate_id, excluded.hourly_cost);
  return null;
end
$$;
drop trigger if exists tg_time_entries__cost on app_public.time_entries;
create trigger tg_time_entries__cost after insert or update of member_id, work_date on app_public.time_entries
  for each row execute function app_private.tg__time_entry_cost();
--! EndIncluded functions/rates.sql
