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
