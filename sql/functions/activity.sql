-- Who reads which part of the activity log: an event is visible to exactly the members who may
-- read the rows of its table. A billing clerk without deals.read sees invoice events, never the
-- before/after values of a deal.
--
-- app_private.activity_read_rules holds one rule per audited table: either a permission
-- (`<area>.read`, checked with app_public.has_permission) or, for the foundation tables that have
-- no permission area, the lowest member role that reads them. app_private.create_tenant_policies
-- (sql/functions/tenant_tables.sql) registers every standard tenant table with its area, so a new
-- table's events follow its own read permission without further work; the catalog check
-- sql/checks/audited_tables_have_read_rule.sql fails the build for an audited table without a
-- rule (its events would be visible to nobody).
-- Idempotent; re-included by later migrations.

create table if not exists app_private.activity_read_rules (
  table_name text primary key,
  permission text references app_public.permissions (key),
  min_role app_public.member_role,
  constraint activity_read_rules_one_rule check ((permission is null) <> (min_role is null))
);
create index if not exists activity_read_rules_permission_idx on app_private.activity_read_rules (permission);
alter table app_private.activity_read_rules enable row level security;
alter table app_private.activity_read_rules force row level security;
comment on table app_private.activity_read_rules is 'Which members read an audited table''s events in app_public.activity_events: those holding `permission`, or (foundation tables) those with at least `min_role`.';

insert into app_private.activity_read_rules (table_name, permission, min_role) values
  ('organizations', null, 'viewer'),
  ('organization_members', null, 'viewer'),
  ('invitations', null, 'admin')
on conflict (table_name) do update set permission = excluded.permission, min_role = excluded.min_role;

-- The tables whose events the current user may read in the current organization. Called once per
-- query by the activity_events policy (wrapped in a sub-select), not per row.
create or replace function app_private.readable_activity_tables() returns text[]
language sql stable security definer
set search_path = pg_catalog
as $$
  select coalesce(array_agg(r.table_name order by r.table_name), '{}')
  from app_private.activity_read_rules r
  where case
    when r.permission is not null then app_public.has_permission(r.permission)
    else app_public.current_member_has_role(r.min_role)
  end
$$;
revoke all on function app_private.readable_activity_tables() from public;
grant execute on function app_private.readable_activity_tables() to :DATABASE_VISITOR;
comment on function app_private.readable_activity_tables() is 'Tables whose activity the current user may read in the current organization (app_private.activity_read_rules).';

-- Tables whose rows are copies of other tables' rows: they name the source in a `source_table`
-- column (webhook deliveries: sql/functions/copies.sql). Their rows, and their events here, are
-- read only by those who may read the source table too.
create or replace function app_private.copy_tables() returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(array_agg(c.relname::text order by c.relname), '{}')
  from pg_class c
  join pg_attribute a on a.attrelid = c.oid and a.attname = 'source_table' and not a.attisdropped
  where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p')
$$;
revoke all on function app_private.copy_tables() from public;
grant execute on function app_private.copy_tables() to :DATABASE_VISITOR;
comment on function app_private.copy_tables() is 'app_public tables holding copies of other tables'' rows (they have a source_table column).';

drop policy if exists select_members on app_public.activity_events;
drop policy if exists select_readable on app_public.activity_events;
create policy select_readable on app_public.activity_events for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and table_name = any ((select app_private.readable_activity_tables())::text[])
    and (table_name <> all ((select app_private.copy_tables())::text[])
      or coalesce(new_values, old_values) ->> 'source_table' = any ((select app_private.readable_activity_tables())::text[])
      -- events of copies recorded before copies named their source: admins and owners
      or (coalesce(new_values, old_values) ->> 'source_table' is null and (select app_public.current_member_has_role('admin')))));
comment on policy select_readable on app_public.activity_events is 'Members read the current organization''s events of the tables they may read (app_private.activity_read_rules): a role without deals.read sees no deal events; events of copies (webhook deliveries) also need their source table readable.';
