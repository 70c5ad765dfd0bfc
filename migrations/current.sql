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
--!include errors.sql
--!include functions/auth.sql
--!include functions/password_reset.sql
