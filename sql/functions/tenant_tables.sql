-- Say it once, apply it everywhere: the procedures that make a table a tenant table.
-- A migration creates the table, then makes it safe with one call:
--
--   call app_private.make_tenant_table('app_public.client_companies', 'clients', soft_delete_as => 'client_company');
--
-- which checks its shape, forces row-level security, creates the four standard policies,
-- grants the visitor role exactly what they allow, and attaches the updated_at, audit (+ outbox),
-- email-normalizing and soft-delete machinery. Each step is its own procedure below, so tables with special rules
-- (organization_members, invitations, ...) use the steps they need and write their own policies.
-- Every procedure is idempotent: calling it again re-applies the current rules (e.g. after a
-- column is added, to grant it).
--
-- The standard policies, all TO the visitor role, for a table in permission area <a>
-- (app_public.permitted_org_id: the current organization if the user holds the permission there,
-- sql/functions/permissions.sql):
--   tenant_select  members of the current organization holding <a>.read read its rows (and its
--                  events in activity_events: sql/functions/activity.sql)
--                  [soft-delete tables: only rows that are not deleted]
--                  [portal tables: so do client-portal users, for the rows `portal_read` allows]
--                  [tables of copies, with a `source_table` column (webhook deliveries): only the
--                  rows whose source table they may read, too: sql/functions/copies.sql]
--   tenant_insert  members holding <a>.write add rows to the current organization
--   tenant_update  the same members change its [not deleted] rows; rows stay in the organization
--   tenant_delete  the same members delete its rows (hard-delete tables only; soft-delete tables
--                  get soft_delete_<x>() / restore_<x>() instead and no DELETE privilege)
-- Tables whose rows only lifecycle functions create (insertable => false) get no insert policy
-- or privilege; append-only ledgers (updatable => false) get neither update nor delete.

-- Raise the right error unless the current user acts in an organization with at least `minimum`.
create or replace function app_private.require_member_role(minimum app_public.member_role, action text) returns void
language plpgsql stable
set search_path = pg_catalog
as $$
begin
  if app_public.current_user_id() is null and not app_private.is_worker_session() then
    perform app_private.fail('UNAUTHENTICATED', format('Sign in to %s.', action));
  elsif app_public.current_org_id() is null then
    perform app_private.fail('NO_ORGANIZATION', format('Choose an organization to %s.', action));
  elsif not app_public.current_member_has_role(minimum) then
    perform app_private.fail('NOT_PERMITTED', format('Only members with the %s role or higher may %s.', minimum, action));
  end if;
end
$$;

-- Columns the visitor never writes directly: keys, and what triggers and defaults maintain.
create or replace function app_private.protected_columns() returns text[]
language sql immutable
as $$
  select array['organization_id', 'id', 'created_at', 'created_by', 'updated_at', 'deleted_at']
$$;

-- Checks the shape every tenant table must have and sets its tenant defaults (and the trigger
-- that answers NO_ORGANIZATION for a row added without one).
create or replace procedure app_private.assert_tenant_shape(tbl regclass)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_pk text[];
begin
  if not exists (
    select from pg_attribute
    where attrelid = tbl and attname = 'organization_id' and atttypid = 'uuid'::regtype and attnotnull and not attisdropped
  ) then
    raise exception '% must have a column organization_id uuid not null', tbl;
  end if;
  select array_agg(a.attname::text order by k.ord) into v_pk
  from pg_constraint c
  cross join lateral unnest(c.conkey) with ordinality as k(attnum, ord)
  join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
  where c.conrelid = tbl and c.contype = 'p';
  if v_pk is distinct from array['organization_id', 'id'] then
    raise exception '% must have primary key (organization_id, id), has %', tbl, v_pk;
  end if;
  execute format('alter table %s alter column organization_id set default app_public.current_org_id()', tbl);
  if exists (select from pg_attribute where attrelid = tbl and attname = 'created_by' and not attisdropped) then
    execute format('alter table %s alter column created_by set default app_public.current_user_id()', tbl);
  end if;
  -- A row without an organization is refused with NO_ORGANIZATION (sql/functions/require_organization.sql).
  call app_private.attach_require_organization(tbl);
end
$$;

-- Row-level security, enabled and forced (the table owner is subject to it too, unless the
-- role itself has BYPASSRLS).
create or replace procedure app_private.force_rls(tbl regclass)
language plpgsql
set search_path = pg_catalog
as $$
begin
  execute format('alter table %s enable row level security', tbl);
  execute format('alter table %s force row level security', tbl);
end
$$;

-- The four standard policies (see the top of this file).
create or replace procedure app_private.create_tenant_policies(
  tbl regclass, permission text, soft_delete boolean, portal_read text default null, portal_insert text default null,
  insertable boolean default true, updatable boolean default true
)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_read text := format('organization_id = (select app_public.permitted_org_id(%L))', permission || '.read');
  v_write text := format('organization_id = (select app_public.permitted_org_id(%L))', permission || '.write');
  v_live text := case when soft_delete then ' and deleted_at is null' else '' end;
  v_copies boolean := exists (select from pg_attribute where attrelid = tbl and attname = 'source_table' and not attisdropped);
  v_source text := case when v_copies then ' and source_table = any ((select app_private.readable_activity_tables())::text[])' else '' end;
  v_portal text := case when portal_read is null then ''
    else format(' or (organization_id = (select app_public.current_portal_org_id()) and (%s)%s)', portal_read, v_live) end;
  v_portal_insert text := case when portal_insert is null then ''
    else format(' or (organization_id = (select app_public.current_portal_org_id()) and (%s))', portal_insert) end;
begin
  if not exists (select from app_public.permissions p where p.key = permission || '.write') then
    raise exception 'unknown permission area % (see sql/functions/permissions.sql)', permission;
  end if;
  -- The table's events in the activity log are read by those who read its rows.
  insert into app_private.activity_read_rules (table_name, permission)
  select c.relname, permission || '.read' from pg_class c where c.oid = tbl
  on conflict (table_name) do update set permission = excluded.permission, min_role = null;
  execute format('drop policy if exists tenant_select on %s', tbl);
  execute format('drop policy if exists tenant_insert on %s', tbl);
  execute format('drop policy if exists tenant_update on %s', tbl);
  execute format('drop policy if exists tenant_delete on %s', tbl);

  execute format('create policy tenant_select on %s for select to :DATABASE_VISITOR using ((%s%s%s)%s)', tbl, v_read, v_live, v_source, v_portal);
  execute format('comment on policy tenant_select on %s is %L', tbl,
    format('Members holding %s.read read the current organization''s %srows', permission, case when soft_delete then 'live ' else '' end)
    || case when v_copies then ' whose source table they may read' else '' end
    || case when portal_read is null then '.' else format('; client-portal users read those where %s.', portal_read) end);

  if insertable then
    execute format('create policy tenant_insert on %s for insert to :DATABASE_VISITOR with check ((%s)%s)', tbl, v_write, v_portal_insert);
    execute format('comment on policy tenant_insert on %s is %L', tbl,
      format('Members holding %s.write add rows to the current organization', permission)
      || case when portal_insert is null then '.' else format('; client-portal users add rows where %s.', portal_insert) end);
  end if;

  if updatable then
    execute format('create policy tenant_update on %s for update to :DATABASE_VISITOR using (%s%s) with check (%s)',
      tbl, v_write, v_live, v_write);
    execute format('comment on policy tenant_update on %s is %L', tbl,
      format('Members holding %s.write change the current organization''s %srows; they stay in it.', permission, case when soft_delete then 'live ' else '' end));
  end if;

  if not soft_delete and updatable then
    execute format('create policy tenant_delete on %s for delete to :DATABASE_VISITOR using (%s)', tbl, v_write);
    execute format('comment on policy tenant_delete on %s is %L', tbl,
      format('Members holding %s.write delete the current organization''s rows.', permission));
  end if;
end
$$;

-- Grants matching the standard policies: read; insert and update every column except the
-- protected ones and `readonly_columns` (kept by triggers or lifecycle functions: totals,
-- statuses, numbers); delete only on hard-delete tables. organization_id is never written by the
-- visitor: its default is the request's organization, so the API does not even offer it. `id`
-- may be given on insert (a client-made UUID makes a retried create idempotent).
create or replace procedure app_private.grant_tenant_access(
  tbl regclass, soft_delete boolean, readonly_columns text[] default '{}', insertable boolean default true, updatable boolean default true
)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_insertable text;
  v_updatable text;
begin
  if exists (
    select from unnest(readonly_columns) as r(col)
    where not exists (select from pg_attribute where attrelid = tbl and attname = r.col and not attisdropped)
  ) then
    raise exception 'readonly_columns % are not all columns of %', readonly_columns, tbl;
  end if;
  select
    string_agg(quote_ident(attname), ', ') filter (where attname not in ('organization_id', 'created_at', 'created_by', 'updated_at', 'deleted_at') and attname <> all (readonly_columns)),
    string_agg(quote_ident(attname), ', ') filter (where attname <> all (app_private.protected_columns()) and attname <> all (readonly_columns))
  into v_insertable, v_updatable
  from pg_attribute
  where attrelid = tbl and attnum > 0 and not attisdropped and attgenerated = '';

  execute format('revoke all on %s from public, :DATABASE_VISITOR', tbl);
  execute format('grant select on %s to :DATABASE_VISITOR', tbl);
  if insertable then
    execute format('grant insert (%s) on %s to :DATABASE_VISITOR', v_insertable, tbl);
  end if;
  if updatable and v_updatable is not null then
    execute format('grant update (%s) on %s to :DATABASE_VISITOR', v_updatable, tbl);
  end if;
  if not soft_delete and updatable then
    execute format('grant delete on %s to :DATABASE_VISITOR', tbl);
  end if;
end
$$;

create or replace procedure app_private.attach_updated_at(tbl regclass)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_name text := format('tg_%s__updated_at', (select relname from pg_class where oid = tbl));
begin
  execute format('drop trigger if exists %I on %s', v_name, tbl);
  execute format('create trigger %I before update on %s for each row execute function app_private.tg__updated_at()', v_name, tbl);
end
$$;

-- The audit trigger (app_private.tg__audit): one statement-level trigger per operation, with
-- transition tables. `org_column` holds the organization id; `secret_columns` are never copied.
-- The triggers' arguments also carry the table's classification and parent
-- (app_private.audit_arguments, sql/functions/personal_data.sql), so the trigger reads them from
-- its arguments instead of looking them up for every statement; app_private.classify_columns and
-- app_private.set_audit_parent write them again when they change. Triggers that already carry
-- these arguments are left as they are.
create or replace procedure app_private.attach_audit(tbl regclass, org_column text default 'organization_id', secret_columns text[] default '{}')
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
  v_arguments text[];
  v_args text;
  v_op text;
begin
  if exists (
    select from unnest(secret_columns) as s(col)
    where not exists (select from pg_attribute where attrelid = tbl and attname = s.col and not attisdropped)
  ) then
    raise exception 'secret_columns % are not all columns of %', secret_columns, tbl;
  end if;
  v_arguments := app_private.audit_arguments(tbl, org_column, secret_columns);
  if (
    select count(*) from pg_trigger t
    where t.tgrelid = tbl and t.tgfoid = 'app_private.tg__audit'::regproc
      and t.tgname in (format('tg_%s__audit_insert', v_rel), format('tg_%s__audit_update', v_rel), format('tg_%s__audit_delete', v_rel))
      and app_private.trigger_arguments(t.tgargs, t.tgnargs) = v_arguments
  ) = 3 then
    return;
  end if;
  v_args := (select string_agg(quote_literal(a), ', ') from unnest(v_arguments) as a);
  foreach v_op in array array['insert', 'update', 'delete'] loop
    execute format('drop trigger if exists %I on %s', format('tg_%s__audit_%s', v_rel, v_op), tbl);
    execute format('create trigger %I after %s on %s referencing %s for each statement execute function app_private.tg__audit(%s)',
      format('tg_%s__audit_%s', v_rel, v_op), v_op, tbl,
      case v_op
        when 'insert' then 'new table as new_rows'
        when 'update' then 'old table as old_rows new table as new_rows'
        else 'old table as old_rows'
      end,
      v_args);
  end loop;
end
$$;

-- Soft delete for `tbl` (which needs deleted_at timestamptz): generates
--   app_public.soft_delete_<singular>(id)  members holding <permission>.write: hide the row
--   app_public.restore_<singular>(id)      admins and owners: bring it back within the
--                                          organization's retention window (retention_days)
--   app_public.deleted_<table>()           admins and owners: the deleted rows still restorable
-- They are SECURITY DEFINER because a visitor cannot UPDATE a row into a state its SELECT
-- policy hides; each checks the organization and role itself with the identity helpers.
create or replace procedure app_private.attach_soft_delete(tbl regclass, singular text, permission text)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
  v_label text := replace(singular, '_', ' ');
begin
  if not exists (select from pg_attribute where attrelid = tbl and attname = 'deleted_at' and atttypid = 'timestamptz'::regtype and not attisdropped) then
    raise exception '% needs a deleted_at timestamptz column for soft delete', tbl;
  end if;

  execute format($f$
    create or replace function app_public.%1$I(id uuid) returns %2$s
    language plpgsql volatile security definer
    set search_path = pg_catalog
    as $body$
    declare
      v_row %2$s;
    begin
      perform app_private.require_permission(%3$L, 'delete a %4$s');
      update %2$s as t set deleted_at = now()
      where t.organization_id = app_public.current_org_id() and t.id = %1$I.id and t.deleted_at is null
      returning t.* into v_row;
      if v_row.id is null then
        perform app_private.fail('NOT_FOUND', 'No such %4$s in this organization.');
      end if;
      return v_row;
    end
    $body$
  $f$, 'soft_delete_' || singular, tbl, permission || '.write', v_label);
  execute format('comment on function app_public.%I(uuid) is %L', 'soft_delete_' || singular,
    format('Deletes a %s: it disappears from every read; admins can restore it within the organization''s retention window.', v_label));

  execute format($f$
    create or replace function app_public.%1$I(id uuid) returns %2$s
    language plpgsql volatile security definer
    set search_path = pg_catalog
    as $body$
    declare
      v_row %2$s;
    begin
      perform app_private.require_member_role('admin', 'restore a %3$s');
      update %2$s as t set deleted_at = null
      from app_public.organizations o
      where o.id = t.organization_id
        and t.organization_id = app_public.current_org_id() and t.id = %1$I.id
        and t.deleted_at > now() - make_interval(days => o.retention_days)
      returning t.* into v_row;
      if v_row.id is null then
        if exists (select from %2$s t where t.organization_id = app_public.current_org_id() and t.id = %1$I.id) then
          perform app_private.fail('NOT_RESTORABLE', 'This %3$s is not deleted, or its retention window has passed.');
        end if;
        perform app_private.fail('NOT_FOUND', 'No such %3$s in this organization.');
      end if;
      return v_row;
    end
    $body$
  $f$, 'restore_' || singular, tbl, v_label);
  execute format('comment on function app_public.%I(uuid) is %L', 'restore_' || singular,
    format('Restores a deleted %s (admins and owners, within the retention window).', v_label));

  execute format($f$
    create or replace function app_public.%1$I() returns setof %2$s
    language plpgsql stable security definer
    set search_path = pg_catalog
    as $body$
    begin
      perform app_private.require_member_role('admin', 'list deleted records');
      return query
        select t.*
        from %2$s as t
        join app_public.organizations o on o.id = t.organization_id
        where t.organization_id = app_public.current_org_id()
          and t.deleted_at > now() - make_interval(days => o.retention_days)
        order by t.deleted_at desc, t.id;
    end
    $body$
  $f$, 'deleted_' || v_rel, tbl);
  execute format('comment on function app_public.%I() is %L', 'deleted_' || v_rel,
    format('Deleted %s rows that admins can still restore, most recent first.', v_rel));

  execute format('revoke all on function app_public.%I(uuid) from public', 'soft_delete_' || singular);
  execute format('revoke all on function app_public.%I(uuid) from public', 'restore_' || singular);
  execute format('revoke all on function app_public.%I() from public', 'deleted_' || v_rel);
  execute format('grant execute on function app_public.%I(uuid) to :DATABASE_VISITOR', 'soft_delete_' || singular);
  execute format('grant execute on function app_public.%I(uuid) to :DATABASE_VISITOR', 'restore_' || singular);
  execute format('grant execute on function app_public.%I() to :DATABASE_VISITOR', 'deleted_' || v_rel);
end
$$;

-- The whole recipe for an ordinary tenant table:
--   permission      its permission area: reading needs <area>.read, writing <area>.write
--   soft_delete_as  the singular name for soft_delete_<x>() / restore_<x>() (null: hard deletes)
--   secret_columns  never copied into activity_events
--   readonly_columns never written by the visitor (maintained by triggers or functions)
--   portal_read     a predicate (SQL over the table's columns) for the rows client-portal users
--                   of the organization may read; null: none
--   portal_insert   a predicate for the rows client-portal users may add; null: none
--   insertable      false: rows are only created by lifecycle functions (no INSERT for the visitor)
--   updatable       false: rows never change once written (no UPDATE or DELETE for the visitor)
create or replace procedure app_private.make_tenant_table(
  tbl regclass,
  permission text,
  soft_delete_as text default null,
  secret_columns text[] default '{}',
  readonly_columns text[] default '{}',
  portal_read text default null,
  portal_insert text default null,
  insertable boolean default true,
  updatable boolean default true
)
language plpgsql
set search_path = pg_catalog
as $$
begin
  call app_private.assert_tenant_shape(tbl);
  call app_private.force_rls(tbl);
  call app_private.create_tenant_policies(tbl, permission, soft_delete_as is not null, portal_read, portal_insert, insertable, updatable);
  call app_private.grant_tenant_access(tbl, soft_delete_as is not null, readonly_columns, insertable, updatable);
  call app_private.attach_updated_at(tbl);
  call app_private.attach_audit(tbl, 'organization_id', secret_columns);
  call app_private.attach_email_normalizer(tbl); -- sql/functions/value_domains.sql
  if soft_delete_as is not null then
    call app_private.attach_soft_delete(tbl, soft_delete_as, permission);
  end if;
end
$$;
