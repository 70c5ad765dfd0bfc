-- The API edge (issue 11): statement timeouts answer QUERY_TIMEOUT; a row added without an
-- organization answers NO_ORGANIZATION (or UNAUTHENTICATED) instead of FORBIDDEN.
--!include errors.sql
--!include functions/require_organization.sql
--!include functions/tenant_tables.sql
do $$
declare
  v_table regclass;
begin
  for v_table in
    select c.oid::regclass
    from pg_class c
    where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p')
      and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
    order by c.relname
  loop
    call app_private.attach_require_organization(v_table);
  end loop;
end
$$;

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

-- Permissions that cannot be used to gain more; no cross-tenant existence oracles (issue 11,
-- points 8 and 6): roles pass on only what their maker holds, copies of rows (webhook
-- deliveries and their endpoints, activity events of copies) are read only by the readers of
-- their source, and organization slugs are made by the server with a random suffix.
--!include functions/activity.sql
--!include functions/permissions.sql
--!include functions/webhooks.sql
--!include functions/copies.sql
--!include functions/organization_slugs.sql
--!include functions/auth.sql

grant execute on function app_private.login_retry_after(text) to :DATABASE_VISITOR;
