--! Previous: sha1:876e5194857cb645e7830c425548cccd787aca61
--! Hash: sha1:3f2dcd9ad9d5bd182316395d69b420ba37051fea
--! Message: Identity and permission helpers in PL/pgSQL

-- The identity and permission helpers every policy calls, rewritten in PL/pgSQL: each setting is
-- read once, no nested helper runs per row, and plans are cached per connection. Same answers,
-- a fraction of the cost (docs/PERFORMANCE.md).
--! Included functions/identity.sql
-- Identity helpers: one function per question every policy asks.
--   Who is the user?                      app_public.current_user_id()
--   Which organization is this request for? app_public.current_org_id()
--   What is the user's role there?        app_public.current_member_role()
--   May the user act at least as <role>?  app_public.current_member_has_role(role)
-- Policies call them wrapped in a sub-select, `(select app_public.current_org_id())`, so
-- PostgreSQL evaluates each once per query (an InitPlan), not once per row. They are PL/pgSQL:
-- each reads a setting once into a variable (an SQL function would re-evaluate a nested helper
-- per row it filters), and their plans are cached for the connection (an SQL function is
-- planned again on every call). docs/PERFORMANCE.md has what they cost.
--
-- Inputs are the session settings the API sets per request from a verified access token
-- (src/http/auth.ts): app.user_id, app.session_id, app.org_id. They are only claims: these
-- functions trust nothing they cannot check in the database. Fail closed: a missing, empty
-- or malformed setting means "nobody", never an error and never another tenant.

-- A setting as a uuid, or null when unset, '' (pooled connections keep '' once a setting has
-- been used) or not a uuid.
-- (No SET clause, so PostgreSQL inlines it into its callers; it only calls pg_catalog builtins.)
create or replace function app_private.setting_uuid(name text) returns uuid
language sql stable parallel safe
as $$
  select case when s ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then s::uuid end
  from (select nullif(current_setting(name, true), '') as s) as setting
$$;

-- True on the job worker's own connection (it logs in as :DATABASE_WORKER). Requests log in as
-- the authenticator and cannot change their session user, so they can never pass this check.
create or replace function app_private.is_worker_session() returns boolean
language sql stable parallel safe
as $$
  select session_user = ':DATABASE_WORKER'::name
$$;

-- The signed-in user: app.user_id, if app.session_id names a live session of that user
-- (so signing out or revoking a session stops its access tokens at once). On the worker's
-- connection app.user_id is the actor the job runs for (may be null: the system).
create or replace function app_public.current_user_id() returns uuid
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_user uuid := app_private.setting_uuid('app.user_id');
  v_session uuid := app_private.setting_uuid('app.session_id');
begin
  if app_private.is_worker_session() then
    return v_user;
  end if;
  if v_user is null or v_session is null then
    return null;
  end if;
  return (
    select s.user_id
    from app_private.sessions s
    where s.id = v_session
      and s.user_id = v_user
      and s.revoked_at is null
      and s.expires_at > now()
  );
end
$$;
comment on function app_public.current_user_id() is 'The signed-in user''s id, or null.';

-- The organization of this request: app.org_id, only if the current user is a member of it
-- (or on the worker's connection, which acts for the organization of its job).
create or replace function app_public.current_org_id() returns uuid
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.setting_uuid('app.org_id');
  v_user uuid;
  v_session uuid;
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
  -- The session is live (current_user_id) and its user a member: one query.
  return (
    select m.organization_id
    from app_private.sessions s
    join app_public.organization_members m on m.organization_id = v_org and m.user_id = s.user_id
    where s.id = v_session and s.user_id = v_user and s.revoked_at is null and s.expires_at > now()
  );
end
$$;
comment on function app_public.current_org_id() is 'The organization this request acts in (from the access token), or null when none is chosen or the user is not a member of it.';

-- The current user's role in the current organization (null: not a member / no organization).
-- The worker acts with admin rights inside the organization of its job.
create or replace function app_public.current_member_role() returns app_public.member_role
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.setting_uuid('app.org_id');
  v_user uuid;
begin
  if v_org is null then
    return null;
  end if;
  if app_private.is_worker_session() then
    return case when exists (select from app_public.organizations o where o.id = v_org) then 'admin'::app_public.member_role end;
  end if;
  v_user := app_public.current_user_id();
  if v_user is null then
    return null;
  end if;
  return (
    select m.role
    from app_public.organization_members m
    where m.organization_id = v_org
      and m.user_id = v_user
  );
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
--     every area, except the special portal.write, roles.write and webhooks.write, which stay with
--     admins.
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
  ('webhooks.write', 'Add, change and delete webhook endpoints, rotate their secrets, retry deliveries (special: admins by default)')
on conflict (key) do update set description = excluded.description;

-- Is `permission` one of the special actions that only admins (or a custom role) grant?
create or replace function app_private.is_special_permission(permission text) returns boolean
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select permission in ('portal.write', 'roles.write', 'webhooks.write')
$$;

create or replace function app_public.has_permission(permission text) returns boolean
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid;
  v_user uuid;
  v_session uuid;
  v_member_id uuid;
  v_role app_public.member_role;
begin
  if app_private.is_worker_session() then
    return app_public.current_org_id() is not null;
  end if;
  v_org := app_private.setting_uuid('app.org_id');
  v_user := app_private.setting_uuid('app.user_id');
  v_session := app_private.setting_uuid('app.session_id');
  if v_org is null or v_user is null or v_session is null then
    return false;
  end if;
  -- The member behind a live session (as current_user_id and current_org_id check): one query.
  select m.id, m.role into v_member_id, v_role
  from app_private.sessions s
  join app_public.organization_members m on m.organization_id = v_org and m.user_id = s.user_id
  where s.id = v_session and s.user_id = v_user and s.revoked_at is null and s.expires_at > now();
  if not found then
    return false;
  end if;
  if v_role >= 'admin' then
    return true;
  end if;
  if exists (select 1 from app_public.role_assignments mr where mr.organization_id = v_org and mr.member_id = v_member_id) then
    return exists (
      select 1
      from app_public.role_assignments mr
      join app_public.role_permissions rp on rp.organization_id = mr.organization_id and rp.role_id = mr.role_id
      join app_public.roles r on r.organization_id = mr.organization_id and r.id = mr.role_id and r.deleted_at is null
      where mr.organization_id = v_org and mr.member_id = v_member_id and rp.permission_key = has_permission.permission
    );
  end if;
  if has_permission.permission like '%.read' then
    return true;
  end if;
  return v_role = 'member' and has_permission.permission like '%.write' and not app_private.is_special_permission(has_permission.permission);
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
--! Included functions/portal.sql
-- The client portal: a client's contact, given access to one engagement, signs in with their own
-- account and sees that engagement's client-visible threads, messages and files and its sent
-- invoices, posts messages and accepts proposals. All of it is row-level security: the portal
-- branches of the policies (portal_read in make_tenant_table) call these helpers.
--
-- Access is granted per contact and engagement (grantPortalAccess, by holders of portal.write),
-- with a token shown once; the contact accepts it signed in with the contact's email address.

-- Portal access that is in force: accepted, not revoked, and its contact and engagement not
-- deleted (a client's employee who leaves loses the portal when their contact is deleted).
create or replace view app_private.live_portal_access as
  select a.organization_id, a.id, a.user_id, a.contact_id, a.engagement_id
  from app_public.client_portal_access a
  join app_public.contacts c on c.organization_id = a.organization_id and c.id = a.contact_id and c.deleted_at is null
  join app_public.engagements e on e.organization_id = a.organization_id and e.id = a.engagement_id and e.deleted_at is null
  where a.accepted_at is not null and a.revoked_at is null;
comment on view app_private.live_portal_access is 'Client-portal access in force (accepted, not revoked, contact and engagement not deleted). Read only by the owner''s SECURITY DEFINER helpers.';

-- The organization of the request (app.org_id) if the signed-in user holds live portal access
-- in it; null otherwise.
create or replace function app_public.current_portal_org_id() returns uuid
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.setting_uuid('app.org_id');
  v_user uuid;
begin
  if v_org is null then
    return null;
  end if;
  v_user := app_public.current_user_id();
  if v_user is null then
    return null;
  end if;
  return (select a.organization_id from app_private.live_portal_access a where a.organization_id = v_org and a.user_id = v_user limit 1);
end
$$;
comment on function app_public.current_portal_org_id() is 'The organization you are in as a client-portal user, or null.';

-- The engagements the signed-in portal user may see in the request's organization.
create or replace function app_public.current_portal_engagement_ids() returns uuid[]
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.setting_uuid('app.org_id');
  v_user uuid;
begin
  if v_org is null then
    return '{}';
  end if;
  v_user := app_public.current_user_id();
  if v_user is null then
    return '{}';
  end if;
  return (
    select coalesce(array_agg(a.engagement_id order by a.engagement_id), '{}')
    from app_private.live_portal_access a
    where a.organization_id = v_org and a.user_id = v_user
  );
end
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
    select 1 from app_private.live_portal_access a
    where a.organization_id = can_enter_organization.organization_id and a.user_id = can_enter_organization.user_id
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
  join app_public.engagements e on e.organization_id = a.organization_id and e.id = a.engagement_id and e.deleted_at is null
  where s.token_hash = app_private.hash_token(accept_portal_access.token)
    and a.accepted_at is null and a.revoked_at is null and c.deleted_at is null
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
