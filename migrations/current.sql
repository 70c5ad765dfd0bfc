-- Sign-in throttling per email address and client, slowing down instead of locking
-- (sql/functions/auth.sql, app_private.login): a stranger's wrong passwords no longer lock a
-- known user out. The per-address lock of 000013 is replaced; its rows are throttle state, not
-- data, and go with it (once: later runs find the new table).
do $$
begin
  if exists (
    select from information_schema.columns
    where table_schema = 'app_private' and table_name = 'login_throttle' and column_name = 'locked_until'
  ) then
    drop table app_private.login_throttle;
  end if;
end
$$;
create table if not exists app_private.login_throttle (
  email text not null,
  -- The caller's network address as the API saw it (app.client_address), or 'unknown'.
  client text not null,
  failures integer not null check (failures > 0),
  last_failed_at timestamptz not null,
  next_attempt_at timestamptz not null,
  constraint login_throttle_pkey primary key (email, client)
);
-- For the purge of forgotten failures (app_private.login deletes a few on every failure).
create index if not exists login_throttle_last_failed_at_idx on app_private.login_throttle (last_failed_at);
alter table app_private.login_throttle enable row level security;
alter table app_private.login_throttle force row level security;
comment on table app_private.login_throttle is 'Failed sign-ins in a row per email address (known or not) and client address, and when that client may try again.';

--!include errors.sql
--!include functions/auth.sql

grant execute on function app_private.login_retry_after(text) to :DATABASE_VISITOR;
