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
  v_expires timestamptz;
begin
  perform app_private.require_permission('portal.write', 'give portal access');
  -- The contact first (lock order): two grants to one contact queue, and the second revokes the
  -- access the first made instead of colliding with it.
  select c.* into v_contact from app_public.contacts c
  where c.organization_id = v_org and c.id = grant_portal_access.contact_id and c.deleted_at is null
  for update;
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
  insert into app_private.portal_access_secrets (organization_id, access_id, token_hash, expires_at)
  values (v_org, v_access.id, app_private.hash_token(v_token), now() + interval '14 days')
  returning expires_at into v_expires;
  return row(v_access.id, v_token, v_expires)::app_public.portal_access_token;
end
$$;
comment on function app_public.grant_portal_access(uuid, uuid) is 'Gives a client contact access to one engagement in the client portal (holders of portal.write). Returns a token, shown once, for the contact to accept within 14 days (grant again for a new one).';

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
    and s.expires_at > now()
    and a.accepted_at is null and a.revoked_at is null and c.deleted_at is null
    and lower(c.email) = u.email
  for update of a;
  if v_access.id is null then
    perform app_private.fail('INVITATION_INVALID', 'This portal invitation is unknown, expired, already used, revoked, or for another email address.');
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
