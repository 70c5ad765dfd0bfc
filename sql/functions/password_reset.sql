-- Password reset by email. The API (src/http/auth-mutations.ts: requestPasswordReset,
-- resetPassword) only calls request_password_reset and reset_password.
--
--   request_password_reset(email)       always answers true after the same work, whether or not
--                                        an account has that address, so neither the answer nor
--                                        its time tells: it only queues a password_reset_request
--                                        job with the (lower-cased) address, one per address while
--                                        it waits (job key). The worker then calls
--   start_password_reset(email)          which, for an account, creates a random token, stores only
--                                        its SHA-256 hash, and enqueues the password_reset email
--                                        (same transaction); the token waits for the worker in
--                                        app_private.email_secrets, never in a job
--                                        (sql/functions/email.sql). For no account it does nothing.
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

-- The API's half: the same work for every address (no look-up of accounts here).
create or replace function app_private.request_password_reset(email text) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_email text := lower(btrim(coalesce(request_password_reset.email, '')));
begin
  -- An address no account can have (the format of app_public.users.email) queues nothing.
  if v_email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and length(v_email) <= 320 then
    perform graphile_worker.add_job(
      'password_reset_request',
      json_build_object('email', v_email),
      job_key => 'password_reset_request:' || v_email,
      max_attempts => 5
    );
  end if;
  return true;
end
$$;

-- The worker's half (task password_reset_request); only the worker role may execute it.
create or replace function app_private.start_password_reset(email text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user app_public.users;
  v_token text := app_private.random_token();
  v_id uuid;
  v_expires_at timestamptz;
begin
  -- Locks the account's row: concurrent requests queue, so the rate limit holds.
  select u.* into v_user from app_public.users u where u.email = lower(btrim(start_password_reset.email)) for update;
  if v_user.id is null then
    return;
  end if;
  if exists (
    select from app_private.password_reset_tokens t
    where t.user_id = v_user.id and t.used_at is null and t.created_at > now() - app_private.password_reset_interval()
  ) then
    return;
  end if;
  -- Older tokens stop working, and their emails, if still queued, are not sent.
  perform app_private.cancel_email(format('password_reset:%s', t.id))
  from app_private.password_reset_tokens t where t.user_id = v_user.id and t.used_at is null;
  delete from app_private.password_reset_tokens t where t.user_id = v_user.id and t.used_at is null;
  insert into app_private.password_reset_tokens (user_id, token_hash, expires_at)
  values (v_user.id, app_private.hash_token(v_token), now() + app_private.password_reset_ttl())
  returning id, expires_at into v_id, v_expires_at;
  perform app_private.enqueue_email(
    'password_reset',
    v_user.email,
    jsonb_build_object(
      'name', v_user.name,
      'email', v_user.email,
      'valid_for', '1 hour'
    ),
    format('password_reset:%s', v_id),
    secrets => jsonb_build_object('token', v_token),
    secrets_expire_at => v_expires_at
  );
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
  -- The account's other links stop working, and no email still waiting carries one.
  perform app_private.cancel_email(format('password_reset:%s', t.id))
  from app_private.password_reset_tokens t where t.user_id = v_reset.user_id and (t.used_at is null or t.id = v_reset.id);
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
  app_private.start_password_reset(text),
  app_private.reset_password(text, text)
from public;
grant execute on function
  app_private.request_password_reset(text),
  app_private.reset_password(text, text)
to :DATABASE_VISITOR;
grant execute on function app_private.start_password_reset(text) to :DATABASE_WORKER;
