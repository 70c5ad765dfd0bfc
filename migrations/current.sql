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

--!include errors.sql

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

--!include functions/identity.sql
--!include functions/triggers.sql
--!include functions/tenant_tables.sql
--!include functions/members.sql
--!include functions/auth.sql

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
  app_private.fail(text, text),
  app_private.assert_owner_remains(uuid, uuid),
  app_private.register(text, text, text),
  app_private.login(text, text, uuid),
  app_private.refresh(text),
  app_private.logout(),
  app_private.switch_organization(uuid)
to :DATABASE_VISITOR;
