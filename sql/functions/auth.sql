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

-- Create an account at once and sign in: for the demo data (src/db/seed.ts) and test fixtures,
-- run as the owner. The API never calls it (it would tell that an address has an account,
-- EMAIL_TAKEN): sign-up there goes through an email (sql/functions/registration.sql). The email
-- is stored lower-cased; the password is hashed with bcrypt (pgcrypto).
drop function if exists app_private.register(text, text, text); -- now create_account, owner only
create or replace function app_private.create_account(email text, password text, name text) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_email text := lower(btrim(create_account.email));
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
  insert into app_public.users (email, name) values (v_email, btrim(create_account.name)) returning id into v_user_id;
  insert into app_private.user_secrets (user_id, password_hash) values (v_user_id, public.crypt(password, public.gen_salt('bf', 10)));
  return app_private.start_session(v_user_id, null);
end
$$;
revoke all on function app_private.create_account(text, text, text) from public;

-- Sign-in throttling, per email address AND client: the client is the caller's network address
-- as the API sees it (the setting app.client_address, from Express's req.ip: an IPv4 address or
-- an IPv6 /64, src/http/client-address.ts; 'unknown' when unset). Failed sign-ins are counted
-- per pair, known email or not (the answer tells nothing about whether an account exists). After
-- 5 failures in a row, that client must wait before its next attempt for that address is even
-- checked: 5 seconds, doubling with each further failure, at most 15 minutes (TOO_MANY_ATTEMPTS,
-- with the seconds to wait). So one client guessing one account gets about 15 tries in the first
-- hour and 4 an hour after that, while the same address signing in from anywhere else is not
-- slowed at all: a stranger cannot lock a known user out. A successful sign-in clears its pair; a
-- password reset clears every pair of the address (app_private.reset_password). Failures older
-- than a day are forgotten, and each failure deletes up to 10 forgotten rows, so the table holds
-- little more than the pairs that failed within the last day.

-- The client the current request comes from (set per request by the API: pgSettingsFor).
create or replace function app_private.login_client() returns text
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(nullif(current_setting('app.client_address', true), ''), 'unknown')
$$;

-- How long a client waits after its `failures`-th failure in a row for one address.
create or replace function app_private.login_delay(failures integer) returns interval
language sql immutable
set search_path = pg_catalog
as $$
  select case
    when failures < 5 then interval '0'
    else least(interval '5 seconds' * power(2, least(failures - 5, 20)), interval '15 minutes')
  end
$$;

-- Seconds the current client must still wait before it may sign in as `email` (0: now). Only
-- the caller's own failures count, so it tells nothing about the address or anyone else.
create or replace function app_private.login_retry_after(email text) returns integer
language sql volatile security definer
set search_path = pg_catalog
as $$
  select coalesce(max(ceil(extract(epoch from t.next_attempt_at - clock_timestamp())))::integer, 0)
  from app_private.login_throttle t
  where t.email = left(lower(btrim(coalesce(login_retry_after.email, ''))), 320)
    and t.client = app_private.login_client()
    and t.next_attempt_at > clock_timestamp()
$$;

-- Sign in; optionally straight into an organization (ignored unless the user may enter it).
-- Unknown email and wrong password fail alike, after the same bcrypt work. Throttled per email
-- address and client (above). A failure returns null instead of raising, so that its record is
-- committed (the API answers INVALID_CREDENTIALS).
create or replace function app_private.login(email text, password text, organization_id uuid default null) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_email text := lower(btrim(coalesce(login.email, '')));
  -- No account has a longer address (register allows 320 characters): the throttle key is bounded.
  v_key text := left(lower(btrim(coalesce(login.email, ''))), 320);
  v_client text := app_private.login_client();
  v_user_id uuid;
  v_hash text;
begin
  -- Claim the attempt, counted as a failure until the password proves right: concurrent attempts
  -- of one client for one address queue on this row and each sees the delay the previous one
  -- earned. A client that must still wait gets no password check at all.
  insert into app_private.login_throttle as t (email, client, failures, last_failed_at, next_attempt_at)
  values (v_key, v_client, 1, clock_timestamp(), clock_timestamp() + app_private.login_delay(1))
  on conflict on constraint login_throttle_pkey do update set
    failures = case when t.last_failed_at < clock_timestamp() - interval '1 day' then 1 else t.failures + 1 end,
    last_failed_at = clock_timestamp(),
    next_attempt_at = clock_timestamp()
      + app_private.login_delay(case when t.last_failed_at < clock_timestamp() - interval '1 day' then 1 else t.failures + 1 end)
  where t.next_attempt_at <= clock_timestamp();
  if not found then
    perform app_private.fail('TOO_MANY_ATTEMPTS', format(
      'Too many failed sign-ins for this account from your network address; try again in %s second(s), or reset the password.',
      greatest(app_private.login_retry_after(v_key), 1)));
  end if;
  select u.id, s.password_hash into v_user_id, v_hash
  from app_public.users u
  join app_private.user_secrets s on s.user_id = u.id
  where u.email = v_email;
  if v_hash is null then
    -- Same cost as a real check, so response time does not tell whether the email exists.
    perform public.crypt(coalesce(password, ''), public.gen_salt('bf', 10));
  end if;
  if v_hash is null or public.crypt(coalesce(password, ''), v_hash) is distinct from v_hash then
    -- The claim above stays as the failure. Forget a few failures older than a day.
    delete from app_private.login_throttle t
    where (t.email, t.client) in (
      select o.email, o.client from app_private.login_throttle o
      where o.last_failed_at < clock_timestamp() - interval '1 day'
      limit 10
      for update skip locked
    );
    return null;
  end if;
  delete from app_private.login_throttle t where t.email = v_key and t.client = v_client;
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

-- Create an organization; the signed-in creator becomes its owner. Its slug is made by the
-- server from `slug` (or the name) and a random suffix (sql/functions/organization_slugs.sql),
-- so the answer never depends on the slugs of other tenants.
create or replace function app_public.create_organization(name text, slug text default null) returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user_id uuid := app_public.current_user_id();
  v_org app_public.organizations;
begin
  if v_user_id is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in to create an organization.');
  end if;
  insert into app_public.organizations (name, slug, created_by)
  values (btrim(create_organization.name), coalesce(nullif(btrim(create_organization.slug), ''), create_organization.name), v_user_id)
  returning * into v_org;
  insert into app_public.organization_members (organization_id, user_id, role, created_by) values (v_org.id, v_user_id, 'owner', v_user_id);
  return v_org;
end
$$;
comment on function app_public.create_organization(text, text) is 'Creates an organization with you as its owner. Its slug is made from `slug` (or the name) and a random suffix, e.g. northwind-k7m2qx. Call switchOrganization to work in it.';

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
-- only its hash is stored. It is valid for 7 days, for the invited email only. The invitation
-- email (with the accept link) is enqueued in the same transaction.
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
  -- The invitation email, in this transaction (sql/functions/email.sql); its token waits for the
  -- worker in app_private.email_secrets until the invitation expires, never in the job.
  perform app_private.enqueue_email(
    'invitation',
    v_email,
    jsonb_build_object(
      'email', v_email,
      'organization_name', o.name,
      'inviter_name', coalesce(u.name, 'A member'),
      'role', invite_member.role,
      'expires_on', app_private.format_day((v_invitation.expires_at at time zone 'UTC')::date)
    ),
    format('invitation:%s', v_invitation.id),
    v_org,
    secrets => jsonb_build_object('token', v_token),
    secrets_expire_at => v_invitation.expires_at
  )
  from app_public.organizations o
  left join app_public.users u on u.id = v_invitation.invited_by
  where o.id = v_org;
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
  -- Used: an invitation email still waiting would carry a link that no longer works.
  perform app_private.cancel_email(format('invitation:%s', v_invitation.id));
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
