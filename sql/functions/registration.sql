-- Sign-up by email. The API (src/http/auth-mutations.ts: register, confirmRegistration) only
-- calls these two functions. Signing up never tells whether an address already has an account:
--
--   request_registration(email, password, name)
--       checks the email, password and name (INVALID_EMAIL, WEAK_PASSWORD, INVALID_VALUE: the
--       same for every address), hashes the password with bcrypt, then, for an address without
--       an account, keeps the request (the hash, the name, a random token's SHA-256 hash; valid
--       24 hours) and emails a confirmation link with the token (template registration_confirm);
--       for an address with an account, emails its owner that someone tried to sign up with it
--       (registration_exists: sign in or reset the password). Either way it answers true, after
--       the same bcrypt work. One email per address every 5 minutes: a request while the last is
--       younger does nothing more. A new request replaces an older pending one: only the newest
--       link works. The token waits for the worker in app_private.email_secrets, never in a job.
--   confirm_registration(token, password)
--       checks the token (REGISTRATION_TOKEN_INVALID: unknown, replaced or used;
--       REGISTRATION_TOKEN_EXPIRED), and the password given at sign-up (INVALID_CREDENTIALS): a
--       link alone does not make an account, so someone who signs up with another person's
--       address cannot have them confirm an account whose password the stranger knows. Then it
--       creates the account (EMAIL_TAKEN if the address got one meanwhile: only the address's
--       owner holds the token) and signs in.
-- Idempotent; re-included by later migrations.

create table if not exists app_private.registrations (
  id uuid primary key default gen_random_uuid(),
  email text not null check (email = lower(email) and length(email) <= 320),
  -- For an address without an account: the sign-up to confirm. All three null: the address had
  -- an account, and its owner was told (the row only rate-limits those emails).
  name text check (length(btrim(name)) between 1 and 200),
  password_hash text,
  token_hash bytea unique,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  check ((name is null) = (password_hash is null) and (name is null) = (token_hash is null))
);
create index if not exists registrations_email_idx on app_private.registrations (email, created_at);
create index if not exists registrations_expires_at_idx on app_private.registrations (expires_at);
call app_private.force_rls('app_private.registrations');
comment on table app_private.registrations is 'Sign-ups waiting for their email to be confirmed (password and token hashed, 24 hours), and the notices sent to addresses that already had an account (to send at most one email per address every 5 minutes).';

create or replace function app_private.registration_ttl() returns interval
language sql immutable
set search_path = pg_catalog
as $$ select interval '24 hours' $$;

create or replace function app_private.registration_interval() returns interval
language sql immutable
set search_path = pg_catalog
as $$ select interval '5 minutes' $$;

create or replace function app_private.request_registration(email text, password text, name text) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_email text := lower(btrim(coalesce(request_registration.email, '')));
  v_name text := btrim(coalesce(request_registration.name, ''));
  v_hash text;
  v_user app_public.users;
  v_token text;
  v_id uuid;
  v_expires_at timestamptz;
begin
  -- Every check that can refuse comes first and looks only at the input, never at the accounts.
  if v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' or length(v_email) > 320 then
    perform app_private.fail('INVALID_EMAIL', 'The email address is not valid.');
  end if;
  if password is null or length(password) < 8 or octet_length(password) > 72 then
    perform app_private.fail('WEAK_PASSWORD', 'The password must be 8 to 72 characters long.');
  end if;
  if length(v_name) not between 1 and 200 then
    perform app_private.fail('INVALID_VALUE', 'The name must be 1 to 200 characters long.');
  end if;
  -- The same bcrypt work whether or not the address has an account (and whether or not an email
  -- goes out), so the time taken does not tell either.
  v_hash := public.crypt(password, public.gen_salt('bf', 10));
  -- Concurrent requests for one address queue here, so the one-email-per-interval rule holds.
  perform pg_advisory_xact_lock(hashtextextended('registration:' || v_email, 0));
  delete from app_private.registrations r where r.expires_at < now() - interval '1 day';
  if exists (
    select from app_private.registrations r
    where r.email = v_email and r.created_at > now() - app_private.registration_interval()
  ) then
    return true;
  end if;
  select u.* into v_user from app_public.users u where u.email = v_email;
  -- An older pending sign-up stops working, and its email, if still queued, is not sent.
  perform app_private.cancel_email(format('registration:%s', r.id))
  from app_private.registrations r where r.email = v_email;
  delete from app_private.registrations r where r.email = v_email;
  if v_user.id is not null then
    insert into app_private.registrations (email, expires_at)
    values (v_email, now() + app_private.registration_interval())
    returning id into v_id;
    perform app_private.enqueue_email(
      'registration_exists',
      v_user.email,
      jsonb_build_object('name', v_user.name, 'email', v_user.email),
      format('registration_exists:%s', v_id)
    );
  else
    v_token := app_private.random_token();
    insert into app_private.registrations (email, name, password_hash, token_hash, expires_at)
    values (v_email, v_name, v_hash, app_private.hash_token(v_token), now() + app_private.registration_ttl())
    returning id, expires_at into v_id, v_expires_at;
    perform app_private.enqueue_email(
      'registration_confirm',
      v_email,
      jsonb_build_object('name', v_name, 'email', v_email, 'valid_for', '24 hours'),
      format('registration:%s', v_id),
      secrets => jsonb_build_object('token', v_token),
      secrets_expire_at => v_expires_at
    );
  end if;
  return true;
end
$$;

create or replace function app_private.confirm_registration(token text, password text) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_reg app_private.registrations;
  v_user_id uuid;
begin
  select r.* into v_reg from app_private.registrations r
  where r.token_hash = app_private.hash_token(coalesce(confirm_registration.token, ''))
  for update;
  if v_reg.id is null then
    perform app_private.fail('REGISTRATION_TOKEN_INVALID', 'This confirmation link is unknown, was replaced by a newer one, or was already used; sign up again.');
  end if;
  if v_reg.expires_at <= now() then
    perform app_private.fail('REGISTRATION_TOKEN_EXPIRED', 'This confirmation link has expired; sign up again.');
  end if;
  if public.crypt(coalesce(confirm_registration.password, ''), v_reg.password_hash) is distinct from v_reg.password_hash then
    perform app_private.fail('INVALID_CREDENTIALS', 'The password is not the one given when signing up.');
  end if;
  if exists (select from app_public.users u where u.email = v_reg.email) then
    perform app_private.fail('EMAIL_TAKEN', 'An account with this email already exists; sign in instead.');
  end if;
  insert into app_public.users (email, name) values (v_reg.email, v_reg.name) returning id into v_user_id;
  insert into app_private.user_secrets (user_id, password_hash) values (v_user_id, v_reg.password_hash);
  -- Used up, and no email still waiting carries the link.
  perform app_private.cancel_email(format('registration:%s', v_reg.id));
  delete from app_private.registrations r where r.id = v_reg.id;
  return app_private.start_session(v_user_id, null);
end
$$;

-- One-time secrets whose links have expired, and sign-up requests a day past theirs, are deleted,
-- even when no new email comes to clear them on the way (every secret-bearing enqueue_email does,
-- and every register). Worker only. Returns how many went. The daily run applies the same two
-- rules in batches instead (rules email_secrets and registrations of app_private.purge_system_rows,
-- sql/functions/retention_growing.sql); this stays for operators who want it done at once.
create or replace function app_private.purge_expired_secrets() returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_secrets integer;
  v_requests integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker purges expired secrets.');
  end if;
  delete from app_private.email_secrets s where s.expires_at <= now();
  get diagnostics v_secrets = row_count;
  delete from app_private.registrations r where r.expires_at < now() - interval '1 day';
  get diagnostics v_requests = row_count;
  return v_secrets + v_requests;
end
$$;

revoke all on function
  app_private.purge_expired_secrets(),
  app_private.registration_ttl(),
  app_private.registration_interval(),
  app_private.request_registration(text, text, text),
  app_private.confirm_registration(text, text)
from public;
grant execute on function
  app_private.request_registration(text, text, text),
  app_private.confirm_registration(text, text)
to :DATABASE_VISITOR;
grant execute on function app_private.purge_expired_secrets() to :DATABASE_WORKER;
