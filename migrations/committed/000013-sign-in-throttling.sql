--! Previous: sha1:6a11815c5073225b415e70083b364d8db213c499
--! Hash: sha1:1a204f5b24b6f60e508f34436901c5aaf31448e5
--! Message: Sign-in throttling

-- Sign-in throttling: 10 failed sign-ins for an email address within 15 minutes lock it for 15
-- minutes (TOO_MANY_ATTEMPTS); a successful sign-in or a password reset clears it.
create table if not exists app_private.login_throttle (
  email text primary key,
  failures integer not null default 0,
  window_started_at timestamptz not null default now(),
  locked_until timestamptz
);
alter table app_private.login_throttle enable row level security;
alter table app_private.login_throttle force row level security;
comment on table app_private.login_throttle is 'Failed sign-ins per email address (known or not) in the current 15-minute window, and the lock they earned.';
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
  ('TOO_MANY_ATTEMPTS', 'AT417', 429, 'Too many failed sign-ins for this account: it is locked for 15 minutes.'),
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
  ('INVALID_EVENT_TYPE', 'AT470', 422, 'A webhook endpoint names an event type that does not exist (see webhookEventTypes).'),
  ('NOT_RETRYABLE', 'AT471', 409, 'Only failed or cancelled deliveries of an enabled endpoint can be sent again.'),
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
--! EndIncluded errors.sql
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
-- Failed sign-ins are throttled per account (known or not): 10 failures within 15 minutes lock
-- the email address for 15 minutes (TOO_MANY_ATTEMPTS, even with the right password); a
-- successful sign-in clears the count. A failure returns null instead of raising, so that its
-- record is committed (the API answers INVALID_CREDENTIALS).
create or replace function app_private.login(email text, password text, organization_id uuid default null) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_email text := lower(btrim(coalesce(login.email, '')));
  v_user_id uuid;
  v_hash text;
  v_locked_until timestamptz;
begin
  select t.locked_until into v_locked_until from app_private.login_throttle t where t.email = v_email;
  if v_locked_until > now() then
    perform app_private.fail('TOO_MANY_ATTEMPTS', format('Too many failed sign-ins for this account; try again in %s minute(s), or reset the password.',
      ceil(extract(epoch from v_locked_until - now()) / 60)));
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
    insert into app_private.login_throttle as t (email, failures, window_started_at)
    values (v_email, 1, now())
    on conflict on constraint login_throttle_pkey do update set
      failures = case when t.window_started_at < now() - interval '15 minutes' then 1 else t.failures + 1 end,
      window_started_at = case when t.window_started_at < now() - interval '15 minutes' then now() else t.window_started_at end,
      locked_until = case
        when t.window_started_at >= now() - interval '15 minutes' and t.failures + 1 >= 10 then now() + interval '15 minutes'
        else t.locked_until
      end;
    return null;
  end if;
  delete from app_private.login_throttle t where t.email = v_email;
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
-- only its hash is stored. It is valid for 7 days, for the invited email only. The invitation
-- email (with the token) is enqueued in the same transaction.
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
  -- The invitation email, with the token (it exists only here), in this transaction
  -- (sql/functions/email.sql).
  perform app_private.enqueue_email(
    'invitation',
    v_email,
    jsonb_build_object(
      'email', v_email,
      'organization_name', o.name,
      'inviter_name', coalesce(u.name, 'A member'),
      'role', invite_member.role,
      'token', v_token,
      'expires_on', app_private.format_day((v_invitation.expires_at at time zone 'UTC')::date)
    ),
    format('invitation:%s', v_invitation.id),
    v_org
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
--! Included functions/password_reset.sql
-- Password reset by email. The API (src/http/auth-mutations.ts: requestPasswordReset,
-- resetPassword) only calls these two functions.
--
--   request_password_reset(email)       always answers true, whether or not an account has that
--                                        address, so it reveals nothing. For an account it creates
--                                        a random token, stores only its SHA-256 hash, and enqueues
--                                        the password_reset email with the token (same transaction).
--                                        One email per account per 5 minutes: a request while the
--                                        last token is younger than that does nothing. A new token
--                                        replaces the older ones: only the newest link works.
--   reset_password(token, new_password) checks the token (RESET_TOKEN_INVALID: unknown, replaced
--                                        or already used; RESET_TOKEN_EXPIRED: older than 1 hour),
--                                        sets the password (bcrypt, as at sign-up), uses the token
--                                        up, signs out every session of the account (whoever knew
--                                        the old password is out) and signs in anew.
-- Idempotent; re-included by later migrations.

create table if not exists app_private.password_reset_tokens (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references app_public.users on delete cascade,
  token_hash bytea not null unique,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  used_at timestamptz
);
create index if not exists password_reset_tokens_user_id_idx on app_private.password_reset_tokens (user_id, created_at);
call app_private.force_rls('app_private.password_reset_tokens');
comment on table app_private.password_reset_tokens is 'Password-reset tokens (hashed): single use, valid 1 hour, the newest per account only.';

create or replace function app_private.password_reset_ttl() returns interval
language sql immutable
set search_path = pg_catalog
as $$ select interval '1 hour' $$;

create or replace function app_private.password_reset_interval() returns interval
language sql immutable
set search_path = pg_catalog
as $$ select interval '5 minutes' $$;

create or replace function app_private.request_password_reset(email text) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user app_public.users;
  v_token text := app_private.random_token();
  v_id uuid;
begin
  -- Locks the account's row: concurrent requests queue, so the rate limit holds.
  select u.* into v_user from app_public.users u where u.email = lower(btrim(request_password_reset.email)) for update;
  if v_user.id is null then
    return true;
  end if;
  if exists (
    select from app_private.password_reset_tokens t
    where t.user_id = v_user.id and t.used_at is null and t.created_at > now() - app_private.password_reset_interval()
  ) then
    return true;
  end if;
  -- Older tokens stop working, and their emails, if still queued, are not sent.
  perform graphile_worker.remove_job(format('send_email:password_reset:%s', t.id))
  from app_private.password_reset_tokens t where t.user_id = v_user.id and t.used_at is null;
  delete from app_private.password_reset_tokens t where t.user_id = v_user.id and t.used_at is null;
  insert into app_private.password_reset_tokens (user_id, token_hash, expires_at)
  values (v_user.id, app_private.hash_token(v_token), now() + app_private.password_reset_ttl())
  returning id into v_id;
  perform app_private.enqueue_email(
    'password_reset',
    v_user.email,
    jsonb_build_object(
      'name', v_user.name,
      'email', v_user.email,
      'token', v_token,
      'valid_for', '1 hour'
    ),
    format('password_reset:%s', v_id)
  );
  return true;
end
$$;

create or replace function app_private.reset_password(token text, new_password text) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_reset app_private.password_reset_tokens;
begin
  select t.* into v_reset from app_private.password_reset_tokens t where t.token_hash = app_private.hash_token(reset_password.token) for update;
  if v_reset.id is null or v_reset.used_at is not null then
    perform app_private.fail('RESET_TOKEN_INVALID', 'This password-reset link is unknown, was replaced by a newer one, or was already used; ask for a new one.');
  end if;
  if v_reset.expires_at <= now() then
    perform app_private.fail('RESET_TOKEN_EXPIRED', 'This password-reset link has expired; ask for a new one.');
  end if;
  if new_password is null or length(new_password) < 8 or octet_length(new_password) > 72 then
    perform app_private.fail('WEAK_PASSWORD', 'The password must be 8 to 72 characters long.');
  end if;
  insert into app_private.user_secrets as s (user_id, password_hash)
  values (v_reset.user_id, public.crypt(new_password, public.gen_salt('bf', 10)))
  on conflict on constraint user_secrets_pkey do update set password_hash = excluded.password_hash, password_changed_at = now();
  update app_private.password_reset_tokens t set used_at = now() where t.id = v_reset.id;
  delete from app_private.password_reset_tokens t where t.user_id = v_reset.user_id and t.used_at is null;
  update app_private.sessions s set revoked_at = now(), revoked_reason = 'password reset'
  where s.user_id = v_reset.user_id and s.revoked_at is null;
  -- A new password ends a sign-in lock (app_private.login).
  delete from app_private.login_throttle t where t.email = (select u.email from app_public.users u where u.id = v_reset.user_id);
  return app_private.start_session(v_reset.user_id, null);
end
$$;

revoke all on function
  app_private.password_reset_ttl(),
  app_private.password_reset_interval(),
  app_private.request_password_reset(text),
  app_private.reset_password(text, text)
from public;
grant execute on function
  app_private.request_password_reset(text),
  app_private.reset_password(text, text)
to :DATABASE_VISITOR;
--! EndIncluded functions/password_reset.sql
