--! Previous: -
--! Hash: sha1:1418f227b6bd59ca2b2ed18eb406483399791c72
--! Message: Foundation: tenancy core, RLS, audit, soft delete

-- Foundation: extensions, schemas, the tenancy core (users, organizations, members,
-- invitations, sessions), the audit log with its outbox, and the first business table.
-- Roles are created beforehand by sql/setup/roles.sql; their names arrive as placeholders.

-- Extensions live in `public`, and nothing else does.
create extension if not exists pgcrypto with schema public;

-- Nobody gets anything by default: PUBLIC may not use `public`, and functions this role creates
-- are executable only by whom they are granted to.
revoke all on schema public from public;
alter default privileges revoke all on functions from public;

-- current.sql re-runs on every change while it is developed, so it starts from scratch.
drop schema if exists app_public cascade;
drop schema if exists app_private cascade;

create schema app_public;
comment on schema app_public is 'Exposed through GraphQL. Every table has row-level security enabled and forced.';
create schema app_private;
comment on schema app_private is 'Never exposed: secrets, sessions, internals. The visitor may execute only the functions granted to it below.';
grant usage on schema app_public to :DATABASE_VISITOR;
grant usage on schema app_private to :DATABASE_VISITOR;

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

create type app_public.member_role as enum ('viewer', 'member', 'admin', 'owner');
comment on type app_public.member_role is 'A member''s role, lowest first: viewer (reads), member (also writes business records), admin (also manages members and invitations, restores deleted records), owner (also manages owners).';
create type app_private.auth_grant as (user_id uuid, session_id uuid, organization_id uuid, refresh_token text, refresh_expires_at timestamptz);
create type app_public.invitation_token as (invitation_id uuid, token text, expires_at timestamptz);
comment on type app_public.invitation_token is 'A new invitation and its secret token, shown only once.';

------------------------------------------------------------------------------------------------
-- Global tables: users (one account across organizations) and organizations (the tenants).

create table app_public.users (
  id uuid primary key default gen_random_uuid(),
  email text not null unique check (email = lower(email) and email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  name text not null check (length(btrim(name)) between 1 and 200),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table app_public.users is E'@behavior -insert -delete\nA person who can sign in (register). Visible to yourself and to the members of your current organization.';

create table app_public.organizations (
  id uuid primary key default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 200),
  slug text not null unique check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'),
  retention_days int not null default 30 check (retention_days between 1 and 3650),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table app_public.organizations is E'@behavior -insert -delete\nA firm: the tenant. Every tenant row belongs to exactly one organization (createOrganization makes one).';
comment on column app_public.organizations.retention_days is 'How long deleted records stay restorable before the retention job purges them.';
comment on column app_public.organizations.created_by is 'The user who created it (no foreign key: audit columns outlive what they name).';

------------------------------------------------------------------------------------------------
-- Tenant tables: organization_id on every row, primary key (organization_id, id), composite
-- foreign keys between tenant tables, an index led by organization_id behind every foreign key.

create table app_public.organization_members (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  user_id uuid not null references app_public.users,
  role app_public.member_role not null default 'member',
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  constraint organization_members_organization_id_user_id_key unique (organization_id, user_id)
);
create index organization_members_user_id_idx on app_public.organization_members (user_id);
comment on table app_public.organization_members is E'@behavior -insert\nWho belongs to an organization, and with which role. Join through an invitation (acceptInvitation).';

create table app_public.invitations (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  email text not null check (email = lower(email)),
  role app_public.member_role not null default 'member',
  invited_by uuid references app_public.users,
  expires_at timestamptz not null default now() + interval '7 days',
  accepted_at timestamptz,
  accepted_by uuid references app_public.users,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  check ((accepted_at is null) = (accepted_by is null))
);
create unique index invitations_organization_id_email_pending_key on app_public.invitations (organization_id, email) where accepted_at is null;
create index invitations_organization_id_invited_by_idx on app_public.invitations (organization_id, invited_by);
create index invitations_organization_id_accepted_by_idx on app_public.invitations (organization_id, accepted_by);
comment on table app_public.invitations is E'@behavior -insert -update\nAn invitation to join an organization (inviteMember). Owners and admins see and revoke (delete) them.';

-- Append-only audit log, written only by the audit trigger (app_private.tg__audit).
create table app_public.activity_events (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  occurred_at timestamptz not null default now(),
  transaction_id bigint not null default (pg_current_xact_id()::text::bigint),
  actor_id uuid,
  action text not null check (action in ('insert', 'update', 'delete', 'soft_delete', 'restore')),
  table_name text not null,
  record_id uuid not null,
  old_values jsonb,
  new_values jsonb,
  primary key (organization_id, id)
);
create index activity_events_organization_id_occurred_at_idx on app_public.activity_events (organization_id, occurred_at desc, id);
create index activity_events_organization_id_transaction_id_idx on app_public.activity_events (organization_id, transaction_id);
create index activity_events_organization_id_table_name_record_id_idx on app_public.activity_events (organization_id, table_name, record_id);
comment on table app_public.activity_events is E'@behavior -insert -update -delete\nEvery change to the organization''s data: who (actor), what (table, row, action, values before and after, secrets left out), when, in which transaction. Append-only.';
comment on column app_public.activity_events.actor_id is 'The signed-in user who made the change; null for the system (migrations, jobs without an actor). No foreign key: the log outlives what it names.';

-- The first business record; the domain tables follow the same recipe.
create table app_public.client_companies (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 200),
  website text check (website ~* '^https?://[^\s]+$'),
  notes text check (length(notes) <= 10000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create index client_companies_organization_id_name_idx on app_public.client_companies (organization_id, name);
comment on table app_public.client_companies is E'@behavior -delete\nA client: a company the firm sells to and works for.';

------------------------------------------------------------------------------------------------
-- Private tables: secrets and sessions. RLS forced with no policy: only the owner's
-- SECURITY DEFINER functions (sql/functions/auth.sql) read or write them.

create table app_private.user_secrets (
  user_id uuid primary key references app_public.users,
  password_hash text not null,
  password_changed_at timestamptz not null default now()
);

create table app_private.sessions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references app_public.users,
  organization_id uuid references app_public.organizations,
  refresh_token_hash bytea not null unique,
  created_at timestamptz not null default now(),
  refreshed_at timestamptz,
  expires_at timestamptz not null,
  revoked_at timestamptz,
  revoked_reason text
);
create index sessions_user_id_idx on app_private.sessions (user_id);
create index sessions_organization_id_idx on app_private.sessions (organization_id);

create table app_private.used_refresh_tokens (
  token_hash bytea primary key,
  session_id uuid not null references app_private.sessions on delete cascade,
  used_at timestamptz not null default now()
);
create index used_refresh_tokens_session_id_idx on app_private.used_refresh_tokens (session_id);

create table app_private.invitation_secrets (
  organization_id uuid not null,
  invitation_id uuid not null,
  token_hash bytea not null unique,
  primary key (organization_id, invitation_id),
  foreign key (organization_id, invitation_id) references app_public.invitations on delete cascade
);

-- The outbox consumer's record: which transactions' events the worker has dispatched
-- (dispatch_activity task). Its primary key makes dispatching idempotent.
create table app_private.activity_dispatches (
  organization_id uuid not null references app_public.organizations,
  transaction_id bigint not null,
  event_count int not null check (event_count >= 0),
  dispatched_at timestamptz not null default now(),
  primary key (organization_id, transaction_id)
);

------------------------------------------------------------------------------------------------
-- Helpers, triggers and the tenant-table recipe.

--! Included functions/identity.sql
-- Identity helpers: one function per question every policy asks.
--   Who is the user?                      app_public.current_user_id()
--   Which organization is this request for? app_public.current_org_id()
--   What is the user's role there?        app_public.current_member_role()
--   May the user act at least as <role>?  app_public.current_member_has_role(role)
-- Policies call them wrapped in a sub-select, `(select app_public.current_org_id())`, so
-- PostgreSQL evaluates each once per query (an InitPlan), not once per row.
--
-- Inputs are the session settings the API sets per request from a verified access token
-- (src/http/auth.ts): app.user_id, app.session_id, app.org_id. They are only claims: these
-- functions trust nothing they cannot check in the database. Fail closed: a missing, empty
-- or malformed setting means "nobody", never an error and never another tenant.

-- A setting as a uuid, or null when unset, '' (pooled connections keep '' once a setting has
-- been used) or not a uuid.
create or replace function app_private.setting_uuid(name text) returns uuid
language sql stable parallel safe
set search_path = pg_catalog
as $$
  select case when s ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then s::uuid end
  from (select nullif(current_setting(name, true), '') as s) as setting
$$;

-- True on the job worker's own connection (it logs in as :DATABASE_WORKER). Requests log in as
-- the authenticator and cannot change their session user, so they can never pass this check.
create or replace function app_private.is_worker_session() returns boolean
language sql stable parallel safe
set search_path = pg_catalog
as $$
  select session_user = ':DATABASE_WORKER'::name
$$;

-- The signed-in user: app.user_id, if app.session_id names a live session of that user
-- (so signing out or revoking a session stops its access tokens at once). On the worker's
-- connection app.user_id is the actor the job runs for (may be null: the system).
create or replace function app_public.current_user_id() returns uuid
language sql stable security definer
set search_path = pg_catalog
as $$
  select case
    when app_private.is_worker_session() then app_private.setting_uuid('app.user_id')
    else (
      select s.user_id
      from app_private.sessions s
      where s.id = app_private.setting_uuid('app.session_id')
        and s.user_id = app_private.setting_uuid('app.user_id')
        and s.revoked_at is null
        and s.expires_at > now()
    )
  end
$$;
comment on function app_public.current_user_id() is 'The signed-in user''s id, or null.';

-- The organization of this request: app.org_id, only if the current user is a member of it
-- (or on the worker's connection, which acts for the organization of its job).
create or replace function app_public.current_org_id() returns uuid
language sql stable security definer
set search_path = pg_catalog
as $$
  select o.id
  from app_public.organizations o
  where o.id = app_private.setting_uuid('app.org_id')
    and (
      app_private.is_worker_session()
      or exists (
        select 1
        from app_public.organization_members m
        where m.organization_id = o.id
          and m.user_id = app_public.current_user_id()
      )
    )
$$;
comment on function app_public.current_org_id() is 'The organization this request acts in (from the access token), or null when none is chosen or the user is not a member of it.';

-- The current user's role in the current organization (null: not a member / no organization).
-- The worker acts with admin rights inside the organization of its job.
create or replace function app_public.current_member_role() returns app_public.member_role
language sql stable security definer
set search_path = pg_catalog
as $$
  select case
    when app_private.is_worker_session() then
      case when app_public.current_org_id() is not null then 'admin'::app_public.member_role end
    else (
      select m.role
      from app_public.organization_members m
      where m.organization_id = app_public.current_org_id()
        and m.user_id = app_public.current_user_id()
    )
  end
$$;
comment on function app_public.current_member_role() is 'Your role in the current organization, or null.';

-- Roles are ordered viewer < member < admin < owner.
create or replace function app_public.current_member_has_role(minimum app_public.member_role) returns boolean
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(app_public.current_member_role() >= minimum, false)
$$;
comment on function app_public.current_member_has_role(app_public.member_role) is 'True when your role in the current organization is at least `minimum` (viewer < member < admin < owner).';
--! EndIncluded functions/identity.sql
--! Included functions/triggers.sql
-- Trigger functions shared by every tenant table. They are attached by the procedures in
-- sql/functions/tenant_tables.sql, never by hand.

-- BEFORE UPDATE, per row: updated_at is the time of the last change, whatever the client sent.
create or replace function app_private.tg__updated_at() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
  new.updated_at := now();
  return new;
end
$$;

-- AFTER INSERT/UPDATE/DELETE, per statement, with transition tables old_rows/new_rows:
-- writes one app_public.activity_events row per changed row (who, organization, what,
-- before/after, when, transaction), then enqueues the outbox job `dispatch_activity` in the
-- same transaction: one per organization and transaction (job_key collapses the statements of
-- one transaction), so a rolled-back change never produces a job and a committed one always does.
-- Arguments: TG_ARGV[0] = the column holding the organization id ('organization_id', or 'id'
-- on app_public.organizations); TG_ARGV[1..] = secret columns, never copied into the event.
-- An UPDATE that changes nothing but updated_at writes no event.
-- SECURITY DEFINER: the acting role (the visitor) has no privilege on activity_events or
-- on the job queue; only this function writes there.
create or replace function app_private.tg__audit() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org_column text := tg_argv[0];
  v_secret text[] := coalesce(tg_argv[1:], '{}');
  v_actor uuid := app_public.current_user_id();
  v_txid bigint := pg_current_xact_id()::text::bigint;
  v_orgs uuid[];
begin
  if tg_op = 'INSERT' then
    with events as (
      insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, old_values, new_values, transaction_id)
      select (r.j ->> v_org_column)::uuid, v_actor, 'insert', tg_table_name, (r.j ->> 'id')::uuid, null, r.j - v_secret, v_txid
      from (select to_jsonb(n) as j from new_rows n) as r
      returning organization_id
    )
    select array_agg(distinct organization_id) into v_orgs from events;
  elsif tg_op = 'DELETE' then
    with events as (
      insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, old_values, new_values, transaction_id)
      select (r.j ->> v_org_column)::uuid, v_actor, 'delete', tg_table_name, (r.j ->> 'id')::uuid, r.j - v_secret, null, v_txid
      from (select to_jsonb(o) as j from old_rows o) as r
      returning organization_id
    )
    select array_agg(distinct organization_id) into v_orgs from events;
  else
    with events as (
      insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, old_values, new_values, transaction_id)
      select (n.j ->> v_org_column)::uuid, v_actor,
        case
          when o.j ->> 'deleted_at' is null and n.j ->> 'deleted_at' is not null then 'soft_delete'
          when o.j ->> 'deleted_at' is not null and n.j ->> 'deleted_at' is null then 'restore'
          else 'update'
        end,
        tg_table_name, n.id, o.j - v_secret, n.j - v_secret, v_txid
      from (select old_rows.id, to_jsonb(old_rows) as j from old_rows) as o
      join (select new_rows.id, to_jsonb(new_rows) as j from new_rows) as n on n.id = o.id
      where (o.j - 'updated_at') is distinct from (n.j - 'updated_at')
      returning organization_id
    )
    select array_agg(distinct organization_id) into v_orgs from events;
  end if;

  if v_orgs is not null then
    perform graphile_worker.add_jobs(array(
      select row(
        'dispatch_activity',
        json_build_object('organization_id', org, 'transaction_id', v_txid),
        null, null, null,
        format('dispatch_activity:%s:%s', org, v_txid),
        null, null
      )::graphile_worker.job_spec
      from unnest(v_orgs) as org
    ));
  end if;
  return null;
end
$$;

-- BEFORE UPDATE/DELETE per row and BEFORE TRUNCATE on append-only tables (activity_events):
-- a second lock behind the revoked privileges, for any role that might get them back.
create or replace function app_private.tg__append_only() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
  raise exception '% is append-only: rows cannot be changed or deleted', tg_table_name
    using errcode = '42501';
end
$$;
--! EndIncluded functions/triggers.sql
--! Included functions/tenant_tables.sql
-- Say it once, apply it everywhere: the procedures that make a table a tenant table.
-- A migration creates the table, then makes it safe with one call:
--
--   call app_private.make_tenant_table('app_public.client_companies', soft_delete_as => 'client_company');
--
-- which checks its shape, forces row-level security, creates the four standard policies,
-- grants the visitor role exactly what they allow, and attaches the updated_at, audit (+ outbox)
-- and soft-delete machinery. Each step is its own procedure below, so tables with special rules
-- (organization_members, invitations, ...) use the steps they need and write their own policies.
-- Every procedure is idempotent: calling it again re-applies the current rules (e.g. after a
-- column is added, to grant it).
--
-- The standard policies, all TO the visitor role:
--   tenant_select  members of the current organization (every role) read its rows
--                  [soft-delete tables: only rows that are not deleted]
--   tenant_insert  members with at least the `writer` role (default: member) add rows to it
--   tenant_update  the same members change its [not deleted] rows; rows stay in the organization
--   tenant_delete  the same members delete its rows (hard-delete tables only; soft-delete tables
--                  get soft_delete_<x>() / restore_<x>() instead and no DELETE privilege)

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
create or replace procedure app_private.create_member_policies(tbl regclass, writer app_public.member_role, soft_delete boolean)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_in_org constant text := 'organization_id = (select app_public.current_org_id())';
  v_writer text := format('(select app_public.current_member_has_role(%L))', writer);
  v_live text := case when soft_delete then ' and deleted_at is null' else '' end;
begin
  execute format('drop policy if exists tenant_select on %s', tbl);
  execute format('drop policy if exists tenant_insert on %s', tbl);
  execute format('drop policy if exists tenant_update on %s', tbl);
  execute format('drop policy if exists tenant_delete on %s', tbl);

  execute format('create policy tenant_select on %s for select to :DATABASE_VISITOR using (%s%s)', tbl, v_in_org, v_live);
  execute format('comment on policy tenant_select on %s is %L', tbl,
    'Members of the current organization (any role) read its ' || case when soft_delete then 'rows that are not deleted.' else 'rows.' end);

  execute format('create policy tenant_insert on %s for insert to :DATABASE_VISITOR with check (%s and %s)', tbl, v_in_org, v_writer);
  execute format('comment on policy tenant_insert on %s is %L', tbl,
    format('Members with role %s or higher add rows to the current organization.', writer));

  execute format('create policy tenant_update on %s for update to :DATABASE_VISITOR using (%s and %s%s) with check (%s and %s)',
    tbl, v_in_org, v_writer, v_live, v_in_org, v_writer);
  execute format('comment on policy tenant_update on %s is %L', tbl,
    format('Members with role %s or higher change the current organization''s %srows; they stay in it.', writer, case when soft_delete then 'live ' else '' end));

  if not soft_delete then
    execute format('create policy tenant_delete on %s for delete to :DATABASE_VISITOR using (%s and %s)', tbl, v_in_org, v_writer);
    execute format('comment on policy tenant_delete on %s is %L', tbl,
      format('Members with role %s or higher delete the current organization''s rows.', writer));
  end if;
end
$$;

-- Grants matching the standard policies: read; insert and update every column except the
-- protected ones; delete only on hard-delete tables.
create or replace procedure app_private.grant_member_access(tbl regclass, soft_delete boolean)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_insertable text;
  v_updatable text;
begin
  select
    string_agg(quote_ident(attname), ', ') filter (where attname not in ('created_at', 'created_by', 'updated_at', 'deleted_at')),
    string_agg(quote_ident(attname), ', ') filter (where attname <> all (app_private.protected_columns()))
  into v_insertable, v_updatable
  from pg_attribute
  where attrelid = tbl and attnum > 0 and not attisdropped and attgenerated = '';

  execute format('revoke all on %s from public, :DATABASE_VISITOR', tbl);
  execute format('grant select on %s to :DATABASE_VISITOR', tbl);
  execute format('grant insert (%s) on %s to :DATABASE_VISITOR', v_insertable, tbl);
  if v_updatable is not null then
    execute format('grant update (%s) on %s to :DATABASE_VISITOR', v_updatable, tbl);
  end if;
  if not soft_delete then
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
--   app_public.soft_delete_<singular>(id)  members with `writer` role or higher: hide the row
--   app_public.restore_<singular>(id)      admins and owners: bring it back within the
--                                          organization's retention window (retention_days)
--   app_public.deleted_<table>()           admins and owners: the deleted rows still restorable
-- They are SECURITY DEFINER because a visitor cannot UPDATE a row into a state its SELECT
-- policy hides; each checks the organization and role itself with the identity helpers.
create or replace procedure app_private.attach_soft_delete(tbl regclass, singular text, writer app_public.member_role default 'member')
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
      perform app_private.require_member_role(%3$L, 'delete a %4$s');
      update %2$s as t set deleted_at = now()
      where t.organization_id = app_public.current_org_id() and t.id = %1$I.id and t.deleted_at is null
      returning t.* into v_row;
      if v_row.id is null then
        perform app_private.fail('NOT_FOUND', 'No such %4$s in this organization.');
      end if;
      return v_row;
    end
    $body$
  $f$, 'soft_delete_' || singular, tbl, writer, v_label);
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

-- The whole recipe for an ordinary tenant table. `soft_delete_as`: the singular name used for
-- the soft-delete functions (null: rows are hard-deleted). `writer`: the lowest role that may
-- write. `secret_columns`: never copied into activity_events.
create or replace procedure app_private.make_tenant_table(
  tbl regclass,
  soft_delete_as text default null,
  writer app_public.member_role default 'member',
  secret_columns text[] default '{}'
)
language plpgsql
set search_path = pg_catalog
as $$
begin
  call app_private.assert_tenant_shape(tbl);
  call app_private.force_rls(tbl);
  call app_private.create_member_policies(tbl, writer, soft_delete_as is not null);
  call app_private.grant_member_access(tbl, soft_delete_as is not null);
  call app_private.attach_updated_at(tbl);
  call app_private.attach_audit(tbl, 'organization_id', secret_columns);
  if soft_delete_as is not null then
    call app_private.attach_soft_delete(tbl, soft_delete_as, writer);
  end if;
end
$$;
--! EndIncluded functions/tenant_tables.sql
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
--! EndIncluded functions/members.sql
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

-- Sign in; optionally straight into an organization (ignored unless the user is a member).
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
    (select m.organization_id from app_public.organization_members m
     where m.organization_id = login.organization_id and m.user_id = v_user_id)
  );
end
$$;

-- Rotate a refresh token. Returns null (the API answers INVALID_REFRESH_TOKEN) when the token is
-- unknown, expired or revoked; when it was already used, also revokes its session, which must
-- survive: that is why this returns null instead of raising (an error would roll it back).
-- The organization carries over while the user is still a member of it.
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
      organization_id = (
        select m.organization_id from app_public.organization_members m
        where m.organization_id = v_session.organization_id and m.user_id = v_session.user_id
      )
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

-- Scope the current session to another organization the user belongs to (NOT_FOUND otherwise:
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
  if switch_organization.organization_id is not null and not exists (
    select 1 from app_public.organization_members m
    where m.organization_id = switch_organization.organization_id and m.user_id = v_user_id
  ) then
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
-- Row-level security: enabled and forced on every table; no policy means no access.

call app_private.force_rls('app_public.users');
call app_private.force_rls('app_public.organizations');
call app_private.force_rls('app_public.organization_members');
call app_private.force_rls('app_public.invitations');
call app_private.force_rls('app_public.activity_events');
call app_private.force_rls('app_private.user_secrets');
call app_private.force_rls('app_private.sessions');
call app_private.force_rls('app_private.used_refresh_tokens');
call app_private.force_rls('app_private.invitation_secrets');
call app_private.force_rls('app_private.activity_dispatches');

-- users: global, so not keyed by organization.
create policy select_self_and_colleagues on app_public.users for select to :DATABASE_VISITOR
  using (id = (select app_public.current_user_id()) or exists (
    select 1 from app_public.organization_members m
    where m.user_id = users.id and m.organization_id = (select app_public.current_org_id())
  ));
comment on policy select_self_and_colleagues on app_public.users is 'You see yourself and the members of your current organization.';
create policy update_self on app_public.users for update to :DATABASE_VISITOR
  using (id = (select app_public.current_user_id()))
  with check (id = (select app_public.current_user_id()));
comment on policy update_self on app_public.users is 'You change only your own profile.';
grant select on app_public.users to :DATABASE_VISITOR;
grant update (name) on app_public.users to :DATABASE_VISITOR;
call app_private.attach_updated_at('app_public.users');

-- organizations: the tenant row itself; id is its organization id.
create policy select_current on app_public.organizations for select to :DATABASE_VISITOR
  using (id = (select app_public.current_org_id()));
comment on policy select_current on app_public.organizations is 'Members see their current organization (myOrganizations lists all of theirs).';
create policy update_current_by_admins on app_public.organizations for update to :DATABASE_VISITOR
  using (id = (select app_public.current_org_id()) and (select app_public.current_member_has_role('admin')))
  with check (id = (select app_public.current_org_id()) and (select app_public.current_member_has_role('admin')));
comment on policy update_current_by_admins on app_public.organizations is 'Owners and admins change their current organization''s settings.';
grant select on app_public.organizations to :DATABASE_VISITOR;
grant update (name, slug, retention_days) on app_public.organizations to :DATABASE_VISITOR;
call app_private.attach_updated_at('app_public.organizations');
call app_private.attach_audit('app_public.organizations', 'id');

-- organization_members: everyone sees the member list; owners and admins change roles and
-- remove members (only owners touch owners, and one owner must remain: members.sql); anyone
-- may leave.
call app_private.assert_tenant_shape('app_public.organization_members');
create policy select_members on app_public.organization_members for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()));
comment on policy select_members on app_public.organization_members is 'Members (any role) see who belongs to their current organization.';
create policy update_by_admins on app_public.organization_members for update to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and (select app_public.current_member_has_role('admin')))
  with check (organization_id = (select app_public.current_org_id()) and (select app_public.current_member_has_role('admin')));
comment on policy update_by_admins on app_public.organization_members is 'Owners and admins change members'' roles (only owners grant or change the owner role).';
create policy delete_by_admins_or_self on app_public.organization_members for delete to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id())
         and ((select app_public.current_member_has_role('admin')) or user_id = (select app_public.current_user_id())));
comment on policy delete_by_admins_or_self on app_public.organization_members is 'Owners and admins remove members; anyone may leave (the last owner may not).';
grant select, delete on app_public.organization_members to :DATABASE_VISITOR;
grant update (role) on app_public.organization_members to :DATABASE_VISITOR;
create trigger tg_organization_members__guard_owners before update or delete on app_public.organization_members
  for each row execute function app_private.tg_organization_members__guard_owners();
call app_private.attach_updated_at('app_public.organization_members');
call app_private.attach_audit('app_public.organization_members');

-- invitations: owners and admins see and revoke them; inviteMember/acceptInvitation do the rest.
call app_private.assert_tenant_shape('app_public.invitations');
create policy select_by_admins on app_public.invitations for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and (select app_public.current_member_has_role('admin')));
comment on policy select_by_admins on app_public.invitations is 'Owners and admins see their organization''s invitations.';
create policy delete_by_admins on app_public.invitations for delete to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and (select app_public.current_member_has_role('admin')));
comment on policy delete_by_admins on app_public.invitations is 'Owners and admins revoke invitations by deleting them.';
grant select, delete on app_public.invitations to :DATABASE_VISITOR;
call app_private.attach_updated_at('app_public.invitations');
call app_private.attach_audit('app_public.invitations');

-- activity_events: members of every role read their organization's log; nobody writes to it
-- but the audit trigger, and nobody (the owner included) may change or delete it.
call app_private.assert_tenant_shape('app_public.activity_events');
alter table app_public.activity_events alter column organization_id drop default;
create policy select_members on app_public.activity_events for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()));
comment on policy select_members on app_public.activity_events is 'Members of every role, viewers included, read their organization''s activity.';
grant select on app_public.activity_events to :DATABASE_VISITOR;
revoke update, delete, truncate on app_public.activity_events from :DATABASE_OWNER;
create trigger tg_activity_events__append_only before update or delete on app_public.activity_events
  for each row execute function app_private.tg__append_only();
create trigger tg_activity_events__no_truncate before truncate on app_public.activity_events
  for each statement execute function app_private.tg__append_only();

-- activity_dispatches: only the worker, and only for the organization of its job.
create policy worker_select on app_private.activity_dispatches for select to :DATABASE_WORKER
  using (organization_id = (select app_public.current_org_id()));
comment on policy worker_select on app_private.activity_dispatches is 'The worker reads dispatch records of the organization of its current job.';
create policy worker_insert on app_private.activity_dispatches for insert to :DATABASE_WORKER
  with check (organization_id = (select app_public.current_org_id()));
comment on policy worker_insert on app_private.activity_dispatches is 'The worker records dispatches for the organization of its current job only.';
grant select, insert on app_private.activity_dispatches to :DATABASE_WORKER;

-- client_companies: the standard recipe, soft-deleted.
call app_private.make_tenant_table('app_public.client_companies', soft_delete_as => 'client_company');

------------------------------------------------------------------------------------------------
-- What the visitor may execute (everything else: nothing, by the default privileges above).

grant execute on function
  app_public.current_user_id(),
  app_public.current_org_id(),
  app_public.current_member_role(),
  app_public.current_member_has_role(app_public.member_role),
  app_public.create_organization(text, text),
  app_public.my_organizations(),
  app_public.viewer(),
  app_public.current_organization(),
  app_public.invite_member(text, app_public.member_role),
  app_public.accept_invitation(text),
  app_private.register(text, text, text),
  app_private.login(text, text, uuid),
  app_private.refresh(text),
  app_private.logout(),
  app_private.switch_organization(uuid)
to :DATABASE_VISITOR;
