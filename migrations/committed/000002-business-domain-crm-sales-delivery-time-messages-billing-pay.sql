--! Previous: sha1:1418f227b6bd59ca2b2ed18eb406483399791c72
--! Hash: sha1:67ee68b69f9963a1aa4adc2690ec86044cf0b1f3
--! Message: Business domain: CRM, sales, delivery, time, messages, billing, payables, files, client portal, custom roles

-- The business domain: CRM, sales, delivery, time, communication, billing, payables, files,
-- the client portal and custom roles, every table a tenant table (sql/functions/tenant_tables.sql).
--
-- Money is numeric(14,2) in the organization's currency (organizations.currency), everywhere.
-- Statuses move only along app_private.status_transitions (sql/functions/status_machine.sql);
-- totals are generated columns or kept by triggers; the visitor never writes a status that has
-- a lifecycle function, a total, a number or a timestamp a transition stamps.

-- current.sql re-runs on every change while it is developed: start from scratch.
drop table if exists
  app_public.role_assignments, app_public.role_permissions, app_public.roles, app_public.permissions,
  app_private.portal_access_secrets, app_public.client_portal_access, app_public.file_objects,
  app_public.bills, app_public.vendors, app_public.payments, app_public.invoice_line_items,
  app_private.invoice_counters, app_public.invoices, app_public.invoice_schedules,
  app_public.messages, app_public.threads, app_public.time_entries, app_public.tasks,
  app_public.milestones, app_public.projects, app_public.project_template_tasks,
  app_public.project_template_milestones, app_public.project_templates, app_public.engagements,
  app_public.contracts, app_public.proposal_line_items, app_public.proposals, app_public.deals,
  app_public.contacts, app_private.status_transitions
  cascade;
drop type if exists
  app_public.deal_stage, app_public.proposal_status, app_public.contract_status,
  app_public.engagement_status, app_public.project_status, app_public.milestone_status,
  app_public.task_status, app_public.task_priority, app_public.thread_visibility,
  app_public.schedule_kind, app_public.schedule_frequency, app_public.invoice_status,
  app_public.payment_method, app_public.bill_status, app_public.portal_access_token
  cascade;
-- The foundation's recipe took a member role; it now takes a permission area.
drop procedure if exists app_private.create_member_policies(regclass, app_public.member_role, boolean);
drop procedure if exists app_private.grant_member_access(regclass, boolean);
drop procedure if exists app_private.attach_soft_delete(regclass, text, app_public.member_role);
drop procedure if exists app_private.make_tenant_table(regclass, text, app_public.member_role, text[]);
drop procedure if exists app_private.create_tenant_policies(regclass, text, boolean, text);
drop procedure if exists app_private.grant_tenant_access(regclass, boolean, text[]);
drop procedure if exists app_private.make_tenant_table(regclass, text, text, text[], text[], text);

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
--! EndIncluded errors.sql

------------------------------------------------------------------------------------------------
-- Organization settings the domain needs.

alter table app_public.organizations
  add column if not exists currency char(3) not null default 'USD' check (currency ~ '^[A-Z]{3}$'),
  add column if not exists payment_terms_days integer not null default 30 check (payment_terms_days between 0 and 365);
comment on column app_public.organizations.currency is 'ISO 4217 code of every amount in this organization (all money is numeric(14,2) in it).';
comment on column app_public.organizations.payment_terms_days is 'Days from issue to due date of an invoice sent without a due date.';
grant update (name, slug, retention_days, currency, payment_terms_days) on app_public.organizations to :DATABASE_VISITOR;

------------------------------------------------------------------------------------------------
-- Access control: the permission catalogue (global) and custom roles (per organization).

create table app_public.permissions (
  key text primary key check (key ~ '^[a-z_]+\.[a-z_]+$'),
  description text not null
);
comment on table app_public.permissions is E'@behavior -insert -update -delete\nWhat can be allowed: one key per area and action (invoices.read, invoices.write, ...). The same for every organization.';
call app_private.force_rls('app_public.permissions');
create policy select_all on app_public.permissions for select to :DATABASE_VISITOR using (true);
comment on policy select_all on app_public.permissions is 'The catalogue is public knowledge: anyone may read it.';
grant select on app_public.permissions to :DATABASE_VISITOR;

create table app_public.roles (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 100),
  description text check (length(description) <= 1000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create unique index roles_organization_id_name_key on app_public.roles (organization_id, lower(name)) where deleted_at is null;
comment on table app_public.roles is E'@behavior -delete\nA custom role (e.g. "Billing clerk"): a set of permissions. A member holding custom roles may do exactly what they grant.';

create table app_public.role_permissions (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  role_id uuid not null,
  permission_key text not null references app_public.permissions,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  unique (organization_id, role_id, permission_key),
  foreign key (organization_id, role_id) references app_public.roles on delete cascade
);
create index role_permissions_organization_id_permission_key_idx on app_public.role_permissions (organization_id, permission_key);
comment on table app_public.role_permissions is 'A permission a custom role grants.';

create table app_public.role_assignments (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  member_id uuid not null,
  role_id uuid not null,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  unique (organization_id, member_id, role_id),
  foreign key (organization_id, member_id) references app_public.organization_members on delete cascade,
  foreign key (organization_id, role_id) references app_public.roles on delete cascade
);
create index role_assignments_organization_id_role_id_idx on app_public.role_assignments (organization_id, role_id);
comment on table app_public.role_assignments is 'A custom role held by a member.';

--! Included functions/permissions.sql
-- Permissions: "may the user do X here?" — one helper, app_public.has_permission('invoices.write'),
-- called by the policies of every business table.
--
-- Permission keys are `<area>.<action>` (the catalogue is app_public.permissions, filled below):
-- read and write per area, plus a few special actions. What a member may do:
--   * owners and admins: everything;
--   * a member with one or more custom roles (app_public.roles, assigned in role_assignments): exactly
--     the permissions of those roles (e.g. "billing clerk": invoices.read, invoices.write,
--     clients.read — and nothing about deals);
--   * otherwise the defaults of their base role: viewers read every area; members read and write
--     every area, except the special portal.write and roles.write, which stay with admins.
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
  ('roles.write', 'Define custom roles and assign them (special: admins by default)')
on conflict (key) do update set description = excluded.description;

-- Is `permission` one of the special actions that only admins (or a custom role) grant?
create or replace function app_private.is_special_permission(permission text) returns boolean
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select permission in ('portal.write', 'roles.write')
$$;

create or replace function app_public.has_permission(permission text) returns boolean
language sql stable security definer
set search_path = pg_catalog
as $$
  select case
    when app_private.is_worker_session() then app_public.current_org_id() is not null
    else coalesce((
      select
        case
          when m.role >= 'admin' then true
          when exists (select 1 from app_public.role_assignments mr where mr.organization_id = m.organization_id and mr.member_id = m.id) then
            exists (
              select 1
              from app_public.role_assignments mr
              join app_public.role_permissions rp on rp.organization_id = mr.organization_id and rp.role_id = mr.role_id
              join app_public.roles r on r.organization_id = mr.organization_id and r.id = mr.role_id and r.deleted_at is null
              where mr.organization_id = m.organization_id and mr.member_id = m.id and rp.permission_key = has_permission.permission
            )
          when has_permission.permission like '%.read' then true
          when m.role = 'member' then has_permission.permission like '%.write' and not app_private.is_special_permission(has_permission.permission)
          else false
        end
      from app_public.organization_members m
      where m.organization_id = app_public.current_org_id()
        and m.user_id = app_public.current_user_id()
    ), false)
  end
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
--! EndIncluded functions/permissions.sql
--! Included functions/status_machine.sql
-- Status machines: which status changes a record may make, as rows a DBA can read and change.
--
--   select from_status, to_status, stamp_column from app_private.status_transitions
--   where table_name = 'invoices' order by 1, 2;
--
-- `from_status = '*new*'` lists the statuses a row may be created in. `stamp_column`, when set,
-- is stamped with now() when the row enters `to_status` (sent_at, signed_at, ...).
-- app_private.attach_status_machine(table) adds the trigger that enforces them; anything else is
-- refused with INVALID_TRANSITION.

create table if not exists app_private.status_transitions (
  table_name text not null,
  from_status text not null,
  to_status text not null,
  stamp_column text,
  primary key (table_name, from_status, to_status)
);
alter table app_private.status_transitions enable row level security;
alter table app_private.status_transitions force row level security;
comment on table app_private.status_transitions is 'Allowed status changes per table (from_status *new*: allowed initial statuses), and the timestamp column each change stamps.';

-- BEFORE UPDATE OF <status> per row: the change must be allowed; stamps its timestamp.
-- AFTER INSERT per row: the row must start in an allowed status (after row-level security, so a
-- row the caller may not insert at all is refused by RLS first).
-- TG_ARGV[0]: the status column. SECURITY DEFINER to read the transition table, which nobody
-- else may.
create or replace function app_private.tg__status_transition() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_column text := coalesce(tg_argv[0], 'status');
  v_from text := case when tg_op = 'INSERT' then '*new*' else to_jsonb(old) ->> v_column end;
  v_to text := to_jsonb(new) ->> v_column;
  v_stamp text;
begin
  if tg_op = 'UPDATE' and v_from is not distinct from v_to then
    return new;
  end if;
  select t.stamp_column into v_stamp
  from app_private.status_transitions t
  where t.table_name = tg_table_name and t.from_status = v_from and t.to_status = v_to;
  if not found then
    perform app_private.fail('INVALID_TRANSITION', case
      when tg_op = 'INSERT' then format('A new %s cannot start as %s.', app_private.singular_label(tg_table_name), v_to)
      else format('A %s cannot go from %s to %s.', app_private.singular_label(tg_table_name), v_from, v_to)
    end);
  end if;
  if tg_op = 'INSERT' then
    return null;
  end if;
  if v_stamp is not null then
    new := jsonb_populate_record(new, jsonb_build_object(v_stamp, now()));
  end if;
  return new;
end
$$;

-- "client_companies" -> "client company", for messages.
create or replace function app_private.singular_label(table_name text) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select replace(regexp_replace(regexp_replace(table_name, 'ies$', 'y'), '([^s])s$', '\1'), '_', ' ')
$$;

create or replace procedure app_private.attach_status_machine(tbl regclass, status_column text default 'status')
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
begin
  if not exists (select from app_private.status_transitions where table_name = v_rel) then
    raise exception 'no status transitions defined for %', v_rel;
  end if;
  execute format('drop trigger if exists %I on %s', format('tg_%s__status_transition', v_rel), tbl);
  execute format('create trigger %I before update of %I on %s for each row execute function app_private.tg__status_transition(%L)',
    format('tg_%s__status_transition', v_rel), status_column, tbl, status_column);
  execute format('drop trigger if exists %I on %s', format('tg_%s__status_initial', v_rel), tbl);
  execute format('create trigger %I after insert on %s for each row execute function app_private.tg__status_transition(%L)',
    format('tg_%s__status_initial', v_rel), tbl, status_column);
end
$$;

-- Records that freeze once they leave their editable statuses (a sent invoice, a signed
-- contract, an approved bill): app_private.attach_edit_lock(table, array['draft']) adds a BEFORE
-- UPDATE trigger refusing, with NOT_EDITABLE, any change to a column the visitor may update
-- while the row's status is not one of `editable_statuses`. The columns are those granted to
-- the visitor when it is attached (so call it after make_tenant_table), plus `also_locked`
-- (e.g. deleted_at: a sent invoice cannot be deleted). Changes the lifecycle functions and
-- triggers make (status, totals, stamps) are not the visitor's columns and pass.
create or replace function app_private.tg__edit_lock() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_status text := to_jsonb(old) ->> tg_argv[0];
  v_editable text[] := string_to_array(tg_argv[1], ',');
  v_locked text[] := string_to_array(tg_argv[2], ',');
  v_old jsonb := to_jsonb(old);
  v_new jsonb := to_jsonb(new);
  v_column text;
begin
  if v_status = any (v_editable) then
    return new;
  end if;
  foreach v_column in array v_locked loop
    if v_old -> v_column is distinct from v_new -> v_column then
      perform app_private.fail('NOT_EDITABLE', format('A %s that is %s can no longer be changed (%s).',
        app_private.singular_label(tg_table_name), v_status, v_column));
    end if;
  end loop;
  return new;
end
$$;

create or replace procedure app_private.attach_edit_lock(tbl regclass, editable_statuses text[], status_column text default 'status', also_locked text[] default '{}')
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
  v_locked text[];
begin
  select array_agg(attname::text order by attnum) into v_locked
  from pg_attribute
  where attrelid = tbl and attnum > 0 and not attisdropped
    and (has_column_privilege(':DATABASE_VISITOR', tbl, attname, 'UPDATE') or attname = any (also_locked));
  execute format('drop trigger if exists %I on %s', format('tg_%s__edit_lock', v_rel), tbl);
  execute format('create trigger %I before update on %s for each row execute function app_private.tg__edit_lock(%L, %L, %L)',
    format('tg_%s__edit_lock', v_rel), tbl, status_column, array_to_string(editable_statuses, ','), array_to_string(v_locked, ','));
end
$$;
--! EndIncluded functions/status_machine.sql
--! Included functions/line_items.sql
-- Line items (proposal_line_items, invoice_line_items) and the totals of their documents.
--
-- A line's amount is a generated column (quantity × unit price, rounded to cents). The
-- document's subtotal is kept by this trigger: after every insert, update or delete of a line
-- it is recomputed from the lines, so it can never drift and is never typed in (the visitor
-- has no privilege on it). Tax, total and balance are generated columns of the document.
-- Lines may only change while their document is a draft (NOT_EDITABLE otherwise).
--
-- TG_ARGV[0]: the document table (e.g. app_public.invoices); TG_ARGV[1]: the line's column
-- naming it (e.g. invoice_id). SECURITY DEFINER: the visitor may not write subtotal itself.
create or replace function app_private.tg__line_item_totals() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_parent regclass := tg_argv[0]::regclass;
  v_fk text := tg_argv[1];
  v_row jsonb;
  v_status text;
  v_org uuid;
  v_doc uuid;
begin
  if tg_op = 'UPDATE' and (to_jsonb(old) - 'updated_at') = (to_jsonb(new) - 'updated_at') then
    return null; -- nothing changed
  end if;
  foreach v_row in array array_remove(array[
    case when tg_op in ('INSERT', 'UPDATE') then to_jsonb(new) end,
    case when tg_op = 'DELETE' or (tg_op = 'UPDATE' and (to_jsonb(old) ->> v_fk) is distinct from (to_jsonb(new) ->> v_fk)) then to_jsonb(old) end
  ], null) loop
    v_org := (v_row ->> 'organization_id')::uuid;
    v_doc := (v_row ->> v_fk)::uuid;
    -- Lock the document: concurrent line changes of one document are applied one at a time.
    execute format('select status::text from %s where organization_id = $1 and id = $2 for update', v_parent)
      into v_status using v_org, v_doc;
    continue when v_status is null; -- the document itself is being deleted
    if v_status <> 'draft' then
      perform app_private.fail('NOT_EDITABLE', format('The lines of a %s that is %s can no longer be changed.',
        app_private.singular_label((select relname from pg_class where oid = v_parent)), v_status));
    end if;
    execute format(
      'update %1$s d set subtotal = (select coalesce(sum(l.amount), 0) from %2$s l where l.organization_id = $1 and l.%3$I = $2)
       where d.organization_id = $1 and d.id = $2',
      v_parent, format('%I.%I', tg_table_schema, tg_table_name), v_fk)
      using v_org, v_doc;
  end loop;
  return null;
end
$$;

create or replace procedure app_private.attach_line_item_totals(tbl regclass, document regclass, document_column text)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
begin
  execute format('drop trigger if exists %I on %s', format('tg_%s__totals', v_rel), tbl);
  execute format('create trigger %I after insert or update or delete on %s for each row execute function app_private.tg__line_item_totals(%L, %L)',
    format('tg_%s__totals', v_rel), tbl, document::text, document_column);
end
$$;
--! EndIncluded functions/line_items.sql
--! Included functions/tenant_tables.sql
-- Say it once, apply it everywhere: the procedures that make a table a tenant table.
-- A migration creates the table, then makes it safe with one call:
--
--   call app_private.make_tenant_table('app_public.client_companies', 'clients', soft_delete_as => 'client_company');
--
-- which checks its shape, forces row-level security, creates the four standard policies,
-- grants the visitor role exactly what they allow, and attaches the updated_at, audit (+ outbox)
-- and soft-delete machinery. Each step is its own procedure below, so tables with special rules
-- (organization_members, invitations, ...) use the steps they need and write their own policies.
-- Every procedure is idempotent: calling it again re-applies the current rules (e.g. after a
-- column is added, to grant it).
--
-- The standard policies, all TO the visitor role, for a table in permission area <a>
-- (app_public.has_permission, sql/functions/permissions.sql):
--   tenant_select  members of the current organization holding <a>.read read its rows
--                  [soft-delete tables: only rows that are not deleted]
--                  [portal tables: so do client-portal users, for the rows `portal_read` allows]
--   tenant_insert  members holding <a>.write add rows to the current organization
--   tenant_update  the same members change its [not deleted] rows; rows stay in the organization
--   tenant_delete  the same members delete its rows (hard-delete tables only; soft-delete tables
--                  get soft_delete_<x>() / restore_<x>() instead and no DELETE privilege)
-- Tables whose rows only lifecycle functions create (insertable => false) get no insert policy
-- or privilege; append-only ledgers (updatable => false) get neither update nor delete.

-- Raise the right error unless the current user acts in an organization with at least `minimum`.
create or replace function app_private.require_member_role(minimum app_public.member_role, action text) returns void
language plpgsql stable
set search_path = pg_catalog
as $$
begin
  if app_public.current_user_id() is null and not app_private.is_worker_session() then
    perform app_private.fail('UNAUTHENTICATED', format('Sign in to %s.', action));
  elsif app_public.current_org_id() is null then
    perform app_private.fail('NO_ORGANIZATION', format('Choose an organization to %s.', action));
  elsif not app_public.current_member_has_role(minimum) then
    perform app_private.fail('NOT_PERMITTED', format('Only members with the %s role or higher may %s.', minimum, action));
  end if;
end
$$;

-- Columns the visitor never writes directly: keys, and what triggers and defaults maintain.
create or replace function app_private.protected_columns() returns text[]
language sql immutable
as $$
  select array['organization_id', 'id', 'created_at', 'created_by', 'updated_at', 'deleted_at']
$$;

-- Checks the shape every tenant table must have and sets its tenant defaults.
create or replace procedure app_private.assert_tenant_shape(tbl regclass)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_pk text[];
begin
  if not exists (
    select from pg_attribute
    where attrelid = tbl and attname = 'organization_id' and atttypid = 'uuid'::regtype and attnotnull and not attisdropped
  ) then
    raise exception '% must have a column organization_id uuid not null', tbl;
  end if;
  select array_agg(a.attname::text order by k.ord) into v_pk
  from pg_constraint c
  cross join lateral unnest(c.conkey) with ordinality as k(attnum, ord)
  join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
  where c.conrelid = tbl and c.contype = 'p';
  if v_pk is distinct from array['organization_id', 'id'] then
    raise exception '% must have primary key (organization_id, id), has %', tbl, v_pk;
  end if;
  execute format('alter table %s alter column organization_id set default app_public.current_org_id()', tbl);
  if exists (select from pg_attribute where attrelid = tbl and attname = 'created_by' and not attisdropped) then
    execute format('alter table %s alter column created_by set default app_public.current_user_id()', tbl);
  end if;
end
$$;

-- Row-level security, enabled and forced (the table owner is subject to it too, unless the
-- role itself has BYPASSRLS).
create or replace procedure app_private.force_rls(tbl regclass)
language plpgsql
set search_path = pg_catalog
as $$
begin
  execute format('alter table %s enable row level security', tbl);
  execute format('alter table %s force row level security', tbl);
end
$$;

-- The four standard policies (see the top of this file).
create or replace procedure app_private.create_tenant_policies(
  tbl regclass, permission text, soft_delete boolean, portal_read text default null, portal_insert text default null,
  insertable boolean default true, updatable boolean default true
)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_in_org constant text := 'organization_id = (select app_public.current_org_id())';
  v_read text := format('(select app_public.has_permission(%L))', permission || '.read');
  v_write text := format('(select app_public.has_permission(%L))', permission || '.write');
  v_live text := case when soft_delete then ' and deleted_at is null' else '' end;
  v_portal text := case when portal_read is null then ''
    else format(' or (organization_id = (select app_public.current_portal_org_id()) and (%s)%s)', portal_read, v_live) end;
  v_portal_insert text := case when portal_insert is null then ''
    else format(' or (organization_id = (select app_public.current_portal_org_id()) and (%s))', portal_insert) end;
begin
  if not exists (select from app_public.permissions p where p.key = permission || '.write') then
    raise exception 'unknown permission area % (see sql/functions/permissions.sql)', permission;
  end if;
  execute format('drop policy if exists tenant_select on %s', tbl);
  execute format('drop policy if exists tenant_insert on %s', tbl);
  execute format('drop policy if exists tenant_update on %s', tbl);
  execute format('drop policy if exists tenant_delete on %s', tbl);

  execute format('create policy tenant_select on %s for select to :DATABASE_VISITOR using ((%s and %s%s)%s)', tbl, v_in_org, v_read, v_live, v_portal);
  execute format('comment on policy tenant_select on %s is %L', tbl,
    format('Members holding %s.read read the current organization''s %srows', permission, case when soft_delete then 'live ' else '' end)
    || case when portal_read is null then '.' else format('; client-portal users read those where %s.', portal_read) end);

  if insertable then
    execute format('create policy tenant_insert on %s for insert to :DATABASE_VISITOR with check ((%s and %s)%s)', tbl, v_in_org, v_write, v_portal_insert);
    execute format('comment on policy tenant_insert on %s is %L', tbl,
      format('Members holding %s.write add rows to the current organization', permission)
      || case when portal_insert is null then '.' else format('; client-portal users add rows where %s.', portal_insert) end);
  end if;

  if updatable then
    execute format('create policy tenant_update on %s for update to :DATABASE_VISITOR using (%s and %s%s) with check (%s and %s)',
      tbl, v_in_org, v_write, v_live, v_in_org, v_write);
    execute format('comment on policy tenant_update on %s is %L', tbl,
      format('Members holding %s.write change the current organization''s %srows; they stay in it.', permission, case when soft_delete then 'live ' else '' end));
  end if;

  if not soft_delete and updatable then
    execute format('create policy tenant_delete on %s for delete to :DATABASE_VISITOR using (%s and %s)', tbl, v_in_org, v_write);
    execute format('comment on policy tenant_delete on %s is %L', tbl,
      format('Members holding %s.write delete the current organization''s rows.', permission));
  end if;
end
$$;

-- Grants matching the standard policies: read; insert and update every column except the
-- protected ones and `readonly_columns` (kept by triggers or lifecycle functions: totals,
-- statuses, numbers); delete only on hard-delete tables. organization_id is never written by the
-- visitor: its default is the request's organization, so the API does not even offer it. `id`
-- may be given on insert (a client-made UUID makes a retried create idempotent).
create or replace procedure app_private.grant_tenant_access(
  tbl regclass, soft_delete boolean, readonly_columns text[] default '{}', insertable boolean default true, updatable boolean default true
)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_insertable text;
  v_updatable text;
begin
  if exists (
    select from unnest(readonly_columns) as r(col)
    where not exists (select from pg_attribute where attrelid = tbl and attname = r.col and not attisdropped)
  ) then
    raise exception 'readonly_columns % are not all columns of %', readonly_columns, tbl;
  end if;
  select
    string_agg(quote_ident(attname), ', ') filter (where attname not in ('organization_id', 'created_at', 'created_by', 'updated_at', 'deleted_at') and attname <> all (readonly_columns)),
    string_agg(quote_ident(attname), ', ') filter (where attname <> all (app_private.protected_columns()) and attname <> all (readonly_columns))
  into v_insertable, v_updatable
  from pg_attribute
  where attrelid = tbl and attnum > 0 and not attisdropped and attgenerated = '';

  execute format('revoke all on %s from public, :DATABASE_VISITOR', tbl);
  execute format('grant select on %s to :DATABASE_VISITOR', tbl);
  if insertable then
    execute format('grant insert (%s) on %s to :DATABASE_VISITOR', v_insertable, tbl);
  end if;
  if updatable and v_updatable is not null then
    execute format('grant update (%s) on %s to :DATABASE_VISITOR', v_updatable, tbl);
  end if;
  if not soft_delete and updatable then
    execute format('grant delete on %s to :DATABASE_VISITOR', tbl);
  end if;
end
$$;

create or replace procedure app_private.attach_updated_at(tbl regclass)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_name text := format('tg_%s__updated_at', (select relname from pg_class where oid = tbl));
begin
  execute format('drop trigger if exists %I on %s', v_name, tbl);
  execute format('create trigger %I before update on %s for each row execute function app_private.tg__updated_at()', v_name, tbl);
end
$$;

-- The audit trigger (app_private.tg__audit): one statement-level trigger per operation, with
-- transition tables. `org_column` holds the organization id; `secret_columns` are never copied.
create or replace procedure app_private.attach_audit(tbl regclass, org_column text default 'organization_id', secret_columns text[] default '{}')
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
  v_args text := (select string_agg(quote_literal(a), ', ') from unnest(array[org_column] || secret_columns) as a);
  v_op text;
begin
  if exists (
    select from unnest(secret_columns) as s(col)
    where not exists (select from pg_attribute where attrelid = tbl and attname = s.col and not attisdropped)
  ) then
    raise exception 'secret_columns % are not all columns of %', secret_columns, tbl;
  end if;
  foreach v_op in array array['insert', 'update', 'delete'] loop
    execute format('drop trigger if exists %I on %s', format('tg_%s__audit_%s', v_rel, v_op), tbl);
    execute format('create trigger %I after %s on %s referencing %s for each statement execute function app_private.tg__audit(%s)',
      format('tg_%s__audit_%s', v_rel, v_op), v_op, tbl,
      case v_op
        when 'insert' then 'new table as new_rows'
        when 'update' then 'old table as old_rows new table as new_rows'
        else 'old table as old_rows'
      end,
      v_args);
  end loop;
end
$$;

-- Soft delete for `tbl` (which needs deleted_at timestamptz): generates
--   app_public.soft_delete_<singular>(id)  members holding <permission>.write: hide the row
--   app_public.restore_<singular>(id)      admins and owners: bring it back within the
--                                          organization's retention window (retention_days)
--   app_public.deleted_<table>()           admins and owners: the deleted rows still restorable
-- They are SECURITY DEFINER because a visitor cannot UPDATE a row into a state its SELECT
-- policy hides; each checks the organization and role itself with the identity helpers.
create or replace procedure app_private.attach_soft_delete(tbl regclass, singular text, permission text)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
  v_label text := replace(singular, '_', ' ');
begin
  if not exists (select from pg_attribute where attrelid = tbl and attname = 'deleted_at' and atttypid = 'timestamptz'::regtype and not attisdropped) then
    raise exception '% needs a deleted_at timestamptz column for soft delete', tbl;
  end if;

  execute format($f$
    create or replace function app_public.%1$I(id uuid) returns %2$s
    language plpgsql volatile security definer
    set search_path = pg_catalog
    as $body$
    declare
      v_row %2$s;
    begin
      perform app_private.require_permission(%3$L, 'delete a %4$s');
      update %2$s as t set deleted_at = now()
      where t.organization_id = app_public.current_org_id() and t.id = %1$I.id and t.deleted_at is null
      returning t.* into v_row;
      if v_row.id is null then
        perform app_private.fail('NOT_FOUND', 'No such %4$s in this organization.');
      end if;
      return v_row;
    end
    $body$
  $f$, 'soft_delete_' || singular, tbl, permission || '.write', v_label);
  execute format('comment on function app_public.%I(uuid) is %L', 'soft_delete_' || singular,
    format('Deletes a %s: it disappears from every read; admins can restore it within the organization''s retention window.', v_label));

  execute format($f$
    create or replace function app_public.%1$I(id uuid) returns %2$s
    language plpgsql volatile security definer
    set search_path = pg_catalog
    as $body$
    declare
      v_row %2$s;
    begin
      perform app_private.require_member_role('admin', 'restore a %3$s');
      update %2$s as t set deleted_at = null
      from app_public.organizations o
      where o.id = t.organization_id
        and t.organization_id = app_public.current_org_id() and t.id = %1$I.id
        and t.deleted_at > now() - make_interval(days => o.retention_days)
      returning t.* into v_row;
      if v_row.id is null then
        if exists (select from %2$s t where t.organization_id = app_public.current_org_id() and t.id = %1$I.id) then
          perform app_private.fail('NOT_RESTORABLE', 'This %3$s is not deleted, or its retention window has passed.');
        end if;
        perform app_private.fail('NOT_FOUND', 'No such %3$s in this organization.');
      end if;
      return v_row;
    end
    $body$
  $f$, 'restore_' || singular, tbl, v_label);
  execute format('comment on function app_public.%I(uuid) is %L', 'restore_' || singular,
    format('Restores a deleted %s (admins and owners, within the retention window).', v_label));

  execute format($f$
    create or replace function app_public.%1$I() returns setof %2$s
    language plpgsql stable security definer
    set search_path = pg_catalog
    as $body$
    begin
      perform app_private.require_member_role('admin', 'list deleted records');
      return query
        select t.*
        from %2$s as t
        join app_public.organizations o on o.id = t.organization_id
        where t.organization_id = app_public.current_org_id()
          and t.deleted_at > now() - make_interval(days => o.retention_days)
        order by t.deleted_at desc, t.id;
    end
    $body$
  $f$, 'deleted_' || v_rel, tbl);
  execute format('comment on function app_public.%I() is %L', 'deleted_' || v_rel,
    format('Deleted %s rows that admins can still restore, most recent first.', v_rel));

  execute format('revoke all on function app_public.%I(uuid) from public', 'soft_delete_' || singular);
  execute format('revoke all on function app_public.%I(uuid) from public', 'restore_' || singular);
  execute format('revoke all on function app_public.%I() from public', 'deleted_' || v_rel);
  execute format('grant execute on function app_public.%I(uuid) to :DATABASE_VISITOR', 'soft_delete_' || singular);
  execute format('grant execute on function app_public.%I(uuid) to :DATABASE_VISITOR', 'restore_' || singular);
  execute format('grant execute on function app_public.%I() to :DATABASE_VISITOR', 'deleted_' || v_rel);
end
$$;

-- The whole recipe for an ordinary tenant table:
--   permission      its permission area: reading needs <area>.read, writing <area>.write
--   soft_delete_as  the singular name for soft_delete_<x>() / restore_<x>() (null: hard deletes)
--   secret_columns  never copied into activity_events
--   readonly_columns never written by the visitor (maintained by triggers or functions)
--   portal_read     a predicate (SQL over the table's columns) for the rows client-portal users
--                   of the organization may read; null: none
--   portal_insert   a predicate for the rows client-portal users may add; null: none
--   insertable      false: rows are only created by lifecycle functions (no INSERT for the visitor)
--   updatable       false: rows never change once written (no UPDATE or DELETE for the visitor)
create or replace procedure app_private.make_tenant_table(
  tbl regclass,
  permission text,
  soft_delete_as text default null,
  secret_columns text[] default '{}',
  readonly_columns text[] default '{}',
  portal_read text default null,
  portal_insert text default null,
  insertable boolean default true,
  updatable boolean default true
)
language plpgsql
set search_path = pg_catalog
as $$
begin
  call app_private.assert_tenant_shape(tbl);
  call app_private.force_rls(tbl);
  call app_private.create_tenant_policies(tbl, permission, soft_delete_as is not null, portal_read, portal_insert, insertable, updatable);
  call app_private.grant_tenant_access(tbl, soft_delete_as is not null, readonly_columns, insertable, updatable);
  call app_private.attach_updated_at(tbl);
  call app_private.attach_audit(tbl, 'organization_id', secret_columns);
  if soft_delete_as is not null then
    call app_private.attach_soft_delete(tbl, soft_delete_as, permission);
  end if;
end
$$;
--! EndIncluded functions/tenant_tables.sql

------------------------------------------------------------------------------------------------
-- Status types.

create type app_public.deal_stage as enum ('lead', 'qualified', 'proposal', 'negotiation', 'won', 'lost');
create type app_public.proposal_status as enum ('draft', 'sent', 'viewed', 'accepted', 'rejected', 'expired');
create type app_public.contract_status as enum ('draft', 'sent', 'signed', 'expired', 'cancelled');
create type app_public.engagement_status as enum ('active', 'on_hold', 'completed', 'cancelled');
create type app_public.project_status as enum ('planned', 'active', 'on_hold', 'completed', 'cancelled');
create type app_public.milestone_status as enum ('open', 'reached');
create type app_public.task_status as enum ('todo', 'in_progress', 'blocked', 'done', 'cancelled');
create type app_public.task_priority as enum ('low', 'normal', 'high', 'urgent');
create type app_public.thread_visibility as enum ('internal', 'client');
create type app_public.schedule_kind as enum ('fixed', 'milestone', 'recurring');
create type app_public.schedule_frequency as enum ('weekly', 'monthly', 'quarterly', 'yearly');
create type app_public.invoice_status as enum ('draft', 'sent', 'viewed', 'paid', 'overdue', 'cancelled');
create type app_public.payment_method as enum ('bank_transfer', 'card', 'cash', 'check', 'other');
create type app_public.bill_status as enum ('pending', 'approved', 'paid', 'rejected', 'cancelled');
create type app_public.portal_access_token as (access_id uuid, token text);
comment on type app_public.portal_access_token is 'New client-portal access and its secret token, shown only once.';

------------------------------------------------------------------------------------------------
-- CRM

create table app_public.contacts (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  client_company_id uuid not null,
  first_name text not null check (length(btrim(first_name)) between 1 and 100),
  last_name text check (length(last_name) <= 100),
  email text check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and email = lower(email)),
  phone text check (length(phone) <= 50),
  job_title text check (length(job_title) <= 100),
  is_primary boolean not null default false,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, client_company_id) references app_public.client_companies
);
create index contacts_organization_id_client_company_id_idx on app_public.contacts (organization_id, client_company_id);
create index contacts_organization_id_last_name_idx on app_public.contacts (organization_id, last_name, first_name);
create index contacts_organization_id_email_idx on app_public.contacts (organization_id, email);
comment on table app_public.contacts is E'@behavior -delete\nA person at a client company.';
comment on column app_public.contacts.email is 'Lower case. Needed for client-portal access (the portal user signs in with it).';

create table app_public.deals (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  client_company_id uuid not null,
  title text not null check (length(btrim(title)) between 1 and 200),
  stage app_public.deal_stage not null default 'lead',
  value numeric(14,2) not null default 0 check (value >= 0),
  probability integer not null default 10 check (probability between 0 and 100),
  expected_close_on date,
  owner_member_id uuid,
  closed_at timestamptz,
  lost_reason text check (length(lost_reason) <= 1000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, client_company_id) references app_public.client_companies,
  foreign key (organization_id, owner_member_id) references app_public.organization_members on delete set null (owner_member_id)
);
create index deals_organization_id_client_company_id_idx on app_public.deals (organization_id, client_company_id);
create index deals_organization_id_owner_member_id_idx on app_public.deals (organization_id, owner_member_id);
create index deals_organization_id_stage_idx on app_public.deals (organization_id, stage, expected_close_on);
create index deals_organization_id_expected_close_on_idx on app_public.deals (organization_id, expected_close_on);
comment on table app_public.deals is E'@behavior -delete\nAn opportunity in the sales pipeline: lead → qualified → proposal → negotiation → won or lost.';
comment on column app_public.deals.closed_at is 'When the deal was last won or lost (stamped).';

------------------------------------------------------------------------------------------------
-- Sales

create table app_public.proposals (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  client_company_id uuid not null,
  deal_id uuid,
  engagement_id uuid,
  title text not null check (length(btrim(title)) between 1 and 200),
  status app_public.proposal_status not null default 'draft',
  valid_until date,
  subtotal numeric(14,2) not null default 0 check (subtotal >= 0),
  tax_rate numeric(5,2) not null default 0 check (tax_rate between 0 and 100),
  tax_amount numeric(14,2) generated always as (round(subtotal * tax_rate / 100, 2)) stored,
  total numeric(14,2) generated always as (subtotal + round(subtotal * tax_rate / 100, 2)) stored,
  notes text check (length(notes) <= 10000),
  sent_at timestamptz,
  viewed_at timestamptz,
  accepted_at timestamptz,
  rejected_at timestamptz,
  expired_at timestamptz,
  decided_by_name text check (length(decided_by_name) <= 200),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, client_company_id) references app_public.client_companies,
  foreign key (organization_id, deal_id) references app_public.deals
);
create index proposals_organization_id_client_company_id_idx on app_public.proposals (organization_id, client_company_id);
create index proposals_organization_id_deal_id_idx on app_public.proposals (organization_id, deal_id);
create index proposals_organization_id_engagement_id_idx on app_public.proposals (organization_id, engagement_id);
create index proposals_organization_id_status_idx on app_public.proposals (organization_id, status, created_at);
comment on table app_public.proposals is E'@behavior -delete\nAn offer to a client: draft → sent → viewed → accepted, rejected or expired. Accepting it creates the contract (acceptProposal). A proposal within an engagement (a change order) shows in that engagement''s client portal once sent.';
comment on column app_public.proposals.subtotal is 'Sum of the line items (kept by trigger).';
comment on column app_public.proposals.decided_by_name is 'Who accepted or rejected it.';

create table app_public.proposal_line_items (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  proposal_id uuid not null,
  position integer not null default 0,
  description text not null check (length(btrim(description)) between 1 and 1000),
  quantity numeric(12,2) not null default 1 check (quantity > 0),
  unit_price numeric(14,2) not null check (unit_price >= 0),
  amount numeric(14,2) generated always as (round(quantity * unit_price, 2)) stored,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, proposal_id) references app_public.proposals on delete cascade
);
create index proposal_line_items_organization_id_proposal_id_idx on app_public.proposal_line_items (organization_id, proposal_id, position);
comment on table app_public.proposal_line_items is 'A line of a proposal: quantity × unit price. Only a draft proposal''s lines change.';

create table app_public.contracts (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  proposal_id uuid not null,
  client_company_id uuid not null,
  title text not null check (length(btrim(title)) between 1 and 200),
  status app_public.contract_status not null default 'draft',
  value numeric(14,2) not null check (value >= 0),
  starts_on date,
  ends_on date,
  terms text check (length(terms) <= 100000),
  signer_name text check (length(btrim(signer_name)) between 1 and 200),
  sent_at timestamptz,
  signed_at timestamptz,
  expired_at timestamptz,
  cancelled_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  unique (organization_id, proposal_id),
  check (ends_on >= starts_on),
  check ((status = 'signed') = (signed_at is not null and signer_name is not null)),
  foreign key (organization_id, proposal_id) references app_public.proposals,
  foreign key (organization_id, client_company_id) references app_public.client_companies
);
create index contracts_organization_id_client_company_id_idx on app_public.contracts (organization_id, client_company_id);
create index contracts_organization_id_status_idx on app_public.contracts (organization_id, status, created_at);
comment on table app_public.contracts is E'@behavior -delete\nThe agreement made from an accepted proposal: draft → sent → signed (signContract creates the engagement), expired or cancelled.';

------------------------------------------------------------------------------------------------
-- Delivery

create table app_public.engagements (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  contract_id uuid not null,
  client_company_id uuid not null,
  name text not null check (length(btrim(name)) between 1 and 200),
  status app_public.engagement_status not null default 'active',
  starts_on date not null default current_date,
  ends_on date,
  hourly_rate numeric(14,2) check (hourly_rate >= 0),
  budget numeric(14,2) check (budget >= 0),
  completed_at timestamptz,
  cancelled_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  unique (organization_id, contract_id),
  check (ends_on >= starts_on),
  foreign key (organization_id, contract_id) references app_public.contracts,
  foreign key (organization_id, client_company_id) references app_public.client_companies
);
create index engagements_organization_id_client_company_id_idx on app_public.engagements (organization_id, client_company_id, status);
create index engagements_organization_id_status_idx on app_public.engagements (organization_id, status);
comment on table app_public.engagements is E'@behavior -delete\nThe work for a client under a signed contract (created by signContract): active, on_hold, completed or cancelled.';
comment on column app_public.engagements.hourly_rate is 'The default rate of its time entries.';

alter table app_public.proposals
  add foreign key (organization_id, engagement_id) references app_public.engagements;

create table app_public.project_templates (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 200),
  description text check (length(description) <= 10000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create index project_templates_organization_id_name_idx on app_public.project_templates (organization_id, name);
comment on table app_public.project_templates is E'@behavior -delete\nA reusable project plan: milestones and tasks, copied by createProjectFromTemplate.';

create table app_public.project_template_milestones (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  template_id uuid not null,
  name text not null check (length(btrim(name)) between 1 and 200),
  position integer not null default 0,
  offset_days integer not null default 0 check (offset_days between 0 and 3650),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, template_id) references app_public.project_templates on delete cascade
);
create index project_template_milestones_organization_id_template_id_idx on app_public.project_template_milestones (organization_id, template_id, position);
comment on table app_public.project_template_milestones is 'A milestone of a project template, due `offset_days` after the project starts.';

create table app_public.project_template_tasks (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  template_id uuid not null,
  template_milestone_id uuid,
  title text not null check (length(btrim(title)) between 1 and 200),
  description text check (length(description) <= 10000),
  priority app_public.task_priority not null default 'normal',
  position integer not null default 0,
  offset_days integer not null default 0 check (offset_days between 0 and 3650),
  estimate_minutes integer check (estimate_minutes > 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, template_id) references app_public.project_templates on delete cascade,
  foreign key (organization_id, template_milestone_id) references app_public.project_template_milestones on delete set null (template_milestone_id)
);
create index project_template_tasks_organization_id_template_id_idx on app_public.project_template_tasks (organization_id, template_id, position);
create index project_template_tasks_organization_id_template_milestone_id_idx on app_public.project_template_tasks (organization_id, template_milestone_id);
comment on table app_public.project_template_tasks is 'A task of a project template, due `offset_days` after the project starts.';

create table app_public.projects (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  engagement_id uuid not null,
  template_id uuid,
  name text not null check (length(btrim(name)) between 1 and 200),
  description text check (length(description) <= 10000),
  status app_public.project_status not null default 'planned',
  starts_on date,
  due_on date,
  completed_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  check (due_on >= starts_on),
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, template_id) references app_public.project_templates
);
create index projects_organization_id_engagement_id_idx on app_public.projects (organization_id, engagement_id);
create index projects_organization_id_template_id_idx on app_public.projects (organization_id, template_id);
create index projects_organization_id_status_idx on app_public.projects (organization_id, status, due_on);
comment on table app_public.projects is E'@behavior -delete\nA project in an engagement: planned → active ⇄ on_hold → completed, or cancelled.';

create table app_public.milestones (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  project_id uuid not null,
  name text not null check (length(btrim(name)) between 1 and 200),
  status app_public.milestone_status not null default 'open',
  position integer not null default 0,
  due_on date,
  reached_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, project_id) references app_public.projects on delete cascade
);
create index milestones_organization_id_project_id_idx on app_public.milestones (organization_id, project_id, position);
create index milestones_organization_id_due_on_idx on app_public.milestones (organization_id, due_on);
comment on table app_public.milestones is 'A checkpoint of a project (open or reached); milestone invoice schedules bill on it.';

create table app_public.tasks (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  project_id uuid not null,
  milestone_id uuid,
  title text not null check (length(btrim(title)) between 1 and 200),
  description text check (length(description) <= 10000),
  status app_public.task_status not null default 'todo',
  priority app_public.task_priority not null default 'normal',
  assignee_member_id uuid,
  due_on date,
  position integer not null default 0,
  estimate_minutes integer check (estimate_minutes > 0),
  completed_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, project_id) references app_public.projects,
  foreign key (organization_id, milestone_id) references app_public.milestones on delete set null (milestone_id),
  foreign key (organization_id, assignee_member_id) references app_public.organization_members on delete set null (assignee_member_id)
);
create index tasks_organization_id_project_id_idx on app_public.tasks (organization_id, project_id, position);
create index tasks_organization_id_milestone_id_idx on app_public.tasks (organization_id, milestone_id);
create index tasks_organization_id_assignee_member_id_idx on app_public.tasks (organization_id, assignee_member_id, status);
create index tasks_organization_id_due_on_idx on app_public.tasks (organization_id, due_on);
comment on table app_public.tasks is E'@behavior -delete\nA piece of work in a project: todo, in_progress, blocked, done or cancelled; ordered by position.';

create table app_public.time_entries (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  engagement_id uuid not null,
  task_id uuid,
  member_id uuid not null,
  work_date date not null default current_date,
  minutes integer not null check (minutes between 1 and 1440),
  billable boolean not null default true,
  rate numeric(14,2) not null default 0 check (rate >= 0),
  amount numeric(14,2) generated always as (round(minutes * rate / 60, 2)) stored,
  description text check (length(description) <= 2000),
  invoice_id uuid,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, task_id) references app_public.tasks,
  foreign key (organization_id, member_id) references app_public.organization_members
);
create index time_entries_organization_id_engagement_id_idx on app_public.time_entries (organization_id, engagement_id, work_date);
create index time_entries_organization_id_task_id_idx on app_public.time_entries (organization_id, task_id);
create index time_entries_organization_id_member_id_idx on app_public.time_entries (organization_id, member_id, work_date);
create index time_entries_organization_id_invoice_id_idx on app_public.time_entries (organization_id, invoice_id);
comment on table app_public.time_entries is E'@behavior -delete\nTime a member spent on an engagement (optionally a task): minutes × hourly rate. Billable, uninvoiced time goes on an invoice with createInvoiceFromTime; invoiced time no longer changes.';
comment on column app_public.time_entries.rate is 'Hourly rate; when left at 0 on insert, the engagement''s hourly_rate.';

------------------------------------------------------------------------------------------------
-- Communication

create table app_public.threads (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  engagement_id uuid not null,
  subject text not null check (length(btrim(subject)) between 1 and 200),
  visibility app_public.thread_visibility not null default 'internal',
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, engagement_id) references app_public.engagements
);
create index threads_organization_id_engagement_id_idx on app_public.threads (organization_id, engagement_id, visibility);
comment on table app_public.threads is E'@behavior -delete\nA conversation about an engagement: internal (the team) or client (also its client-portal users).';

create table app_public.messages (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  thread_id uuid not null,
  body text not null check (length(btrim(body)) between 1 and 20000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, thread_id) references app_public.threads
);
create index messages_organization_id_thread_id_idx on app_public.messages (organization_id, thread_id, created_at);
comment on table app_public.messages is E'@behavior -delete\nA message in a thread. Client-portal users read and post in their engagement''s client threads.';
comment on column app_public.messages.created_by is 'The author.';

------------------------------------------------------------------------------------------------
-- Billing

create table app_public.invoice_schedules (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  engagement_id uuid not null,
  kind app_public.schedule_kind not null,
  description text not null check (length(btrim(description)) between 1 and 1000),
  amount numeric(14,2) not null check (amount > 0),
  frequency app_public.schedule_frequency,
  next_run_on date,
  ends_on date,
  milestone_id uuid,
  active boolean not null default true,
  last_invoiced_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  check ((kind = 'recurring') = (frequency is not null)),
  check ((kind = 'milestone') = (milestone_id is not null)),
  check (kind = 'milestone' or next_run_on is not null),
  check (ends_on >= next_run_on),
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, milestone_id) references app_public.milestones
);
create index invoice_schedules_organization_id_engagement_id_idx on app_public.invoice_schedules (organization_id, engagement_id);
create index invoice_schedules_organization_id_milestone_id_idx on app_public.invoice_schedules (organization_id, milestone_id);
create index invoice_schedules_next_run_on_idx on app_public.invoice_schedules (next_run_on) where active and deleted_at is null;
comment on table app_public.invoice_schedules is E'@behavior -delete\nWhen to bill an engagement: once on a date (fixed), when a milestone is reached (milestone), or every week/month/quarter/year from next_run_on (recurring).';

create table app_public.invoices (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  client_company_id uuid not null,
  engagement_id uuid,
  schedule_id uuid,
  number integer check (number > 0),
  status app_public.invoice_status not null default 'draft',
  issued_on date,
  due_on date,
  subtotal numeric(14,2) not null default 0 check (subtotal >= 0),
  tax_rate numeric(5,2) not null default 0 check (tax_rate between 0 and 100),
  tax_amount numeric(14,2) generated always as (round(subtotal * tax_rate / 100, 2)) stored,
  total numeric(14,2) generated always as (subtotal + round(subtotal * tax_rate / 100, 2)) stored,
  amount_paid numeric(14,2) not null default 0 check (amount_paid >= 0),
  balance numeric(14,2) generated always as (subtotal + round(subtotal * tax_rate / 100, 2) - amount_paid) stored,
  notes text check (length(notes) <= 10000),
  sent_at timestamptz,
  viewed_at timestamptz,
  paid_at timestamptz,
  overdue_at timestamptz,
  cancelled_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  unique (organization_id, number),
  check (due_on >= issued_on),
  check (amount_paid <= subtotal + round(subtotal * tax_rate / 100, 2)),
  check (number is null or status <> 'draft'),
  check (number is not null or status in ('draft', 'cancelled')),
  foreign key (organization_id, client_company_id) references app_public.client_companies,
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, schedule_id) references app_public.invoice_schedules
);
create index invoices_organization_id_client_company_id_idx on app_public.invoices (organization_id, client_company_id);
create index invoices_organization_id_engagement_id_idx on app_public.invoices (organization_id, engagement_id);
create index invoices_organization_id_schedule_id_idx on app_public.invoices (organization_id, schedule_id);
create index invoices_organization_id_status_due_on_idx on app_public.invoices (organization_id, status, due_on);
create index invoices_organization_id_issued_on_idx on app_public.invoices (organization_id, issued_on);
comment on table app_public.invoices is E'@behavior -delete\nA bill to a client: draft → sent (sendInvoice numbers it) → viewed → paid, overdue or cancelled. Totals, amount paid and balance are derived, never typed in.';
comment on column app_public.invoices.number is 'Allocated when sent: 1, 2, 3, ... per organization, without gaps or duplicates.';
comment on column app_public.invoices.amount_paid is 'Sum of its payments (kept by trigger).';

alter table app_public.time_entries
  add foreign key (organization_id, invoice_id) references app_public.invoices on delete set null (invoice_id);

-- The last invoice number of each organization. sendInvoice takes the next one under this row's
-- lock, inside its transaction: concurrent senders wait for each other, and a rolled-back send
-- gives its number back, so numbers have neither gaps nor duplicates.
create table app_private.invoice_counters (
  organization_id uuid primary key references app_public.organizations on delete cascade,
  last_number integer not null check (last_number >= 0)
);
call app_private.force_rls('app_private.invoice_counters');
comment on table app_private.invoice_counters is 'Last invoice number per organization (app_private.next_invoice_number).';

create table app_public.invoice_line_items (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  invoice_id uuid not null,
  position integer not null default 0,
  description text not null check (length(btrim(description)) between 1 and 1000),
  quantity numeric(12,2) not null default 1 check (quantity > 0),
  unit_price numeric(14,2) not null check (unit_price >= 0),
  amount numeric(14,2) generated always as (round(quantity * unit_price, 2)) stored,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, invoice_id) references app_public.invoices on delete cascade
);
create index invoice_line_items_organization_id_invoice_id_idx on app_public.invoice_line_items (organization_id, invoice_id, position);
comment on table app_public.invoice_line_items is 'A line of an invoice: quantity × unit price. Only a draft invoice''s lines change.';

create table app_public.payments (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  invoice_id uuid not null,
  amount numeric(14,2) not null check (amount > 0),
  received_on date not null default current_date,
  method app_public.payment_method not null default 'bank_transfer',
  reference text check (length(reference) <= 200),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, invoice_id) references app_public.invoices
);
create index payments_organization_id_invoice_id_idx on app_public.payments (organization_id, invoice_id);
create index payments_organization_id_received_on_idx on app_public.payments (organization_id, received_on);
comment on table app_public.payments is E'@behavior -update -delete\nMoney received for an invoice (recordPayment). Partial payments add up; more than the balance is refused (OVERPAYMENT); the payment that clears the balance marks the invoice paid. A ledger: payments never change.';

------------------------------------------------------------------------------------------------
-- Payables

create table app_public.vendors (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 200),
  email text check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  phone text check (length(phone) <= 50),
  tax_id text check (length(tax_id) <= 50),
  notes text check (length(notes) <= 10000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create index vendors_organization_id_name_idx on app_public.vendors (organization_id, name);
comment on table app_public.vendors is E'@behavior -delete\nA supplier the firm pays (freelancers, software, subcontractors).';

create table app_public.bills (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  vendor_id uuid not null,
  engagement_id uuid,
  reference text check (length(reference) <= 100),
  description text check (length(description) <= 2000),
  amount numeric(14,2) not null check (amount > 0),
  issued_on date not null default current_date,
  due_on date,
  status app_public.bill_status not null default 'pending',
  approved_by uuid,
  approved_at timestamptz,
  rejected_at timestamptz,
  paid_at timestamptz,
  cancelled_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  check (due_on >= issued_on),
  check (status not in ('approved', 'paid') or approved_by is not null),
  foreign key (organization_id, vendor_id) references app_public.vendors,
  foreign key (organization_id, engagement_id) references app_public.engagements
);
create index bills_organization_id_vendor_id_idx on app_public.bills (organization_id, vendor_id);
create index bills_organization_id_engagement_id_idx on app_public.bills (organization_id, engagement_id);
create index bills_organization_id_status_due_on_idx on app_public.bills (organization_id, status, due_on);
comment on table app_public.bills is E'@behavior -delete\nA vendor''s bill: pending → approved (owners and admins: approveBill) → paid, or rejected or cancelled.';
comment on column app_public.bills.approved_by is 'The owner or admin who approved it (no foreign key: audit columns outlive what they name).';

------------------------------------------------------------------------------------------------
-- Files

create table app_public.file_objects (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  engagement_id uuid,
  name text not null check (length(btrim(name)) between 1 and 255),
  content_type text not null default 'application/octet-stream' check (content_type ~ '^[a-z0-9.+-]+/[a-zA-Z0-9.+-]+$'),
  size_bytes bigint not null check (size_bytes >= 0),
  storage_key text not null check (length(storage_key) between 1 and 1024),
  client_visible boolean not null default false,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  unique (organization_id, storage_key),
  foreign key (organization_id, engagement_id) references app_public.engagements
);
create index file_objects_organization_id_engagement_id_idx on app_public.file_objects (organization_id, engagement_id, created_at);
comment on table app_public.file_objects is E'@behavior -delete\nA file''s metadata (its bytes live in object storage under storage_key). Client-visible files of an engagement show in its client portal.';
comment on column app_public.file_objects.created_by is 'Who uploaded it.';

------------------------------------------------------------------------------------------------
-- Client portal

create table app_public.client_portal_access (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  contact_id uuid not null,
  engagement_id uuid not null,
  user_id uuid references app_public.users on delete cascade,
  granted_by uuid,
  accepted_at timestamptz,
  revoked_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  check ((user_id is null) = (accepted_at is null)),
  foreign key (organization_id, contact_id) references app_public.contacts,
  foreign key (organization_id, engagement_id) references app_public.engagements
);
create unique index client_portal_access_live_key on app_public.client_portal_access (organization_id, contact_id, engagement_id) where revoked_at is null;
create index client_portal_access_organization_id_engagement_id_idx on app_public.client_portal_access (organization_id, engagement_id);
create index client_portal_access_organization_id_user_id_idx on app_public.client_portal_access (organization_id, user_id);
comment on table app_public.client_portal_access is E'@behavior -insert -update -delete\nA client contact''s access to one engagement in the client portal (grantPortalAccess, acceptPortalAccess, revokePortalAccess).';

create table app_private.portal_access_secrets (
  organization_id uuid not null,
  access_id uuid not null,
  token_hash bytea not null unique,
  primary key (organization_id, access_id),
  foreign key (organization_id, access_id) references app_public.client_portal_access on delete cascade
);
call app_private.force_rls('app_private.portal_access_secrets');
comment on table app_private.portal_access_secrets is 'The hashed token of each client-portal access, until accepted.';

--! Included functions/portal.sql
-- The client portal: a client's contact, given access to one engagement, signs in with their own
-- account and sees that engagement's client-visible threads, messages and files and its sent
-- invoices, posts messages and accepts proposals. All of it is row-level security: the portal
-- branches of the policies (portal_read in make_tenant_table) call these helpers.
--
-- Access is granted per contact and engagement (grantPortalAccess, by holders of portal.write),
-- with a token shown once; the contact accepts it signed in with the contact's email address.

-- The organization of the request (app.org_id) if the signed-in user holds live portal access
-- in it; null otherwise.
create or replace function app_public.current_portal_org_id() returns uuid
language sql stable security definer
set search_path = pg_catalog
as $$
  select a.organization_id
  from app_public.client_portal_access a
  where a.organization_id = app_private.setting_uuid('app.org_id')
    and a.user_id = app_public.current_user_id()
    and a.accepted_at is not null and a.revoked_at is null
  limit 1
$$;
comment on function app_public.current_portal_org_id() is 'The organization you are in as a client-portal user, or null.';

-- The engagements the signed-in portal user may see in the request's organization.
create or replace function app_public.current_portal_engagement_ids() returns uuid[]
language sql stable security definer
set search_path = pg_catalog
as $$
  select coalesce(array_agg(a.engagement_id order by a.engagement_id), '{}')
  from app_public.client_portal_access a
  where a.organization_id = app_private.setting_uuid('app.org_id')
    and a.user_id = app_public.current_user_id()
    and a.accepted_at is not null and a.revoked_at is null
$$;
comment on function app_public.current_portal_engagement_ids() is 'The engagements you see as a client-portal user in the current organization.';

-- May this user enter this organization (a session scoped to it)? Members and portal users may.
create or replace function app_private.can_enter_organization(user_id uuid, organization_id uuid) returns boolean
language sql stable security definer
set search_path = pg_catalog
as $$
  select exists (
    select 1 from app_public.organization_members m
    where m.organization_id = can_enter_organization.organization_id and m.user_id = can_enter_organization.user_id
  ) or exists (
    select 1 from app_public.client_portal_access a
    where a.organization_id = can_enter_organization.organization_id and a.user_id = can_enter_organization.user_id
      and a.accepted_at is not null and a.revoked_at is null
  )
$$;

-- Give a contact portal access to an engagement of the same client. Returns the token once.
create or replace function app_public.grant_portal_access(contact_id uuid, engagement_id uuid) returns app_public.portal_access_token
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_contact app_public.contacts;
  v_token text := app_private.random_token();
  v_access app_public.client_portal_access;
begin
  perform app_private.require_permission('portal.write', 'give portal access');
  select c.* into v_contact from app_public.contacts c
  where c.organization_id = v_org and c.id = grant_portal_access.contact_id and c.deleted_at is null;
  if v_contact.id is null then
    perform app_private.fail('NOT_FOUND', 'No such contact in this organization.');
  end if;
  if v_contact.email is null then
    perform app_private.fail('INVALID_VALUE', 'The contact needs an email address to use the client portal.');
  end if;
  if not exists (
    select 1 from app_public.engagements e
    where e.organization_id = v_org and e.id = grant_portal_access.engagement_id
      and e.client_company_id = v_contact.client_company_id and e.deleted_at is null
  ) then
    perform app_private.fail('NOT_FOUND', 'No such engagement with this contact''s client.');
  end if;
  update app_public.client_portal_access a set revoked_at = now()
  where a.organization_id = v_org and a.contact_id = v_contact.id and a.engagement_id = grant_portal_access.engagement_id
    and a.revoked_at is null;
  insert into app_public.client_portal_access (organization_id, contact_id, engagement_id, granted_by)
  values (v_org, v_contact.id, grant_portal_access.engagement_id, app_public.current_user_id())
  returning * into v_access;
  insert into app_private.portal_access_secrets (organization_id, access_id, token_hash)
  values (v_org, v_access.id, app_private.hash_token(v_token));
  return row(v_access.id, v_token)::app_public.portal_access_token;
end
$$;
comment on function app_public.grant_portal_access(uuid, uuid) is 'Gives a client contact access to one engagement in the client portal (holders of portal.write). Returns a token, shown once, for the contact to accept.';

-- Accept portal access: the signed-in user's email must be the contact's.
create or replace function app_public.accept_portal_access(token text) returns app_public.client_portal_access
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user_id uuid := app_public.current_user_id();
  v_access app_public.client_portal_access;
begin
  if v_user_id is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in (or sign up with your email address) to open the client portal.');
  end if;
  select a.* into v_access
  from app_private.portal_access_secrets s
  join app_public.client_portal_access a on a.organization_id = s.organization_id and a.id = s.access_id
  join app_public.contacts c on c.organization_id = a.organization_id and c.id = a.contact_id
  join app_public.users u on u.id = v_user_id
  where s.token_hash = app_private.hash_token(accept_portal_access.token)
    and a.accepted_at is null and a.revoked_at is null
    and lower(c.email) = u.email
  for update of a;
  if v_access.id is null then
    perform app_private.fail('INVITATION_INVALID', 'This portal invitation is unknown, already used, revoked, or for another email address.');
  end if;
  update app_public.client_portal_access a set user_id = v_user_id, accepted_at = now()
  where a.organization_id = v_access.organization_id and a.id = v_access.id
  returning * into v_access;
  return v_access;
end
$$;
comment on function app_public.accept_portal_access(text) is 'Opens the client portal for you with a portal access token. Then call switchOrganization with its organizationId.';

-- Revoke portal access (holders of portal.write); the portal user loses the engagement at once.
create or replace function app_public.revoke_portal_access(access_id uuid) returns app_public.client_portal_access
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_access app_public.client_portal_access;
begin
  perform app_private.require_permission('portal.write', 'revoke portal access');
  update app_public.client_portal_access a set revoked_at = coalesce(a.revoked_at, now())
  where a.organization_id = app_public.current_org_id() and a.id = revoke_portal_access.access_id
  returning * into v_access;
  if v_access.id is null then
    perform app_private.fail('NOT_FOUND', 'No such portal access in this organization.');
  end if;
  return v_access;
end
$$;
comment on function app_public.revoke_portal_access(uuid) is 'Ends a client contact''s portal access (holders of portal.write).';
--! EndIncluded functions/portal.sql

------------------------------------------------------------------------------------------------
-- Allowed status changes (from *new*: the statuses a row may be created in).

insert into app_private.status_transitions (table_name, from_status, to_status, stamp_column) values
  ('deals', '*new*', 'lead', null), ('deals', '*new*', 'qualified', null),
  ('deals', '*new*', 'proposal', null), ('deals', '*new*', 'negotiation', null),
  ('deals', 'lead', 'qualified', null), ('deals', 'qualified', 'lead', null),
  ('deals', 'qualified', 'proposal', null), ('deals', 'proposal', 'qualified', null),
  ('deals', 'proposal', 'negotiation', null), ('deals', 'negotiation', 'proposal', null),
  ('deals', 'qualified', 'won', 'closed_at'), ('deals', 'proposal', 'won', 'closed_at'), ('deals', 'negotiation', 'won', 'closed_at'),
  ('deals', 'lead', 'lost', 'closed_at'), ('deals', 'qualified', 'lost', 'closed_at'),
  ('deals', 'proposal', 'lost', 'closed_at'), ('deals', 'negotiation', 'lost', 'closed_at'),
  ('deals', 'lost', 'lead', null),

  ('proposals', '*new*', 'draft', null),
  ('proposals', 'draft', 'sent', 'sent_at'),
  ('proposals', 'sent', 'viewed', 'viewed_at'),
  ('proposals', 'sent', 'accepted', 'accepted_at'), ('proposals', 'viewed', 'accepted', 'accepted_at'),
  ('proposals', 'sent', 'rejected', 'rejected_at'), ('proposals', 'viewed', 'rejected', 'rejected_at'),
  ('proposals', 'sent', 'expired', 'expired_at'), ('proposals', 'viewed', 'expired', 'expired_at'),

  ('contracts', '*new*', 'draft', null),
  ('contracts', 'draft', 'sent', 'sent_at'),
  ('contracts', 'sent', 'signed', 'signed_at'),
  ('contracts', 'sent', 'expired', 'expired_at'),
  ('contracts', 'draft', 'cancelled', 'cancelled_at'), ('contracts', 'sent', 'cancelled', 'cancelled_at'),

  ('engagements', '*new*', 'active', null),
  ('engagements', 'active', 'on_hold', null), ('engagements', 'on_hold', 'active', null),
  ('engagements', 'active', 'completed', 'completed_at'), ('engagements', 'on_hold', 'completed', 'completed_at'),
  ('engagements', 'active', 'cancelled', 'cancelled_at'), ('engagements', 'on_hold', 'cancelled', 'cancelled_at'),

  ('projects', '*new*', 'planned', null), ('projects', '*new*', 'active', null),
  ('projects', 'planned', 'active', null),
  ('projects', 'active', 'on_hold', null), ('projects', 'on_hold', 'active', null),
  ('projects', 'active', 'completed', 'completed_at'),
  ('projects', 'planned', 'cancelled', null), ('projects', 'active', 'cancelled', null), ('projects', 'on_hold', 'cancelled', null),

  ('milestones', '*new*', 'open', null),
  ('milestones', 'open', 'reached', 'reached_at'), ('milestones', 'reached', 'open', null),

  ('tasks', '*new*', 'todo', null), ('tasks', '*new*', 'in_progress', null), ('tasks', '*new*', 'blocked', null),
  ('tasks', 'todo', 'in_progress', null), ('tasks', 'todo', 'blocked', null),
  ('tasks', 'todo', 'done', 'completed_at'), ('tasks', 'todo', 'cancelled', null),
  ('tasks', 'in_progress', 'todo', null), ('tasks', 'in_progress', 'blocked', null),
  ('tasks', 'in_progress', 'done', 'completed_at'), ('tasks', 'in_progress', 'cancelled', null),
  ('tasks', 'blocked', 'todo', null), ('tasks', 'blocked', 'in_progress', null), ('tasks', 'blocked', 'cancelled', null),
  ('tasks', 'done', 'in_progress', null), ('tasks', 'done', 'todo', null),
  ('tasks', 'cancelled', 'todo', null),

  ('invoices', '*new*', 'draft', null),
  ('invoices', 'draft', 'sent', 'sent_at'),
  ('invoices', 'sent', 'viewed', 'viewed_at'),
  ('invoices', 'sent', 'overdue', 'overdue_at'), ('invoices', 'viewed', 'overdue', 'overdue_at'),
  ('invoices', 'sent', 'paid', 'paid_at'), ('invoices', 'viewed', 'paid', 'paid_at'), ('invoices', 'overdue', 'paid', 'paid_at'),
  ('invoices', 'draft', 'cancelled', 'cancelled_at'), ('invoices', 'sent', 'cancelled', 'cancelled_at'),
  ('invoices', 'viewed', 'cancelled', 'cancelled_at'), ('invoices', 'overdue', 'cancelled', 'cancelled_at'),

  ('bills', '*new*', 'pending', null),
  ('bills', 'pending', 'approved', 'approved_at'),
  ('bills', 'pending', 'rejected', 'rejected_at'),
  ('bills', 'approved', 'paid', 'paid_at'),
  ('bills', 'pending', 'cancelled', 'cancelled_at'), ('bills', 'approved', 'cancelled', 'cancelled_at');

------------------------------------------------------------------------------------------------
-- Every table under the tenant recipe (policies, grants, updated_at, audit, soft delete).

-- client_companies moves from "members write" to the clients permission area.
call app_private.make_tenant_table('app_public.client_companies', 'clients', soft_delete_as => 'client_company');
call app_private.make_tenant_table('app_public.contacts', 'clients', soft_delete_as => 'contact');
call app_private.make_tenant_table('app_public.deals', 'deals', soft_delete_as => 'deal', readonly_columns => '{closed_at}');

call app_private.make_tenant_table('app_public.proposals', 'proposals', soft_delete_as => 'proposal',
  readonly_columns => '{status,subtotal,sent_at,viewed_at,accepted_at,rejected_at,expired_at,decided_by_name}',
  portal_read => $p$status <> 'draft' and engagement_id = any ((select app_public.current_portal_engagement_ids())::uuid[])$p$);
call app_private.make_tenant_table('app_public.proposal_line_items', 'proposals',
  portal_read => $p$exists (select from app_public.proposals p where p.organization_id = proposal_line_items.organization_id and p.id = proposal_line_items.proposal_id)$p$);
call app_private.make_tenant_table('app_public.contracts', 'contracts', soft_delete_as => 'contract', insertable => false,
  readonly_columns => '{proposal_id,client_company_id,status,value,signer_name,sent_at,signed_at,expired_at,cancelled_at}');

call app_private.make_tenant_table('app_public.engagements', 'engagements', soft_delete_as => 'engagement', insertable => false,
  readonly_columns => '{contract_id,client_company_id,completed_at,cancelled_at}',
  portal_read => $p$id = any ((select app_public.current_portal_engagement_ids())::uuid[])$p$);
call app_private.make_tenant_table('app_public.project_templates', 'projects', soft_delete_as => 'project_template');
call app_private.make_tenant_table('app_public.project_template_milestones', 'projects');
call app_private.make_tenant_table('app_public.project_template_tasks', 'projects');
call app_private.make_tenant_table('app_public.projects', 'projects', soft_delete_as => 'project', readonly_columns => '{template_id,completed_at}');
call app_private.make_tenant_table('app_public.milestones', 'projects', readonly_columns => '{reached_at}');
call app_private.make_tenant_table('app_public.tasks', 'projects', soft_delete_as => 'task', readonly_columns => '{completed_at}');
call app_private.make_tenant_table('app_public.time_entries', 'time', soft_delete_as => 'time_entry', readonly_columns => '{invoice_id}');

call app_private.make_tenant_table('app_public.threads', 'messages', soft_delete_as => 'thread',
  portal_read => $p$visibility = 'client' and engagement_id = any ((select app_public.current_portal_engagement_ids())::uuid[])$p$);
call app_private.make_tenant_table('app_public.messages', 'messages', soft_delete_as => 'message',
  portal_read => $p$exists (select from app_public.threads t where t.organization_id = messages.organization_id and t.id = messages.thread_id)$p$,
  portal_insert => $p$created_by = (select app_public.current_user_id()) and exists (select from app_public.threads t where t.organization_id = messages.organization_id and t.id = messages.thread_id)$p$);
-- Client-portal users post too: their messages belong to the organization of their portal.
alter table app_public.messages alter column organization_id
  set default coalesce(app_public.current_org_id(), app_public.current_portal_org_id());

call app_private.make_tenant_table('app_public.invoice_schedules', 'invoices', soft_delete_as => 'invoice_schedule', readonly_columns => '{last_invoiced_at}');
call app_private.make_tenant_table('app_public.invoices', 'invoices', soft_delete_as => 'invoice',
  readonly_columns => '{schedule_id,number,status,subtotal,amount_paid,sent_at,viewed_at,paid_at,overdue_at,cancelled_at}',
  portal_read => $p$status in ('sent', 'viewed', 'paid', 'overdue') and engagement_id = any ((select app_public.current_portal_engagement_ids())::uuid[])$p$);
call app_private.make_tenant_table('app_public.invoice_line_items', 'invoices',
  portal_read => $p$exists (select from app_public.invoices i where i.organization_id = invoice_line_items.organization_id and i.id = invoice_line_items.invoice_id)$p$);
call app_private.make_tenant_table('app_public.payments', 'invoices', updatable => false,
  portal_read => $p$exists (select from app_public.invoices i where i.organization_id = payments.organization_id and i.id = payments.invoice_id)$p$);

call app_private.make_tenant_table('app_public.vendors', 'vendors', soft_delete_as => 'vendor');
call app_private.make_tenant_table('app_public.bills', 'bills', soft_delete_as => 'bill',
  readonly_columns => '{status,approved_by,approved_at,rejected_at,paid_at,cancelled_at}');

call app_private.make_tenant_table('app_public.file_objects', 'files', soft_delete_as => 'file_object',
  portal_read => $p$client_visible and engagement_id = any ((select app_public.current_portal_engagement_ids())::uuid[])$p$);

call app_private.make_tenant_table('app_public.client_portal_access', 'portal', insertable => false, updatable => false,
  portal_read => $p$user_id = (select app_public.current_user_id())$p$);

call app_private.make_tenant_table('app_public.roles', 'roles', soft_delete_as => 'role');
call app_private.make_tenant_table('app_public.role_permissions', 'roles');
call app_private.make_tenant_table('app_public.role_assignments', 'roles');

-- Status machines, then edit locks (after the grants they read).
call app_private.attach_status_machine('app_public.deals', 'stage');
call app_private.attach_status_machine('app_public.proposals');
call app_private.attach_status_machine('app_public.contracts');
call app_private.attach_status_machine('app_public.engagements');
call app_private.attach_status_machine('app_public.projects');
call app_private.attach_status_machine('app_public.milestones');
call app_private.attach_status_machine('app_public.tasks');
call app_private.attach_status_machine('app_public.invoices');
call app_private.attach_status_machine('app_public.bills');

call app_private.attach_edit_lock('app_public.proposals', '{draft}');
call app_private.attach_edit_lock('app_public.contracts', '{draft}');
call app_private.attach_edit_lock('app_public.invoices', '{draft}', also_locked => '{deleted_at}');
call app_private.attach_edit_lock('app_public.bills', '{pending}');

call app_private.attach_line_item_totals('app_public.proposal_line_items', 'app_public.proposals', 'proposal_id');
call app_private.attach_line_item_totals('app_public.invoice_line_items', 'app_public.invoices', 'invoice_id');

--! Included functions/crm.sql
-- CRM rules.

-- A client company with live (active or on-hold) engagements cannot be deleted: the work and the
-- money attached to it would vanish from every read. HAS_LIVE_ENGAGEMENTS says what to do.
-- BEFORE UPDATE OF deleted_at (soft_delete_client_company sets it); SECURITY DEFINER to see
-- every engagement, including those the caller may not read.
create or replace function app_private.tg__client_company_delete_guard() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_live integer;
begin
  if old.deleted_at is null and new.deleted_at is not null then
    select count(*) into v_live
    from app_public.engagements e
    where e.organization_id = new.organization_id and e.client_company_id = new.id
      and e.deleted_at is null and e.status in ('active', 'on_hold');
    if v_live > 0 then
      perform app_private.fail('HAS_LIVE_ENGAGEMENTS', format(
        '%s has %s active or on-hold engagement(s); complete or cancel them before deleting the client.', new.name, v_live));
    end if;
  end if;
  return new;
end
$$;

drop trigger if exists tg_client_companies__delete_guard on app_public.client_companies;
create trigger tg_client_companies__delete_guard before update of deleted_at on app_public.client_companies
  for each row execute function app_private.tg__client_company_delete_guard();
--! EndIncluded functions/crm.sql
--! Included functions/sales.sql
-- Sales lifecycle: proposals and contracts. Each step is one function (a GraphQL mutation),
-- SECURITY DEFINER so it can write the columns the visitor may not (status, stamps) — which is
-- why each one checks the organization and the permission itself first. Status changes still
-- pass through the status machine (INVALID_TRANSITION) and the edit locks.

-- The organization of the request, for steps members and client-portal users both take.
create or replace function app_private.acting_org_id() returns uuid
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(app_public.current_org_id(), app_public.current_portal_org_id())
$$;

-- May the caller act on a proposal (or invoice) of `engagement_id` as a client? True for a
-- portal user of that engagement, in the organization of the request.
create or replace function app_private.is_portal_user_of(engagement_id uuid) returns boolean
language sql stable
set search_path = pg_catalog
as $$
  select app_public.current_org_id() is null
    and app_public.current_portal_org_id() is not null
    and is_portal_user_of.engagement_id = any (app_public.current_portal_engagement_ids())
$$;

-- Send a draft proposal to the client (proposals.write). It needs lines and a total above zero.
create or replace function app_public.send_proposal(proposal_id uuid) returns app_public.proposals
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
begin
  perform app_private.require_permission('proposals.write', 'send a proposal');
  select p.* into v from app_public.proposals p
  where p.organization_id = app_public.current_org_id() and p.id = send_proposal.proposal_id and p.deleted_at is null
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such proposal in this organization.');
  end if;
  if v.status = 'draft' and v.total <= 0 then
    perform app_private.fail('EMPTY_DOCUMENT', 'Add at least one line with a price before sending the proposal.');
  end if;
  update app_public.proposals p set status = 'sent'
  where p.organization_id = v.organization_id and p.id = v.id
  returning p.* into v;
  return v;
end
$$;
comment on function app_public.send_proposal(uuid) is 'Sends a draft proposal (it must have a total above zero); stamps sent_at. Its lines are frozen from now on.';

-- Record that the client opened a sent proposal (its portal user, or a member with proposals.write).
create or replace function app_public.mark_proposal_viewed(proposal_id uuid) returns app_public.proposals
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
begin
  select p.* into v from app_public.proposals p
  where p.organization_id = app_private.acting_org_id() and p.id = mark_proposal_viewed.proposal_id and p.deleted_at is null
    and (app_public.has_permission('proposals.write') or (p.status <> 'draft' and app_private.is_portal_user_of(p.engagement_id)))
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such proposal for you.');
  end if;
  if v.status in ('draft', 'sent') then -- a draft is refused by the status machine
    update app_public.proposals p set status = 'viewed'
    where p.organization_id = v.organization_id and p.id = v.id
    returning p.* into v;
  end if;
  return v;
end
$$;
comment on function app_public.mark_proposal_viewed(uuid) is 'Records that the client has seen a sent proposal (stamps viewed_at once; later calls change nothing).';

-- The decision on a sent or viewed proposal, by its client (portal) or a member recording it.
create or replace function app_private.decide_proposal(proposal_id uuid, decision app_public.proposal_status, decided_by_name text) returns app_public.proposals
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
  v_action text := case decision when 'accepted' then 'accept a proposal' else 'reject a proposal' end;
begin
  if app_public.current_user_id() is null then
    perform app_private.fail('UNAUTHENTICATED', format('Sign in to %s.', v_action));
  end if;
  select p.* into v from app_public.proposals p
  where p.organization_id = app_private.acting_org_id() and p.id = decide_proposal.proposal_id and p.deleted_at is null
    and (app_public.has_permission('proposals.read') or (p.status <> 'draft' and app_private.is_portal_user_of(p.engagement_id)))
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such proposal for you.');
  end if;
  if not (app_public.has_permission('proposals.write') or app_private.is_portal_user_of(v.engagement_id)) then
    perform app_private.fail('NOT_PERMITTED', format('You need the proposals.write permission to %s.', v_action));
  end if;
  if v.status not in ('sent', 'viewed') then
    perform app_private.fail('INVALID_TRANSITION', format('A proposal cannot go from %s to %s.', v.status, decision));
  end if;
  if decision = 'accepted' and v.valid_until < current_date then
    perform app_private.fail('EXPIRED', format('This proposal was valid until %s.', v.valid_until));
  end if;
  update app_public.proposals p
  set status = decision,
      decided_by_name = coalesce(nullif(btrim(decide_proposal.decided_by_name), ''), (select u.name from app_public.users u where u.id = app_public.current_user_id()))
  where p.organization_id = v.organization_id and p.id = v.id
  returning p.* into v;
  return v;
end
$$;

-- Accept a proposal: the client (portal user of its engagement) or a member with proposals.write
-- on the client's behalf. Creates the draft contract; an open deal behind it is won.
create or replace function app_public.accept_proposal(proposal_id uuid, decided_by_name text default null) returns app_public.contracts
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.proposals := app_private.decide_proposal(proposal_id, 'accepted', decided_by_name);
  v_contract app_public.contracts;
begin
  insert into app_public.contracts (organization_id, proposal_id, client_company_id, title, value)
  values (v.organization_id, v.id, v.client_company_id, v.title, v.total)
  returning * into v_contract;
  update app_public.deals d set stage = 'won'
  where d.organization_id = v.organization_id and d.id = v.deal_id
    and d.deleted_at is null and d.stage in ('qualified', 'proposal', 'negotiation');
  return v_contract;
end
$$;
comment on function app_public.accept_proposal(uuid, text) is 'Accepts a sent or viewed proposal (its client in the portal, or a member with proposals.write) and returns the contract it creates (a draft for the same value). An open deal behind the proposal becomes won.';

create or replace function app_public.reject_proposal(proposal_id uuid, decided_by_name text default null) returns app_public.proposals
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  return app_private.decide_proposal(proposal_id, 'rejected', decided_by_name);
end
$$;
comment on function app_public.reject_proposal(uuid, text) is 'Rejects a sent or viewed proposal (its client in the portal, or a member with proposals.write).';

-- Move a contract of the current organization to `status` (contracts.write); the status machine
-- decides whether it may.
create or replace function app_private.set_contract_status(contract_id uuid, status app_public.contract_status, action text, signer_name text default null) returns app_public.contracts
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.contracts;
begin
  perform app_private.require_permission('contracts.write', action);
  if exists (
    select from app_public.contracts c
    where c.organization_id = app_public.current_org_id() and c.id = set_contract_status.contract_id and c.status = set_contract_status.status
  ) then
    perform app_private.fail('INVALID_TRANSITION', format('The contract is already %s.', status));
  end if;
  update app_public.contracts c
  set status = set_contract_status.status,
      signer_name = coalesce(set_contract_status.signer_name, c.signer_name)
  where c.organization_id = app_public.current_org_id() and c.id = set_contract_status.contract_id and c.deleted_at is null
  returning c.* into v;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such contract in this organization.');
  end if;
  return v;
end
$$;

create or replace function app_public.send_contract(contract_id uuid) returns app_public.contracts
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_contract_status(contract_id, 'sent', 'send a contract')
$$;
comment on function app_public.send_contract(uuid) is 'Sends a draft contract for signature (contracts.write).';

-- Record the client's signature on a sent contract and start the engagement it covers.
create or replace function app_public.sign_contract(contract_id uuid, signer_name text) returns app_public.engagements
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.contracts;
  v_engagement app_public.engagements;
begin
  if nullif(btrim(sign_contract.signer_name), '') is null then
    perform app_private.fail('INVALID_VALUE', 'Give the name of the person who signed.');
  end if;
  v := app_private.set_contract_status(contract_id, 'signed', 'sign a contract', btrim(sign_contract.signer_name));
  insert into app_public.engagements (organization_id, contract_id, client_company_id, name, starts_on, ends_on)
  values (v.organization_id, v.id, v.client_company_id, v.title, coalesce(v.starts_on, current_date), v.ends_on)
  returning * into v_engagement;
  return v_engagement;
end
$$;
comment on function app_public.sign_contract(uuid, text) is 'Records the signature on a sent contract (contracts.write) and returns the active engagement it starts.';

create or replace function app_public.cancel_contract(contract_id uuid) returns app_public.contracts
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_contract_status(contract_id, 'cancelled', 'cancel a contract')
$$;
comment on function app_public.cancel_contract(uuid) is 'Cancels a draft or sent contract (contracts.write).';
--! EndIncluded functions/sales.sql
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
  if not exists (
    select from app_public.engagements e
    where e.organization_id = v_org and e.id = create_project_from_template.engagement_id
      and e.deleted_at is null and e.status in ('active', 'on_hold')
  ) then
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

-- Time entries. BEFORE INSERT: a rate left at 0 takes the engagement's hourly rate.
-- AFTER INSERT OR UPDATE (so row-level security has admitted the row first): the task must belong
-- to the entry's engagement; once invoiced (invoice_id set) an entry no longer changes
-- (NOT_EDITABLE) until its invoice is cancelled. SECURITY DEFINER: reads engagements, projects
-- and tasks whatever the caller may read.
create or replace function app_private.tg__time_entry_rate() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if new.rate = 0 then
    new.rate := coalesce((
      select e.hourly_rate from app_public.engagements e where e.organization_id = new.organization_id and e.id = new.engagement_id
    ), 0);
  end if;
  return new;
end
$$;

create or replace function app_private.tg__time_entry_rules() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if tg_op = 'UPDATE' and old.invoice_id is not null
     and (to_jsonb(old) - 'invoice_id' - 'updated_at') is distinct from (to_jsonb(new) - 'invoice_id' - 'updated_at') then
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

drop trigger if exists tg_time_entries__rate on app_public.time_entries;
create trigger tg_time_entries__rate before insert on app_public.time_entries
  for each row execute function app_private.tg__time_entry_rate();
drop trigger if exists tg_time_entries__rules on app_public.time_entries;
create trigger tg_time_entries__rules after insert or update on app_public.time_entries
  for each row execute function app_private.tg__time_entry_rules();
--! EndIncluded functions/delivery.sql
--! Included functions/billing.sql
-- Billing and payables lifecycle: invoices from time, sending (numbering), viewing, cancelling,
-- payments, and bills. SECURITY DEFINER functions check organization and permission first.

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
begin
  perform app_private.require_permission('invoices.write', 'invoice time');
  select e.* into v_engagement from app_public.engagements e
  where e.organization_id = v_org and e.id = create_invoice_from_time.engagement_id and e.deleted_at is null;
  if v_engagement.id is null then
    perform app_private.fail('NOT_FOUND', 'No such engagement in this organization.');
  end if;
  select array_agg(t.id) into v_ids
  from (
    select t.id from app_public.time_entries t
    where t.organization_id = v_org and t.engagement_id = v_engagement.id
      and t.billable and t.invoice_id is null and t.deleted_at is null and t.rate > 0
    for update
  ) t;
  if v_ids is null then
    perform app_private.fail('EMPTY_DOCUMENT', 'This engagement has no billable time that is not invoiced yet.');
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
comment on function app_public.create_invoice_from_time(uuid, numeric) is 'Creates a draft invoice of an engagement''s billable, not yet invoiced time (invoices.write): a line per task and rate.';

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
  end if;
  update app_public.invoices i set status = 'cancelled'
  where i.organization_id = v.organization_id and i.id = v.id
  returning i.* into v;
  update app_public.time_entries t set invoice_id = null
  where t.organization_id = v.organization_id and t.invoice_id = v.id;
  return v;
end
$$;
comment on function app_public.cancel_invoice(uuid) is 'Cancels an invoice that has no payments (invoices.write); its number stays taken and its time entries become invoiceable again.';

-- Payments, AFTER INSERT per row (whether through recordPayment or a direct insert): the invoice
-- must take payments (sent, viewed or overdue: NOT_PAYABLE), the amount must not exceed its
-- balance (OVERPAYMENT); amount_paid grows, and clearing the balance marks the invoice paid.
-- The invoice row is locked first, so concurrent payments of one invoice are applied in turn.
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
  v app_public.payments;
begin
  perform app_private.require_permission('invoices.write', 'record a payment');
  if not exists (
    select from app_public.invoices i where i.organization_id = app_public.current_org_id() and i.id = record_payment.invoice_id
  ) then
    perform app_private.fail('NOT_FOUND', 'No such invoice in this organization.');
  end if;
  insert into app_public.payments (organization_id, invoice_id, amount, received_on, method, reference)
  values (app_public.current_org_id(), record_payment.invoice_id, record_payment.amount,
          coalesce(record_payment.received_on, current_date), coalesce(record_payment.method, 'bank_transfer'), record_payment.reference)
  returning * into v;
  return v;
end
$$;
comment on function app_public.record_payment(uuid, numeric, date, app_public.payment_method, text) is 'Records money received for a sent, viewed or overdue invoice (invoices.write). Partial payments add up; more than the balance is refused (OVERPAYMENT); clearing the balance marks the invoice paid.';

-- Move a bill of the current organization to `status`; approving, rejecting and paying are for
-- owners and admins only (approve_bill records who approved), cancelling needs bills.write.
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
  if exists (
    select from app_public.bills b
    where b.organization_id = app_public.current_org_id() and b.id = set_bill_status.bill_id and b.status = set_bill_status.status
  ) then
    perform app_private.fail('INVALID_TRANSITION', format('The bill is already %s.', status));
  end if;
  update app_public.bills b
  set status = set_bill_status.status,
      approved_by = case when set_bill_status.status = 'approved' then app_public.current_user_id() else b.approved_by end
  where b.organization_id = app_public.current_org_id() and b.id = set_bill_status.bill_id and b.deleted_at is null
  returning b.* into v;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such bill in this organization.');
  end if;
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
--! Included functions/auth.sql
-- Accounts, sessions and organizations: every rule of signing up, signing in, refresh-token
-- rotation, organization switching, invitations. The API (src/http/auth-mutations.ts) only calls
-- these functions and signs the access token for the grant they return.
--
-- Sessions: one row per sign-in in app_private.sessions. The refresh token is random, shown to
-- the client once, stored only as a SHA-256 hash, and rotated on every refresh; presenting an
-- already-used refresh token revokes the whole session (token theft detection). Access tokens
-- name their session, and app_public.current_user_id() checks it is live, so signing out
-- cuts off every access token of that session at once.
--
-- Lifetimes come from the settings app.refresh_token_ttl_seconds (the API sets it per request
-- from REFRESH_TOKEN_TTL_SECONDS), 30 days when unset.

create or replace function app_private.refresh_token_ttl() returns interval
language sql stable
set search_path = pg_catalog
as $$
  select make_interval(secs => coalesce(nullif(current_setting('app.refresh_token_ttl_seconds', true), '')::int, 30 * 24 * 3600))
$$;

create or replace function app_private.hash_token(token text) returns bytea
language sql immutable strict
set search_path = pg_catalog
as $$
  select public.digest(token, 'sha256')
$$;

create or replace function app_private.random_token() returns text
language sql volatile
set search_path = pg_catalog
as $$
  select translate(encode(public.gen_random_bytes(32), 'base64'), '+/=', '-_')
$$;

-- Starts a session for a user, optionally in an organization they belong to.
create or replace function app_private.start_session(user_id uuid, organization_id uuid) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_token text := app_private.random_token();
  v_session app_private.sessions;
begin
  insert into app_private.sessions (user_id, organization_id, refresh_token_hash, expires_at)
  values (start_session.user_id, start_session.organization_id, app_private.hash_token(v_token), now() + app_private.refresh_token_ttl())
  returning * into v_session;
  return row(v_session.user_id, v_session.id, v_session.organization_id, v_token, v_session.expires_at)::app_private.auth_grant;
end
$$;

-- Sign up. The email is stored lower-cased; the password is hashed with bcrypt (pgcrypto).
create or replace function app_private.register(email text, password text, name text) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_email text := lower(btrim(register.email));
  v_user_id uuid;
begin
  if v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' or length(v_email) > 320 then
    perform app_private.fail('INVALID_EMAIL', 'The email address is not valid.');
  end if;
  if password is null or length(password) < 8 or octet_length(password) > 72 then
    perform app_private.fail('WEAK_PASSWORD', 'The password must be 8 to 72 characters long.');
  end if;
  if exists (select 1 from app_public.users u where u.email = v_email) then
    perform app_private.fail('EMAIL_TAKEN', 'An account with this email already exists; sign in instead.');
  end if;
  insert into app_public.users (email, name) values (v_email, btrim(register.name)) returning id into v_user_id;
  insert into app_private.user_secrets (user_id, password_hash) values (v_user_id, public.crypt(password, public.gen_salt('bf', 10)));
  return app_private.start_session(v_user_id, null);
end
$$;

-- Sign in; optionally straight into an organization (ignored unless the user may enter it).
-- Unknown email and wrong password fail alike, after the same bcrypt work.
create or replace function app_private.login(email text, password text, organization_id uuid default null) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user_id uuid;
  v_hash text;
begin
  select u.id, s.password_hash into v_user_id, v_hash
  from app_public.users u
  join app_private.user_secrets s on s.user_id = u.id
  where u.email = lower(btrim(login.email));
  if v_hash is null then
    -- Same cost as a real check, so response time does not tell whether the email exists.
    perform public.crypt(coalesce(password, ''), public.gen_salt('bf', 10));
    perform app_private.fail('INVALID_CREDENTIALS', 'Email or password is wrong.');
  end if;
  if public.crypt(coalesce(password, ''), v_hash) is distinct from v_hash then
    perform app_private.fail('INVALID_CREDENTIALS', 'Email or password is wrong.');
  end if;
  return app_private.start_session(
    v_user_id,
    case when app_private.can_enter_organization(v_user_id, login.organization_id) then login.organization_id end
  );
end
$$;

-- Rotate a refresh token. Returns null (the API answers INVALID_REFRESH_TOKEN) when the token is
-- unknown, expired or revoked; when it was already used, also revokes its session, which must
-- survive: that is why this returns null instead of raising (an error would roll it back).
-- The organization carries over while the user may still enter it.
create or replace function app_private.refresh(refresh_token text) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_hash bytea := app_private.hash_token(refresh_token);
  v_token text := app_private.random_token();
  v_session app_private.sessions;
begin
  select * into v_session from app_private.sessions s where s.refresh_token_hash = v_hash for update;
  if v_session.id is null then
    update app_private.sessions s
    set revoked_at = now(), revoked_reason = 'refresh token reused'
    from app_private.used_refresh_tokens t
    where t.token_hash = v_hash and s.id = t.session_id and s.revoked_at is null;
    return null;
  end if;
  if v_session.revoked_at is not null or v_session.expires_at <= now() then
    return null;
  end if;
  insert into app_private.used_refresh_tokens (token_hash, session_id) values (v_hash, v_session.id);
  update app_private.sessions s
  set refresh_token_hash = app_private.hash_token(v_token),
      refreshed_at = now(),
      expires_at = now() + app_private.refresh_token_ttl(),
      organization_id = case
        when app_private.can_enter_organization(v_session.user_id, v_session.organization_id) then v_session.organization_id
      end
  where s.id = v_session.id
  returning * into v_session;
  return row(v_session.user_id, v_session.id, v_session.organization_id, v_token, v_session.expires_at)::app_private.auth_grant;
end
$$;

-- Sign out: revokes the current session (from the access token), which stops its access tokens
-- and refresh token at once. True if a live session was revoked.
create or replace function app_private.logout() returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  update app_private.sessions s
  set revoked_at = now(), revoked_reason = 'signed out'
  where s.id = app_private.setting_uuid('app.session_id')
    and s.user_id = app_public.current_user_id()
    and s.revoked_at is null;
  return found;
end
$$;

-- Scope the current session to another organization the user belongs to, as a member or a
-- client-portal user (NOT_FOUND otherwise:
-- an organization the user is not in is indistinguishable from one that does not exist).
-- Null switches to no organization. No new refresh token: the session's stays valid.
create or replace function app_private.switch_organization(organization_id uuid) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user_id uuid := app_public.current_user_id();
  v_session app_private.sessions;
begin
  if v_user_id is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in to choose an organization.');
  end if;
  if switch_organization.organization_id is not null
     and not app_private.can_enter_organization(v_user_id, switch_organization.organization_id) then
    perform app_private.fail('NOT_FOUND', 'No such organization among yours.');
  end if;
  update app_private.sessions s
  set organization_id = switch_organization.organization_id
  where s.id = app_private.setting_uuid('app.session_id')
  returning * into v_session;
  return row(v_session.user_id, v_session.id, v_session.organization_id, null, v_session.expires_at)::app_private.auth_grant;
end
$$;

-- Create an organization; the signed-in creator becomes its owner.
create or replace function app_public.create_organization(name text, slug text default null) returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user_id uuid := app_public.current_user_id();
  v_slug text := coalesce(
    nullif(lower(btrim(create_organization.slug)), ''),
    trim(both '-' from regexp_replace(lower(create_organization.name), '[^a-z0-9]+', '-', 'g'))
  );
  v_org app_public.organizations;
begin
  if v_user_id is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in to create an organization.');
  end if;
  if exists (select 1 from app_public.organizations o where o.slug = v_slug) then
    perform app_private.fail('ALREADY_EXISTS', format('The address "%s" is taken; choose another slug.', v_slug));
  end if;
  insert into app_public.organizations (name, slug, created_by) values (btrim(create_organization.name), v_slug, v_user_id)
  returning * into v_org;
  insert into app_public.organization_members (organization_id, user_id, role, created_by) values (v_org.id, v_user_id, 'owner', v_user_id);
  return v_org;
end
$$;
comment on function app_public.create_organization(text, text) is 'Creates an organization with you as its owner. The slug defaults to one made from the name. Call switchOrganization to work in it.';

-- The organizations you belong to (whatever organization the request is scoped to).
create or replace function app_public.my_organizations() returns setof app_public.organizations
language sql stable security definer
set search_path = pg_catalog
as $$
  select o.*
  from app_public.organizations o
  join app_public.organization_members m on m.organization_id = o.id
  where m.user_id = app_public.current_user_id()
  order by o.name, o.id
$$;
comment on function app_public.my_organizations() is 'The organizations you are a member of, to choose one with switchOrganization.';

-- Invite someone by email to the current organization (owners and admins; only owners invite
-- owners). Replaces a pending invitation to the same email. The token is returned once, here;
-- only its hash is stored. It is valid for 7 days, for the invited email only.
create or replace function app_public.invite_member(email text, role app_public.member_role default 'member') returns app_public.invitation_token
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_email text := lower(btrim(invite_member.email));
  v_org uuid := app_public.current_org_id();
  v_token text := app_private.random_token();
  v_invitation app_public.invitations;
begin
  perform app_private.require_member_role('admin', 'invite members');
  if invite_member.role = 'owner' and app_public.current_member_role() <> 'owner' then
    perform app_private.fail('OWNER_REQUIRED', 'Only an owner may invite an owner.');
  end if;
  if v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' or length(v_email) > 320 then
    perform app_private.fail('INVALID_EMAIL', 'The email address is not valid.');
  end if;
  if exists (
    select 1 from app_public.organization_members m join app_public.users u on u.id = m.user_id
    where m.organization_id = v_org and u.email = v_email
  ) then
    perform app_private.fail('ALREADY_MEMBER', format('%s is already a member of this organization.', v_email));
  end if;
  delete from app_public.invitations i where i.organization_id = v_org and i.email = v_email and i.accepted_at is null;
  insert into app_public.invitations (organization_id, email, role, invited_by)
  values (v_org, v_email, invite_member.role, app_public.current_user_id())
  returning * into v_invitation;
  insert into app_private.invitation_secrets (organization_id, invitation_id, token_hash)
  values (v_org, v_invitation.id, app_private.hash_token(v_token));
  return row(v_invitation.id, v_token, v_invitation.expires_at)::app_public.invitation_token;
end
$$;
comment on function app_public.invite_member(text, app_public.member_role) is 'Invites an email address to the current organization (owners and admins). Returns the invitation token once; it expires after 7 days.';

-- Accept an invitation: the signed-in user, whose email must be the invited one, joins the
-- organization with the invited role. Then call switchOrganization to work in it.
create or replace function app_public.accept_invitation(token text) returns app_public.organization_members
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user_id uuid := app_public.current_user_id();
  v_invitation app_public.invitations;
  v_member app_public.organization_members;
begin
  if v_user_id is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in (or sign up with the invited email) to accept an invitation.');
  end if;
  select i.* into v_invitation
  from app_private.invitation_secrets s
  join app_public.invitations i on i.organization_id = s.organization_id and i.id = s.invitation_id
  join app_public.users u on u.id = v_user_id
  where s.token_hash = app_private.hash_token(accept_invitation.token)
    and i.accepted_at is null
    and i.expires_at > now()
    and i.email = u.email
  for update of i;
  if v_invitation.id is null then
    perform app_private.fail('INVITATION_INVALID', 'This invitation is unknown, expired, already used, or for another email address.');
  end if;
  if exists (select 1 from app_public.organization_members m where m.organization_id = v_invitation.organization_id and m.user_id = v_user_id) then
    perform app_private.fail('ALREADY_MEMBER', 'You are already a member of this organization.');
  end if;
  insert into app_public.organization_members (organization_id, user_id, role, created_by)
  values (v_invitation.organization_id, v_user_id, v_invitation.role, v_invitation.invited_by)
  returning * into v_member;
  update app_public.invitations i set accepted_at = now(), accepted_by = v_user_id
  where i.organization_id = v_invitation.organization_id and i.id = v_invitation.id;
  return v_member;
end
$$;
comment on function app_public.accept_invitation(text) is 'Joins the organization of an invitation sent to your email address.';

-- The signed-in user (GraphQL: `viewer`), or null.
create or replace function app_public.viewer() returns app_public.users
language sql stable
set search_path = pg_catalog
as $$
  select u.* from app_public.users u where u.id = app_public.current_user_id()
$$;
comment on function app_public.viewer() is 'You: the signed-in user, or null when signed out.';

-- The organization the request acts in (GraphQL: `currentOrganization`), or null.
create or replace function app_public.current_organization() returns app_public.organizations
language sql stable
set search_path = pg_catalog
as $$
  select o.* from app_public.organizations o where o.id = app_public.current_org_id()
$$;
comment on function app_public.current_organization() is 'The organization your access token is scoped to, or null.';
--! EndIncluded functions/auth.sql

------------------------------------------------------------------------------------------------
-- What the visitor may execute (soft-delete functions are granted by attach_soft_delete).

grant execute on function
  app_public.has_permission(text),
  app_public.my_permissions(),
  app_public.current_portal_org_id(),
  app_public.current_portal_engagement_ids(),
  app_public.grant_portal_access(uuid, uuid),
  app_public.accept_portal_access(text),
  app_public.revoke_portal_access(uuid),
  app_public.send_proposal(uuid),
  app_public.mark_proposal_viewed(uuid),
  app_public.accept_proposal(uuid, text),
  app_public.reject_proposal(uuid, text),
  app_public.send_contract(uuid),
  app_public.sign_contract(uuid, text),
  app_public.cancel_contract(uuid),
  app_public.create_project_from_template(uuid, uuid, text, date),
  app_public.create_invoice_from_time(uuid, numeric),
  app_public.send_invoice(uuid),
  app_public.mark_invoice_viewed(uuid),
  app_public.cancel_invoice(uuid),
  app_public.record_payment(uuid, numeric, date, app_public.payment_method, text),
  app_public.approve_bill(uuid),
  app_public.reject_bill(uuid),
  app_public.pay_bill(uuid),
  app_public.cancel_bill(uuid)
to :DATABASE_VISITOR;
