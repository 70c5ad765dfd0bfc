--! Previous: sha1:e98f847ff5c3c862c84fb51c9be14b27c74204fe
--! Hash: sha1:37123589b71668cf5584c757bbf50f9c5398c200
--! Message: Data governance: activity log retention by window and by the law of the firm's country, person exports and the final export, the audit trigger's classification in its arguments

--! Included functions/tenant_tables.sql
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
--! EndIncluded functions/tenant_tables.sql
--! Included functions/personal_data.sql
-- Personal data, declared: which columns hold what kind of data, and how the activity log treats
-- each one. Every text-like column (text, email addresses, arrays of them, json) of an audited
-- table and of app_public.users is classified here; the catalog check
-- sql/checks/personal_data_classified.sql fails the build for a column that is not, so a new
-- column is classified the day it is added, by a call next to the table's make_tenant_table.
--
-- category (what the column holds):
--   person_name    a person's name (contacts, users, a signer, a vendor who may be a freelancer)
--   email, phone, address
--                  a way to reach a person
--   identifier     an official number that identifies a person or business (tax ids)
--   person_detail  other facts about a person (job title)
--   free_text      text people type, which may say anything about anyone: notes, bodies,
--                  descriptions, and the names and titles they give things (a client company
--                  named after its owner, a project "Website for Jane Doe")
--   copy           a copy of other records (webhook delivery payloads)
--   secret         credentials or URLs that work as credentials; never in the log in clear
--   none           not personal: values the system sets or chooses from a list (codes,
--                  states, keys, slugs, currencies)
-- in_log (what app_private.tg__audit copies into app_public.activity_events):
--   keep           the value, so the log can show who changed what from what to what; erasure
--                  (sql/functions/erasure.sql) redacts it there when the person is erased
--   mask           the marker "[masked]" in place of a non-null value: the log shows that the
--                  column was set, changed or cleared, never the value
--   omit           nothing: the column is left out of the event entirely
-- Idempotent; re-included by later migrations.

create table if not exists app_private.data_columns (
  schema_name text not null default 'app_public',
  table_name text not null,
  column_name text not null,
  category text not null check (category in ('person_name', 'email', 'phone', 'address', 'identifier', 'person_detail', 'free_text', 'copy', 'secret', 'none')),
  in_log text not null check (in_log in ('keep', 'mask', 'omit')),
  primary key (schema_name, table_name, column_name),
  constraint data_columns_secrets_not_kept check (category <> 'secret' or in_log <> 'keep')
);
alter table app_private.data_columns enable row level security;
alter table app_private.data_columns force row level security;
comment on table app_private.data_columns is 'What each text-like column of an audited table (and of users) holds (category) and how the activity log treats it (in_log: keep, mask, omit). Filled by app_private.classify_columns; checked by sql/checks/personal_data_classified.sql.';

-- The parent record an event names, so a timeline of an invoice shows its line items and
-- payments: rows of `table_name` belong to the row of `parent_table` whose id is in
-- `parent_column`.
create table if not exists app_private.audit_parents (
  schema_name text not null default 'app_public',
  table_name text not null,
  parent_column text not null,
  parent_table text not null,
  primary key (schema_name, table_name)
);
alter table app_private.audit_parents enable row level security;
alter table app_private.audit_parents force row level security;
comment on table app_private.audit_parents is 'For events of table_name: the column naming the parent record and the parent''s table (line item → invoice, payment → invoice, task → project). Filled by app_private.set_audit_parent.';

-- The arguments of a trigger, as text (pg_trigger.tgargs holds `nargs` zero-terminated strings).
create or replace function app_private.trigger_arguments(args bytea, nargs integer) returns text[]
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
declare
  v_arguments text[] := '{}';
  v_end integer;
begin
  for i in 1..nargs loop
    v_end := position('\x00'::bytea in args);
    v_arguments := v_arguments || convert_from(substring(args from 1 for v_end - 1), getdatabaseencoding());
    args := substring(args from v_end + 1);
  end loop;
  return v_arguments;
end
$$;
revoke all on function app_private.trigger_arguments(bytea, integer) from public;

-- What app_private.tg__audit needs to know of `tbl`, as its trigger arguments (their layout is
-- described in sql/functions/triggers.sql): the organization column, the secret columns, the
-- columns left out of the log (secrets and `omit`), the `mask` columns, and the parent column and
-- table ('' when none). app_private.attach_audit writes them; the catalog check
-- sql/checks/audit_triggers_carry_classification.sql finds triggers whose arguments are not these.
create or replace function app_private.audit_arguments(tbl regclass, org_column text, secret_columns text[]) returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select array[
    org_column,
    secret_columns::text,
    array(select distinct s.col from unnest(secret_columns || array_agg(d.column_name) filter (where d.in_log = 'omit')) as s(col) order by 1)::text,
    coalesce(array_agg(d.column_name order by d.column_name) filter (where d.in_log = 'mask'), '{}')::text,
    coalesce(min(p.parent_column), ''),
    coalesce(min(p.parent_table), '')
  ]
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  left join app_private.data_columns d on d.schema_name = n.nspname and d.table_name = c.relname and d.in_log <> 'keep'
  left join app_private.audit_parents p on p.schema_name = n.nspname and p.table_name = c.relname
  where c.oid = tbl
$$;

-- Writes the audit triggers of `tbl` again if their arguments no longer say its classification
-- and parent (app_private.attach_audit leaves them alone otherwise), keeping their organization and
-- secret columns. A table without audit triggers is left alone. Called by classify_columns and
-- set_audit_parent.
create or replace procedure app_private.refresh_audit(tbl regclass)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_arguments text[];
begin
  select app_private.trigger_arguments(t.tgargs, t.tgnargs) into v_arguments
  from pg_trigger t
  where t.tgrelid = tbl and t.tgfoid = 'app_private.tg__audit'::regproc
    and t.tgname = format('tg_%s__audit_insert', (select relname from pg_class where oid = tbl));
  if v_arguments is null then
    return;
  end if;
  -- Triggers attached before their arguments carried the classification (migrations up to
  -- 000025) list the secret columns themselves after the organization column.
  call app_private.attach_audit(tbl, v_arguments[1],
    case when cardinality(v_arguments) = 6 and left(v_arguments[2], 1) = '{' then v_arguments[2]::text[] else v_arguments[2:] end);
end
$$;

-- Classifies columns of `tbl`: `columns` maps each column to its category, or to
-- [category, in_log] to choose the treatment. Without one: secrets are omitted, copies omitted,
-- identifiers masked, everything else kept. Columns must exist; a column classified again takes
-- the new class.
create or replace procedure app_private.classify_columns(tbl regclass, columns jsonb)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_schema text := (select nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = tbl);
  v_table text := (select relname from pg_class where oid = tbl);
  v_column text;
  v_class jsonb;
  v_category text;
begin
  for v_column, v_class in select key, value from jsonb_each(columns) loop
    if not exists (select from pg_attribute where attrelid = tbl and attname = v_column and attnum > 0 and not attisdropped) then
      raise exception 'classify_columns: % has no column %', tbl, v_column;
    end if;
    v_category := case jsonb_typeof(v_class) when 'array' then v_class ->> 0 else v_class #>> '{}' end;
    insert into app_private.data_columns (schema_name, table_name, column_name, category, in_log)
    values (v_schema, v_table, v_column, v_category, coalesce(
      case jsonb_typeof(v_class) when 'array' then v_class ->> 1 end,
      case when v_category in ('secret', 'copy') then 'omit' when v_category = 'identifier' then 'mask' else 'keep' end))
    on conflict (schema_name, table_name, column_name) do update set category = excluded.category, in_log = excluded.in_log;
  end loop;
  call app_private.refresh_audit(tbl);
end
$$;

create or replace procedure app_private.set_audit_parent(tbl regclass, parent_column text, parent_table regclass)
language plpgsql
set search_path = pg_catalog
as $$
begin
  if not exists (select from pg_attribute where attrelid = tbl and attname = parent_column and not attisdropped) then
    raise exception 'set_audit_parent: % has no column %', tbl, parent_column;
  end if;
  insert into app_private.audit_parents (schema_name, table_name, parent_column, parent_table)
  select n.nspname, c.relname, parent_column, (select relname from pg_class where oid = parent_table)
  from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = tbl
  on conflict (schema_name, table_name) do update set parent_column = excluded.parent_column, parent_table = excluded.parent_table;
  call app_private.refresh_audit(tbl);
end
$$;

-- `j` with the non-null values of `mask` columns replaced by "[masked]" (any number of columns).
create or replace function app_private.mask_values(j jsonb, mask text[]) returns jsonb
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
declare
  v_column text;
begin
  foreach v_column in array mask loop
    if j ->> v_column is not null then
      j := jsonb_set(j, array[v_column], '"[masked]"');
    end if;
  end loop;
  return j;
end
$$;

-- What the log keeps of a row: `omit` columns left out, `mask` columns' non-null values replaced
-- by "[masked]". Tables mask one or two columns at most today: those cases are plain expressions
-- of immutable functions, with no sub-query and no SET clause, so the planner inlines the function
-- into the audit trigger's statement (a 1,000-row update runs it 2,000 times); more go through
-- mask_values. (jsonb_build_object is only stable: it would stop the inlining.)
create or replace function app_private.log_values(j jsonb, omit text[], mask text[]) returns jsonb
language sql immutable parallel safe
as $$
  select case
    when j is null then null
    when cardinality(mask) = 0 then j - omit
    when cardinality(mask) = 1 then
      case when j ->> mask[1] is null then j - omit else jsonb_set(j - omit, mask[1:1], '"[masked]"') end
    when cardinality(mask) = 2 then
      case when j ->> mask[1] is null
        then case when j ->> mask[2] is null then j - omit else jsonb_set(j - omit, mask[2:2], '"[masked]"') end
        else jsonb_set(case when j ->> mask[2] is null then j - omit else jsonb_set(j - omit, mask[2:2], '"[masked]"') end, mask[1:1], '"[masked]"')
      end
    else app_private.mask_values(j - omit, mask)
  end
$$;

------------------------------------------------------------------------------------------------
-- The classification of today's tables

call app_private.classify_columns('app_public.organizations', '{"name": "free_text", "slug": "none", "currency": "none", "file_content_types": "none"}');
call app_private.classify_columns('app_public.users', '{"email": "email", "name": "person_name"}');
call app_private.classify_columns('app_public.invitations', '{"email": "email"}');
call app_private.classify_columns('app_public.client_companies', '{"name": "free_text", "website": "free_text", "notes": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.contacts', '{"first_name": "person_name", "last_name": "person_name", "email": "email", "phone": "phone", "job_title": "person_detail"}');
call app_private.classify_columns('app_public.roles', '{"name": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.role_permissions', '{"permission_key": "none"}');
call app_private.classify_columns('app_public.deals', '{"title": "free_text", "lost_reason": "free_text"}');
call app_private.classify_columns('app_public.proposals', '{"title": "free_text", "notes": ["free_text", "mask"], "decided_by_name": "person_name"}');
call app_private.classify_columns('app_public.proposal_line_items', '{"description": "free_text"}');
call app_private.classify_columns('app_public.contracts', '{"title": "free_text", "terms": "free_text", "signer_name": "person_name"}');
call app_private.classify_columns('app_public.engagements', '{"name": "free_text"}');
call app_private.classify_columns('app_public.project_templates', '{"name": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.project_template_milestones', '{"name": "free_text"}');
call app_private.classify_columns('app_public.project_template_tasks', '{"title": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.projects', '{"name": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.milestones', '{"name": "free_text"}');
call app_private.classify_columns('app_public.tasks', '{"title": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.time_entries', '{"description": "free_text"}');
call app_private.classify_columns('app_public.threads', '{"subject": "free_text"}');
call app_private.classify_columns('app_public.messages', '{"body": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.invoice_schedules', '{"description": "free_text"}');
call app_private.classify_columns('app_public.invoices', '{"notes": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.invoice_line_items', '{"description": "free_text"}');
call app_private.classify_columns('app_public.payments', '{"reference": "free_text"}');
call app_private.classify_columns('app_public.vendors', '{"name": "person_name", "email": "email", "phone": "phone", "tax_id": "identifier", "notes": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.bills', '{"reference": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.file_objects', '{"name": "free_text", "content_type": "none", "status": "none", "scan_status": "none", "storage_key": "none"}');
call app_private.classify_columns('app_public.webhook_endpoints', '{"url": ["secret", "mask"], "description": "free_text", "event_types": "none", "disabled_reason": "none"}');
call app_private.classify_columns('app_public.webhook_deliveries', '{"event_type": "none", "payload": "copy", "status": "none", "last_error": ["free_text", "omit"], "source_table": "none"}');

call app_private.set_audit_parent('app_public.contacts', 'client_company_id', 'app_public.client_companies');
call app_private.set_audit_parent('app_public.role_permissions', 'role_id', 'app_public.roles');
call app_private.set_audit_parent('app_public.proposal_line_items', 'proposal_id', 'app_public.proposals');
call app_private.set_audit_parent('app_public.project_template_milestones', 'template_id', 'app_public.project_templates');
call app_private.set_audit_parent('app_public.project_template_tasks', 'template_id', 'app_public.project_templates');
call app_private.set_audit_parent('app_public.milestones', 'project_id', 'app_public.projects');
call app_private.set_audit_parent('app_public.tasks', 'project_id', 'app_public.projects');
call app_private.set_audit_parent('app_public.time_entries', 'engagement_id', 'app_public.engagements');
call app_private.set_audit_parent('app_public.projects', 'engagement_id', 'app_public.engagements');
call app_private.set_audit_parent('app_public.messages', 'thread_id', 'app_public.threads');
call app_private.set_audit_parent('app_public.invoice_line_items', 'invoice_id', 'app_public.invoices');
call app_private.set_audit_parent('app_public.payments', 'invoice_id', 'app_public.invoices');
call app_private.set_audit_parent('app_public.bills', 'vendor_id', 'app_public.vendors');
call app_private.set_audit_parent('app_public.webhook_deliveries', 'endpoint_id', 'app_public.webhook_endpoints');

-- Every audited table's triggers carry its classification and parent: written again where they do
-- not (triggers attached before their arguments carried them, tables classified in other files).
do $$
declare
  v_table regclass;
begin
  for v_table in select distinct t.tgrelid::regclass from pg_trigger t where t.tgfoid = 'app_private.tg__audit'::regproc loop
    call app_private.refresh_audit(v_table);
  end loop;
end
$$;
--! EndIncluded functions/personal_data.sql
--! Included functions/triggers.sql
-- Trigger functions shared by every tenant table. They are attached by the procedures in
-- sql/functions/tenant_tables.sql, never by hand.

-- BEFORE UPDATE, per row: updated_at is the time of the last change, whatever the client sent.
create or replace function app_private.tg__updated_at() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
  new.updated_at := now();
  return new;
end
$$;

-- AFTER INSERT/UPDATE/DELETE, per statement, with transition tables old_rows/new_rows:
-- writes one app_public.activity_events row per changed row (who, organization, what,
-- before/after, when, transaction), then enqueues the outbox job `dispatch_activity` in the
-- same transaction: one per organization and transaction (job_key collapses the statements of
-- one transaction), so a rolled-back change never produces a job and a committed one always does.
-- Arguments, written by app_private.attach_audit (sql/functions/tenant_tables.sql) from the
-- table's classification (sql/functions/personal_data.sql), so that no statement looks it up:
--   TG_ARGV[0]  the column holding the organization id ('organization_id', or 'id' on
--               app_public.organizations)
--   TG_ARGV[1]  the secret columns (array literal): never copied into the event
--   TG_ARGV[2]  the columns left out of the event (array literal): the secrets and the columns
--               classified `omit`
--   TG_ARGV[3]  the columns classified `mask` (array literal, sorted): a non-null value reads
--               "[masked]"
--   TG_ARGV[4], TG_ARGV[5]  the column naming the parent record and the parent's table
--               (app_private.audit_parents), or '' when the table has none
-- Each event also gets its place in the log (seq: commit order for one record, statement order
-- within a transaction), the parent record it belongs to and, for updates, the columns that
-- changed (masked ones included, omitted ones not).
-- An UPDATE that changes nothing but updated_at writes no event, nor does the purge of a deleted
-- organization (sql/functions/organization_deletion.sql).
-- Each row is turned into JSON once (`to_jsonb(new_rows.*)`: the `.*` means the row even when the
-- table has a column named like the alias), in a materialized step the event columns then read
-- (app_private.log_values is inlined, so an unmaterialized JSON would be built once per use).
-- SECURITY DEFINER: the acting role (the visitor) has no privilege on activity_events or
-- on the job queue; only this function writes there.
-- The event statements use generic plans (plan_cache_mode, set for them only): they differ per
-- table only in the values of variables, and a custom plan would be made again for every
-- statement that fires the trigger (with the classification's arrays as constants, PL/pgSQL
-- judged custom plans cheaper and planned the event insert anew each time: a third of a
-- single-row update's audit cost, measured). The setting goes back before the outbox step: set for
-- the whole function it reached graphile_worker's own statements, whose generic plans scanned the
-- whole job table (measured on PostgreSQL 18).
-- The outbox job is added with job_key_mode 'unsafe_dedupe': its key names this transaction, so no
-- worker can have seen or started a job with that key, and a later statement of the same
-- transaction only finds its own uncommitted job, which stays as it is (the mode's risk, acting on
-- a job that already started, cannot arise). It costs two statements against add_jobs' four.
create or replace function app_private.tg__audit() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org_column text := tg_argv[0];
  v_omit text[];
  v_mask text[];
  v_parent_column text;
  v_parent_table text;
  v_actor uuid;
  v_txid bigint;
  v_orgs uuid[];
  v_nestloop text;
  v_plan_cache_mode text;
  v_org uuid;
begin
  -- A deleted organization's purge deletes its log with its rows: no events for it.
  if current_setting('app.erasure', true) <> '' and app_private.erasing(null, 'organization') then
    return null;
  end if;
  if tg_nargs <> 6 then
    raise exception 'The audit trigger of %.% was not attached by app_private.attach_audit (it takes 6 arguments, got %)', tg_table_schema, tg_table_name, tg_nargs;
  end if;
  v_omit := tg_argv[2]::text[];
  v_mask := tg_argv[3]::text[];
  v_parent_column := nullif(tg_argv[4], '');
  v_parent_table := nullif(tg_argv[5], '');
  v_actor := app_public.current_user_id();
  v_txid := pg_current_xact_id()::text::bigint;
  v_plan_cache_mode := current_setting('plan_cache_mode');
  perform set_config('plan_cache_mode', 'force_generic_plan', true);

  if tg_op = 'INSERT' then
    with rows as materialized (select to_jsonb(new_rows.*) as j from new_rows),
    events as (
      insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, old_values, new_values, transaction_id, parent_table, parent_id)
      select (r.j ->> v_org_column)::uuid, v_actor, 'insert', tg_table_name, (r.j ->> 'id')::uuid, null, app_private.log_values(r.j, v_omit, v_mask), v_txid,
        case when r.j ->> v_parent_column is not null then v_parent_table end, (r.j ->> v_parent_column)::uuid
      from rows as r
      returning organization_id
    )
    select array_agg(distinct organization_id) into v_orgs from events;
  elsif tg_op = 'DELETE' then
    with rows as materialized (select to_jsonb(old_rows.*) as j from old_rows),
    events as (
      insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, old_values, new_values, transaction_id, parent_table, parent_id)
      select (r.j ->> v_org_column)::uuid, v_actor, 'delete', tg_table_name, (r.j ->> 'id')::uuid, app_private.log_values(r.j, v_omit, v_mask), null, v_txid,
        case when r.j ->> v_parent_column is not null then v_parent_table end, (r.j ->> v_parent_column)::uuid
      from rows as r
      returning organization_id
    )
    select array_agg(distinct organization_id) into v_orgs from events;
  else
    -- Old and new rows are paired by id. PL/pgSQL keeps this statement's plan for the session: a
    -- plan made while updates changed one row each (a nested loop over the two transition tables)
    -- would pair a later 1,000-row update in n² steps (6× the time of the whole update, measured).
    -- Planned without nested loops, the pairing is a merge or hash join whatever the size; the
    -- setting is this transaction's and goes back right after.
    v_nestloop := current_setting('enable_nestloop');
    perform set_config('enable_nestloop', 'off', true);
    with pairs as materialized (
      select to_jsonb(old_rows.*) as o, to_jsonb(new_rows.*) as n
      from old_rows join new_rows on new_rows.id = old_rows.id
    ),
    events as (
      insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, old_values, new_values, transaction_id, parent_table, parent_id, changed_columns)
      select (p.n ->> v_org_column)::uuid, v_actor,
        case
          when p.o ->> 'deleted_at' is null and p.n ->> 'deleted_at' is not null then 'soft_delete'
          when p.o ->> 'deleted_at' is not null and p.n ->> 'deleted_at' is null then 'restore'
          else 'update'
        end,
        tg_table_name, (p.n ->> 'id')::uuid, app_private.log_values(p.o, v_omit, v_mask), app_private.log_values(p.n, v_omit, v_mask), v_txid,
        case when p.n ->> v_parent_column is not null then v_parent_table end, (p.n ->> v_parent_column)::uuid,
        array(
          select c.key from jsonb_each(p.n) as c
          where c.key <> 'updated_at' and c.key <> all (v_omit) and c.value is distinct from p.o -> c.key
          order by c.key
        )
      from pairs p
      where (p.o - 'updated_at') is distinct from (p.n - 'updated_at')
      returning organization_id
    )
    select array_agg(distinct organization_id) into v_orgs from events;
    perform set_config('enable_nestloop', v_nestloop, true);
  end if;
  perform set_config('plan_cache_mode', v_plan_cache_mode, true);

  if v_orgs is not null then
    foreach v_org in array v_orgs loop
      perform graphile_worker.add_job('dispatch_activity',
        json_build_object('organization_id', v_org, 'transaction_id', v_txid, 'occurred_at', now()),
        job_key => format('dispatch_activity:%s:%s', v_org, v_txid),
        job_key_mode => 'unsafe_dedupe');
    end loop;
  end if;
  return null;
end
$$;

-- The append-only trigger of the activity log (app_private.tg__append_only: BEFORE UPDATE/DELETE
-- per row and BEFORE TRUNCATE) is defined in sql/functions/erasure.sql, with the one door an
-- erasure opens; it was defined here first, and is no longer, so that including this file again
-- cannot put back the version without the door.
--! EndIncluded functions/triggers.sql
--! Included functions/retention.sql
-- Retention: soft-deleted records are purged (hard-deleted) once the organization's retention
-- window (organizations.retention_days, default 30) has passed, by the job worker
-- (src/worker/tasks/retention_purge.ts fans out, tenant_retention_purge.ts runs one
-- organization). A record is purged exactly when it can no longer be restored: restore_<x>() and
-- deleted_<x>() (sql/functions/tenant_tables.sql) offer rows with deleted_at > now() - window,
-- the purge takes those with deleted_at <= now() - window, on the same clock.
--
-- Which tables: every app_public table with organization_id and deleted_at timestamptz, read
-- from the catalog on every run (app_private.soft_delete_tables), so a new soft-delete table is
-- covered the day it exists.
--
-- Foreign keys, never broken: a purged row's parts go with it (line items, milestones, template
-- parts, a role's permissions, portal access: ON DELETE CASCADE; a deleted role still assigned to
-- members is kept, see sql/functions/permissions.sql; time entries of a purged draft invoice are
-- released: SET NULL). A deleted row that a row staying behind still references (a deleted client
-- with a live contact or invoice, a deleted schedule whose invoices remain) is kept, and counted
-- as kept: the purge never deletes or changes live records to make room. Rows referencing each
-- other are purged children first: the purge repeats its passes over the tables until one
-- deletes nothing. A cascade that would reach a row something live still references (a deleted
-- project whose milestone a live schedule bills) is caught, and that row is kept.
--
-- Audit: each purged row gets its `delete` event from the audit trigger like any deletion
-- (secret columns left out, actor null: the system), so the outbox and its consumers learn that
-- the row is gone for good; then ONE summary event (action `purge`, table_name
-- `deleted_records`, record_id the organization) in the same transaction counts the rows purged
-- and kept per table. Only admins and owners read the summary, as only they see deleted records.
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- The activity log: summary events

alter table app_public.activity_events drop constraint if exists activity_events_action_check;
alter table app_public.activity_events add constraint activity_events_action_check
  check (action in ('insert', 'update', 'delete', 'soft_delete', 'restore', 'purge'));
comment on column app_public.activity_events.action is 'insert, update, delete, soft_delete, restore: a row changed (the audit trigger); purge: the retention job''s summary of the deleted records it purged.';

-- Summaries of purges are read by admins and owners (they list and restore deleted records).
insert into app_private.activity_read_rules (table_name, permission, min_role) values
  ('deleted_records', null, 'admin')
on conflict (table_name) do update set permission = excluded.permission, min_role = excluded.min_role;

-- An event that is not one row's change (a job's summary) in the current organization's log,
-- with the outbox job the audit trigger enqueues for changes (dispatch_activity, one per
-- organization and transaction). Besides app_private.tg__audit this is the only way into
-- activity_events: nobody may execute it, so only the owner's SECURITY DEFINER functions call it
-- (the owner alone may insert into the table).
create or replace function app_private.record_activity(action text, table_name text, record_id uuid, new_values jsonb) returns app_public.activity_events
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_event app_public.activity_events;
begin
  if v_org is null then
    perform app_private.fail('NO_ORGANIZATION', 'An activity event belongs to one organization (app.org_id).');
  end if;
  insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, old_values, new_values)
  values (v_org, app_public.current_user_id(), record_activity.action, record_activity.table_name, record_activity.record_id, null, record_activity.new_values)
  returning * into v_event;
  perform graphile_worker.add_job(
    'dispatch_activity',
    json_build_object('organization_id', v_org, 'transaction_id', v_event.transaction_id, 'occurred_at', v_event.occurred_at),
    job_key => format('dispatch_activity:%s:%s', v_org, v_event.transaction_id)
  );
  return v_event;
end
$$;

------------------------------------------------------------------------------------------------
-- Foreign keys of the parts that go with their record

-- Portal access is part of its contact and engagement (it already ends when either is deleted:
-- app_private.live_portal_access); purging them removes it too.
alter table app_public.client_portal_access
  drop constraint if exists client_portal_access_organization_id_contact_id_fkey,
  add constraint client_portal_access_organization_id_contact_id_fkey
    foreign key (organization_id, contact_id) references app_public.contacts on delete cascade,
  drop constraint if exists client_portal_access_organization_id_engagement_id_fkey,
  add constraint client_portal_access_organization_id_engagement_id_fkey
    foreign key (organization_id, engagement_id) references app_public.engagements on delete cascade;

------------------------------------------------------------------------------------------------
-- The purge

-- The soft-delete tables: app_public tables with organization_id and deleted_at timestamptz.
create or replace function app_private.soft_delete_tables() returns setof regclass
language sql stable
set search_path = pg_catalog
as $$
  select c.oid::regclass
  from pg_class c
  where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p') and not c.relispartition
    and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'deleted_at' and a.atttypid = 'timestamptz'::regtype and not a.attisdropped)
    and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
  order by c.relname
$$;

-- A condition over row `t` of `tbl`: no row references it through a foreign key that would refuse
-- its deletion (NO ACTION or RESTRICT), from any table. Cascading and SET NULL keys do not block.
create or replace function app_private.purge_unreferenced(tbl regclass) returns text
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(string_agg(format('not exists (select from %s r where %s)', c.conrelid::regclass, (
    select string_agg(format('r.%I = t.%I', a.attname, af.attname), ' and ' order by k.ord)
    from unnest(c.conkey, c.confkey) with ordinality as k(attnum, fattnum, ord)
    join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
    join pg_attribute af on af.attrelid = c.confrelid and af.attnum = k.fattnum
  )), ' and ' order by c.conname), 'true')
  from pg_constraint c
  where c.contype = 'f' and c.confrelid = tbl and c.confdeltype in ('a', 'r')
$$;

-- Deletes from `tables` the rows of `condition` (its parameters: $1 the organization, $2
-- `cutoff`) that nothing left references, children first: passes over every table
-- (app_private.purge_unreferenced) until a pass deletes nothing. With `keep_referenced`, a row that
-- a cascade would take from under a row that stays is kept (its table retried row by row, by id);
-- without, that is an error. Returns the rows deleted per table (keyed by the table's name, or
-- schema-qualified with `qualified`). Used by the retention purge and the purge of a deleted
-- organization (sql/functions/organization_deletion.sql).
create or replace function app_private.delete_in_passes(tables regclass[], condition text, organization_id uuid, cutoff timestamptz, keep_referenced boolean, qualified boolean) returns jsonb
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_table regclass;
  v_key text;
  v_where text;
  v_counts jsonb := '{}';
  v_pass bigint;
  v_n bigint;
  v_id uuid;
begin
  loop
    v_pass := 0;
    foreach v_table in array tables loop
      v_key := case when qualified then v_table::text else (select c.relname::text from pg_class c where c.oid = v_table) end;
      v_where := format('%s and %s', condition, app_private.purge_unreferenced(v_table));
      begin
        execute format('delete from %s t where %s', v_table, v_where) using organization_id, cutoff;
        get diagnostics v_n = row_count;
      exception when foreign_key_violation then
        if not keep_referenced then
          raise;
        end if;
        -- A cascade reached a row that a live row references: row by row, keeping those.
        v_n := 0;
        for v_id in execute format('select t.id from %s t where %s order by t.id', v_table, v_where) using organization_id, cutoff loop
          begin
            execute format('delete from %s t where t.organization_id = $1 and t.id = $2', v_table) using organization_id, v_id;
            v_n := v_n + 1;
          exception when foreign_key_violation then
            null;
          end;
        end loop;
      end;
      if v_n > 0 then
        v_counts := v_counts || jsonb_build_object(v_key, coalesce((v_counts ->> v_key)::bigint, 0) + v_n);
        v_pass := v_pass + v_n;
      end if;
    end loop;
    exit when v_pass = 0;
  end loop;
  return v_counts;
end
$$;
revoke all on function app_private.delete_in_passes(regclass[], text, uuid, timestamptz, boolean, boolean) from public;

-- Purges the current organization's soft-deleted rows whose retention window has passed (see the
-- top of this file). Returns, and records as one `purge` event when anything was purged:
--   { "retention_days": 30, "deleted_before": "<cutoff>", "purged": {"<table>": n, ...},
--     "kept": {"<table>": n, ...} }   (kept: past the window but still referenced)
-- Only the worker's session, inside one organization; a second run purges nothing more.
create or replace function app_private.purge_deleted_records() returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_days integer;
  v_cutoff timestamptz;
  v_tables regclass[] := array(select app_private.soft_delete_tables());
  v_table regclass;
  v_purged jsonb := '{}';
  v_kept jsonb := '{}';
  v_n integer;
  v_summary jsonb;
begin
  select o.retention_days into v_days from app_public.organizations o where o.id = v_org;
  v_cutoff := now() - make_interval(days => v_days);
  v_purged := app_private.delete_in_passes(v_tables, 't.organization_id = $1 and t.deleted_at <= $2', v_org, v_cutoff, true, false);

  foreach v_table in array v_tables loop
    execute format('select count(*) from %s t where t.organization_id = $1 and t.deleted_at <= $2', v_table) into v_n using v_org, v_cutoff;
    if v_n > 0 then
      v_kept := v_kept || jsonb_build_object((select c.relname::text from pg_class c where c.oid = v_table), v_n);
    end if;
  end loop;

  v_summary := jsonb_build_object('retention_days', v_days, 'deleted_before', v_cutoff, 'purged', v_purged, 'kept', v_kept);
  if v_purged <> '{}' then
    perform app_private.record_activity('purge', 'deleted_records', v_org, v_summary);
  end if;
  return v_summary;
end
$$;

-- One tenant_retention_purge job per organization that has soft-deleted rows past its window
-- (job key tenant_retention_purge:<organization>:<day>). Returns how many organizations.
create or replace function app_private.enqueue_retention_purge(day date) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_expired text;
  v_count integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker runs the retention purge.');
  end if;
  select string_agg(format(
    'select t.organization_id from %s t join app_public.organizations o on o.id = t.organization_id
     where t.deleted_at <= now() - make_interval(days => o.retention_days)', tbl), ' union ')
  into v_expired
  from app_private.soft_delete_tables() as tbl;
  execute format(
    $q$select count(*) from (%s) as o(organization_id),
      lateral graphile_worker.add_job(
        'tenant_retention_purge',
        json_build_object('organization_id', o.organization_id, 'day', $1),
        job_key => format('tenant_retention_purge:%%s:%%s', o.organization_id, $1),
        max_attempts => 10
      ) as j$q$,
    coalesce(v_expired, 'select null::uuid where false'))
  into v_count using day;
  return v_count;
end
$$;

revoke all on function
  app_private.record_activity(text, text, uuid, jsonb),
  app_private.soft_delete_tables(),
  app_private.purge_unreferenced(regclass),
  app_private.purge_deleted_records(),
  app_private.enqueue_retention_purge(date)
from public;
-- The worker's grants are at the end of the migration that includes this file.
--! EndIncluded functions/retention.sql
--! Included functions/activity_retention.sql
-- Retention of the activity log (app_public.activity_events). The log is append-only
-- (sql/functions/erasure.sql, tg__append_only); retention is the second of its two doors, next to
-- erasure, and like it opens only for what the rules below say has expired.
--
-- How long an event is kept, per organization (owners and admins set it through the API, like
-- every organization setting):
--   activity_retention_days               every event: 30 to 3650 days, default 730 (two years:
--                                         the current and the previous financial year, closed
--                                         and audited, stay readable in full)
--   financial_activity_retention_years    events of bookkeeping records (invoices and their line
--                                         items, payments, bills, contracts: the tables declared in
--                                         app_private.record_retention_classes, and events whose
--                                         parent record is one of them): at least as long as the
--                                         law of the organization's country says
--                                         (app_private.financial_retention_rules by
--                                         organizations.country_code; 10 years when no rule
--                                         names the country), never less; longer when the
--                                         organization sets more (1 to 30 years; null: the law's).
--                                         A bookkeeping event is kept for the longer of the two.
-- An organization may not set fewer years than its country's rule: INVALID_VALUE (the rule's
-- years and source in the message). The rules are a table the DBA keeps up to date (not legal
-- advice: the defaults are the common statutory periods; check them with the firm's adviser).
--
-- How events leave, two ways:
--   1. Row deletes, per organization (tenant_daily, in batches: app_private.purge_tenant_rows
--      rule 'activity_events' → app_private.purge_expired_activity). Each batch opens the door
--      (a row in app_private.erasure_transactions, scope 'retention', for this transaction and
--      organization); the append-only trigger lets a delete through only there, and only for an
--      event that has expired by the organization's rules at that moment
--      (app_private.activity_event_expired): the door cannot delete a live event even when
--      opened. Each run leaves one event in the log saying how many events went and up to when
--      (action 'purge', table 'activity_events'), without their contents.
--   2. Dropping whole months, system-wide (daily_maintenance:
--      app_private.drop_expired_activity_partitions): a month partition goes when its last day is
--      older than the longest window any organization has (the longer of its two windows), so
--      every event in it has expired for its organization. A drop is DDL: no row trigger fires;
--      only this function, owned by the database owner, drops months, and each drop is recorded
--      in app_private.activity_partition_drops (which month, when, how many events). Application
--      roles can neither drop nor delete. Row deletes take the events that expire earlier (short
--      windows, ordinary events) without waiting for the month to go.
-- The default partition (events outside the created months, e.g. an import of old events) is
-- never dropped: its events leave by row deletes.
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- The windows an organization sets

do $$
begin
  if to_regtype('app_public.activity_retention_window') is null then
    create domain app_public.activity_retention_window as integer;
  end if;
  if to_regtype('app_public.financial_retention_years') is null then
    create domain app_public.financial_retention_years as integer;
  end if;
  if to_regtype('app_public.country_code') is null then
    create domain app_public.country_code as text;
  end if;
end
$$;
alter domain app_public.activity_retention_window drop constraint if exists activity_retention_window_range;
alter domain app_public.activity_retention_window add constraint activity_retention_window_range check (value between 30 and 3650);
comment on domain app_public.activity_retention_window is 'How many days the activity log keeps an event: 30 to 3650 (ten years).';
alter domain app_public.financial_retention_years drop constraint if exists financial_retention_years_range;
alter domain app_public.financial_retention_years add constraint financial_retention_years_range check (value between 1 and 30);
comment on domain app_public.financial_retention_years is 'How many years bookkeeping records'' events are kept: 1 to 30 (never fewer than the law of the organization''s country).';
alter domain app_public.country_code drop constraint if exists country_code_format;
alter domain app_public.country_code add constraint country_code_format check (value ~ '^[A-Z]{2}$');
comment on domain app_public.country_code is 'An ISO 3166-1 alpha-2 country code, upper case (DE, FR, GB, US).';

insert into app_private.domain_rules (domain_name, constraint_name, code, message) values
  ('app_public.activity_retention_window', 'activity_retention_window_range', 'INVALID_VALUE', 'The activity log''s retention is a whole number of days from 30 to 3650.'),
  ('app_public.financial_retention_years', 'financial_retention_years_range', 'INVALID_VALUE', 'The retention of bookkeeping records'' events is a whole number of years from 1 to 30.'),
  ('app_public.country_code', 'country_code_format', 'INVALID_VALUE', 'A country is its ISO 3166-1 alpha-2 code in capitals, such as DE or GB.')
on conflict (domain_name, constraint_name) do update set code = excluded.code, message = excluded.message;

alter table app_public.organizations
  add column if not exists country_code app_public.country_code,
  add column if not exists activity_retention_days app_public.activity_retention_window not null default 730,
  add column if not exists financial_activity_retention_years app_public.financial_retention_years;
comment on column app_public.organizations.country_code is 'The country whose law the organization keeps its books under (ISO 3166-1 alpha-2); decides how long bookkeeping records'' events are kept at least.';
comment on column app_public.organizations.activity_retention_days is 'Days the activity log keeps an event (30 to 3650, default 730); bookkeeping records'' events are kept at least as long as the law says (financialActivityRetentionYears).';
comment on column app_public.organizations.financial_activity_retention_years is 'Years the activity log keeps the events of bookkeeping records (invoices, line items, payments, bills, contracts): null keeps them as long as the law of the organization''s country says; a number keeps them longer, never shorter.';
-- Owners and admins change them (policy update_current_by_admins), as every setting.
grant update (country_code, activity_retention_days, financial_activity_retention_years) on app_public.organizations to :DATABASE_VISITOR;
call app_private.classify_columns('app_public.organizations', '{"country_code": "none"}');

------------------------------------------------------------------------------------------------
-- What the law says, and which tables are bookkeeping records

create table if not exists app_private.financial_retention_rules (
  country_code text primary key check (country_code ~ '^[A-Z]{2}$' or country_code = '*'),
  years integer not null check (years between 1 and 30),
  source text not null
);
alter table app_private.financial_retention_rules enable row level security;
alter table app_private.financial_retention_rules force row level security;
comment on table app_private.financial_retention_rules is 'How many years the law of a country requires bookkeeping records to be kept (country_code ''*'': any country without a row). Kept up to date by the DBA; the defaults are common statutory periods, not legal advice.';
insert into app_private.financial_retention_rules (country_code, years, source) values
  ('*', 10, 'the longest common period, for a country without a rule'),
  ('AT', 7, 'AT: Bundesabgabenordnung § 132'),
  ('AU', 7, 'AU: Corporations Act 2001 s 286'),
  ('BE', 10, 'BE: Code de droit économique art. III.86'),
  ('CA', 6, 'CA: Income Tax Act s 230(4)'),
  ('CH', 10, 'CH: Obligationenrecht Art. 958f'),
  ('DE', 10, 'DE: Handelsgesetzbuch § 257, Abgabenordnung § 147'),
  ('DK', 5, 'DK: Bogføringsloven § 12'),
  ('ES', 6, 'ES: Código de Comercio art. 30'),
  ('FR', 10, 'FR: Code de commerce art. L123-22'),
  ('GB', 6, 'GB: Companies Act 2006 s 388 and HMRC record keeping'),
  ('IE', 6, 'IE: Companies Act 2014 s 285'),
  ('IT', 10, 'IT: Codice civile art. 2220'),
  ('NL', 7, 'NL: Burgerlijk Wetboek 2:10 and Algemene wet inzake rijksbelastingen art. 52'),
  ('SE', 7, 'SE: Bokföringslag 7 kap. 2 §'),
  ('US', 7, 'US: IRS record keeping (up to 7 years for some claims)')
on conflict (country_code) do nothing;

create table if not exists app_private.record_retention_classes (
  table_name text primary key,
  bookkeeping boolean not null,
  reason text not null
);
alter table app_private.record_retention_classes enable row level security;
alter table app_private.record_retention_classes force row level security;
comment on table app_private.record_retention_classes is 'Whether the events of an app_public table (by name) are bookkeeping records, kept as long as the law says. Every audited table with a money column must be declared (sql/checks/record_retention_declared.sql).';

create or replace procedure app_private.declare_record_retention(tbl regclass, bookkeeping boolean, reason text)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_name text := (select c.relname from pg_class c where c.oid = tbl and c.relnamespace = 'app_public'::regnamespace);
begin
  if v_name is null then
    raise exception 'declare_record_retention: % is not a table of app_public', tbl;
  end if;
  insert into app_private.record_retention_classes (table_name, bookkeeping, reason) values (v_name, bookkeeping, reason)
  on conflict (table_name) do update set bookkeeping = excluded.bookkeeping, reason = excluded.reason;
end
$$;
comment on procedure app_private.declare_record_retention(regclass, boolean, text) is 'Declares whether a table''s records are bookkeeping records (their events kept as long as the law says), and why.';

call app_private.declare_record_retention('app_public.invoices', true, 'invoices issued: the books');
call app_private.declare_record_retention('app_public.invoice_line_items', true, 'what an issued invoice charged');
call app_private.declare_record_retention('app_public.payments', true, 'money received against invoices');
call app_private.declare_record_retention('app_public.bills', true, 'invoices received from suppliers');
call app_private.declare_record_retention('app_public.contracts', true, 'the agreements invoices are issued under');
call app_private.declare_record_retention('app_public.invoice_schedules', false, 'a plan for future invoices; the invoices it issues are kept');
call app_private.declare_record_retention('app_public.deals', false, 'a sales opportunity, not a booking');
call app_private.declare_record_retention('app_public.proposals', false, 'an offer; the contract and invoices that follow are kept');
call app_private.declare_record_retention('app_public.proposal_line_items', false, 'part of an offer');
call app_private.declare_record_retention('app_public.engagements', false, 'the work agreed; its contract and invoices are kept');
call app_private.declare_record_retention('app_public.time_entries', false, 'time worked; what was billed is on the invoice line items');

-- The tables whose events are bookkeeping events (their own and their parts': parent_table).
create or replace function app_private.bookkeeping_tables() returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(array_agg(r.table_name order by r.table_name), '{}') from app_private.record_retention_classes r where r.bookkeeping
$$;

-- The law's years for a country (null: the rule for any country).
create or replace function app_private.financial_retention_law(country_code text) returns app_private.financial_retention_rules
language sql stable
set search_path = pg_catalog
as $$
  select r.* from app_private.financial_retention_rules r
  where r.country_code = coalesce(financial_retention_law.country_code, '*') or r.country_code = '*'
  order by r.country_code = '*' limit 1
$$;

-- An organization's two cut-offs: ordinary events older than activity_before have expired;
-- bookkeeping events older than financial_before have. Statutory periods run from the end of the
-- calendar year a record belongs to (a 2016 invoice kept ten years is kept to the end of 2026), so
-- the bookkeeping cut-off is the start of a year.
create or replace function app_private.activity_retention_cutoffs(organization_id uuid, out activity_before timestamptz, out financial_before timestamptz)
language sql stable
set search_path = pg_catalog
as $$
  select now() - make_interval(days => o.activity_retention_days),
    least(now() - make_interval(days => o.activity_retention_days),
          date_trunc('year', now()) - make_interval(years => greatest(coalesce(o.financial_activity_retention_years, 0), coalesce((app_private.financial_retention_law(o.country_code)).years, 10))))
  from app_public.organizations o where o.id = activity_retention_cutoffs.organization_id
$$;

-- Has this event expired by its organization's rules, now? (The append-only trigger asks before
-- a retention delete goes through.)
create or replace function app_private.activity_event_expired(organization_id uuid, occurred_at timestamptz, table_name text, parent_table text) returns boolean
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(activity_event_expired.occurred_at < case
      when activity_event_expired.table_name = any (app_private.bookkeeping_tables())
        or activity_event_expired.parent_table = any (app_private.bookkeeping_tables()) then c.financial_before
      else c.activity_before end, false)
  from app_private.activity_retention_cutoffs(activity_event_expired.organization_id) c
$$;

-- Fewer years than the law of the organization's country: refused, naming the law.
-- (Security definer: the rules are the owner's table; the visitor changing a setting reads them.)
create or replace function app_private.tg_organizations__financial_retention() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_law app_private.financial_retention_rules := app_private.financial_retention_law(new.country_code);
begin
  if new.financial_activity_retention_years < v_law.years then
    perform app_private.fail('INVALID_VALUE', format('Bookkeeping records must be kept at least %s years here (%s): financialActivityRetentionYears cannot be %s.',
      v_law.years, v_law.source, new.financial_activity_retention_years));
  end if;
  return new;
end
$$;
drop trigger if exists tg_organizations__financial_retention on app_public.organizations;
create trigger tg_organizations__financial_retention before insert or update of country_code, financial_activity_retention_years on app_public.organizations
  for each row execute function app_private.tg_organizations__financial_retention();

------------------------------------------------------------------------------------------------
-- Row deletes (per organization)

-- One batch: deletes at most `batch_size` of the current organization's expired events, oldest
-- first, through the retention door. Called by app_private.purge_tenant_rows('activity_events').
create or replace function app_private.purge_expired_activity(batch_size integer) returns integer
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_cutoffs record;
  v_bookkeeping text[] := app_private.bookkeeping_tables();
  v_n integer;
begin
  select * into v_cutoffs from app_private.activity_retention_cutoffs(v_org);
  insert into app_private.erasure_transactions (transaction_id, organization_id, erasure_id, scope)
  values (pg_current_xact_id()::text::bigint, v_org, v_org, 'retention')
  on conflict (transaction_id) do nothing;
  perform set_config('app.erasure', v_org::text, true);
  -- Every event older than the bookkeeping cut-off, and the ordinary ones older than the other.
  with batch as materialized (
    select e.id, e.occurred_at from app_public.activity_events e
    where e.organization_id = v_org and e.occurred_at < v_cutoffs.activity_before
      and (e.occurred_at < v_cutoffs.financial_before
           or not (e.table_name = any (v_bookkeeping) or coalesce(e.parent_table = any (v_bookkeeping), false)))
    order by e.occurred_at limit batch_size)
  delete from app_public.activity_events e using batch b
  where e.organization_id = v_org and e.id = b.id and e.occurred_at = b.occurred_at;
  get diagnostics v_n = row_count;
  delete from app_private.erasure_transactions t where t.transaction_id = pg_current_xact_id()::text::bigint;
  perform set_config('app.erasure', '', true);
  return v_n;
end
$$;

-- The run's trace in the organization's log: how many events went, and up to when (never what).
-- Called by tenant_daily once a run deleted any.
create or replace function app_private.record_activity_retention(deleted bigint) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_cutoffs record;
begin
  select * into v_cutoffs from app_private.activity_retention_cutoffs(v_org);
  if deleted > 0 then
    perform app_private.record_activity('purge', 'activity_events', v_org, jsonb_build_object(
      'events_deleted', deleted,
      'deleted_before', v_cutoffs.activity_before,
      'bookkeeping_deleted_before', v_cutoffs.financial_before));
  end if;
end
$$;
insert into app_private.activity_read_rules (table_name, permission, min_role) values ('activity_events', null, 'admin')
on conflict (table_name) do update set permission = excluded.permission, min_role = excluded.min_role;

------------------------------------------------------------------------------------------------
-- Dropping whole months (system-wide)

create table if not exists app_private.activity_partition_drops (
  partition_name text not null,
  month date primary key,
  events bigint not null,
  kept_for interval not null,
  dropped_at timestamptz not null default now()
);
alter table app_private.activity_partition_drops enable row level security;
alter table app_private.activity_partition_drops force row level security;
comment on table app_private.activity_partition_drops is 'Every month of the activity log that retention dropped: which, when, how many events it held, and the longest window then in force (kept_for).';

-- The longest any organization keeps an event (the longer of its two windows), as an interval
-- back from now; the defaults when there is no organization.
create or replace function app_private.longest_activity_retention() returns interval
language sql stable
set search_path = pg_catalog
as $$
  select now() - coalesce(min(c.financial_before), now() - interval '10 years')
  from app_public.organizations o, app_private.activity_retention_cutoffs(o.id) c
$$;

-- Drops the month partitions whose every event has expired for its organization: the month ended
-- longer ago than the longest window. Waits at most `lock_wait` for the log (writers hold it
-- briefly; a drop that cannot get it is left for the next run). Returns the months dropped.
create or replace function app_private.drop_expired_activity_partitions(lock_wait interval default '5 seconds') returns setof date
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_kept interval := app_private.longest_activity_retention();
  v_part record;
  v_events bigint;
begin
  for v_part in
    select c.oid::regclass as rel, c.relname::text as name,
      (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)'))[1]::timestamptz as lower_bound,
      (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)'))[2]::timestamptz as upper_bound
    from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'app_public.activity_events'::regclass and pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
    order by 3
  loop
    continue when v_part.upper_bound > now() - v_kept;
    begin
      perform set_config('lock_timeout', (extract(epoch from lock_wait) * 1000)::bigint::text, true);
      lock table app_public.activity_events in access exclusive mode;
      execute format('select count(*) from %s', v_part.rel) into v_events;
      execute format('drop table %s', v_part.rel);
      perform set_config('lock_timeout', '0', true);
    exception when lock_not_available then
      perform set_config('lock_timeout', '0', true);
      raise notice 'drop_expired_activity_partitions: % is busy, left for the next run', v_part.name;
      continue;
    end;
    insert into app_private.activity_partition_drops (partition_name, month, events, kept_for)
    values (v_part.name, v_part.lower_bound::date, v_events, v_kept)
    on conflict (month) do update set events = excluded.events, kept_for = excluded.kept_for, dropped_at = excluded.dropped_at;
    return next v_part.lower_bound::date;
  end loop;
end
$$;

revoke all on function
  app_private.tg_organizations__financial_retention(),
  app_private.bookkeeping_tables(),
  app_private.financial_retention_law(text),
  app_private.activity_retention_cutoffs(uuid),
  app_private.activity_event_expired(uuid, timestamptz, text, text),
  app_private.purge_expired_activity(integer),
  app_private.record_activity_retention(bigint),
  app_private.longest_activity_retention(),
  app_private.drop_expired_activity_partitions(interval)
from public;
grant execute on function
  app_private.record_activity_retention(bigint),
  app_private.drop_expired_activity_partitions(interval)
to :DATABASE_WORKER;
comment on function app_private.purge_expired_activity(integer) is 'One batch of the current organization''s expired activity events, deleted through the retention door (rule activity_events of purge_tenant_rows).';
comment on function app_private.record_activity_retention(bigint) is 'Records in the organization''s log that retention deleted `deleted` events, and the cut-offs (never their contents).';
comment on function app_private.drop_expired_activity_partitions(interval) is 'Drops the activity log''s months older than every organization''s longest window, recording each in app_private.activity_partition_drops; returns the months dropped (daily maintenance).';
--! EndIncluded functions/activity_retention.sql
--! Included functions/erasure.sql
-- Erasure (GDPR art. 17): a person's data is removed or irreversibly redacted everywhere the
-- organization holds it, live rows *and* the activity log, without breaking the ledger.
--
--   eraseContact(contactId)  an owner erases a client contact: app_public.erase_contact records
--                            the request (app_public.erasures, audited: who, when, which scope and
--                            record; never what is erased) and queues the job
--                            `erase_personal_data`, which runs app_private.run_erasure in one
--                            transaction inside the organization.
--
-- What the erasure of a contact does (app_private.erase_contact_data):
--   - the contact row stays (portal access, proposals and invoices keep their references), with
--     first name "Erased", last name "contact", and no email, phone or job title; its portal
--     access ends;
--   - every value the contact's record ever held in a personal column (its history in the log
--     included: an old email address too) is a "needle": emails, phones and the full name are
--     replaced by "[erased]" wherever they appear in the organization's text (columns classified
--     person_name, email, phone, address, identifier, person_detail or free_text in
--     sql/functions/personal_data.sql: a task description quoting the email, a signer name), in
--     its activity log (old and new values of every event), webhook delivery payloads and errors,
--     email records, and the job queue (jobs that carry a needle are removed; an email a worker
--     already holds is recorded as gone out, so it is never sent); the
--     organization's ready exports expire at once (their zips are deleted);
--   - the log's events of the contact's own record lose every personal value;
--   - amounts, dates, statuses and references are never touched: invoices keep their totals and
--     lose the person.
-- Deleting a whole organization is sql/functions/organization_deletion.sql.
--
-- The activity log is append-only (app_private.tg__append_only, below) for every role,
-- the owner included, with one exception: inside the transaction of an erasure (a row in
-- app_private.erasure_transactions, written only by app_private.run_erasure), the old and new
-- values of that organization's events may be rewritten, and nothing else about them. The edit
-- locks of finished records (a signed contract, a sent invoice, an invoiced time entry) let the
-- same transaction redact their text.
-- Idempotent; re-included by later migrations.

create table if not exists app_public.erasures (
  organization_id uuid not null default app_public.current_org_id() references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  scope text not null check (scope in ('contact', 'user', 'organization')),
  subject_id uuid not null,
  requested_by uuid default app_public.current_user_id(),
  status text not null default 'pending' check (status in ('pending', 'done')),
  redacted jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  completed_at timestamptz,
  primary key (organization_id, id)
);
create index if not exists erasures_organization_id_subject_id_idx on app_public.erasures (organization_id, subject_id);
comment on table app_public.erasures is E'@behavior -insert -update -delete\nErasures of personal data (eraseContact, eraseMember, deleteAccount): who asked, when, which record, and how many values were redacted per table. Never what was erased. Admins and owners read them.';
comment on column app_public.erasures.scope is 'What is erased: contact (a client contact), user (a member''s account), organization.';
comment on column app_public.erasures.subject_id is 'The erased record: the contact''s id for scope contact.';
comment on column app_public.erasures.redacted is 'When done: how many rows had values redacted, per table ({"contacts": 1, "activity_events": 7, ...}).';

call app_private.assert_tenant_shape('app_public.erasures');
call app_private.force_rls('app_public.erasures');
call app_private.attach_updated_at('app_public.erasures');
call app_private.attach_audit('app_public.erasures');
call app_private.classify_columns('app_public.erasures', '{"scope": "none", "status": "none", "redacted": "none"}');
insert into app_private.activity_read_rules (table_name, permission, min_role) values ('erasures', null, 'admin')
on conflict (table_name) do update set permission = excluded.permission, min_role = excluded.min_role;

drop policy if exists select_owners on app_public.erasures;
drop policy if exists select_admins on app_public.erasures;
create policy select_admins on app_public.erasures for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and (select app_public.current_member_has_role('admin')));
comment on policy select_admins on app_public.erasures is 'Admins and owners read their organization''s erasures (who asked, when, which record; never what was erased), as they read its deleted records.';
grant select on app_public.erasures to :DATABASE_VISITOR;

-- The transactions erasing right now: the one door through the log's append-only rule.
create table if not exists app_private.erasure_transactions (
  transaction_id bigint primary key,
  organization_id uuid not null,
  erasure_id uuid not null,
  scope text not null default 'contact'
);
alter table app_private.erasure_transactions enable row level security;
alter table app_private.erasure_transactions force row level security;
comment on table app_private.erasure_transactions is 'The transaction of a running erasure (app_private.run_erasure) and its organization: only there may the activity log''s values be redacted. Emptied by the same transaction.';

-- Is the current transaction erasing in `organization_id` (any organization: null), with `scope`
-- (any: null)? Cheap when not: the setting app.erasure is read first, the table only when it is set.
create or replace function app_private.erasing(organization_id uuid default null, scope text default null) returns boolean
language sql stable
set search_path = pg_catalog
as $$
  select nullif(current_setting('app.erasure', true), '') is not null
    and exists (
      select from app_private.erasure_transactions t
      where t.transaction_id = pg_current_xact_id()::text::bigint
        and (erasing.organization_id is null or t.organization_id = erasing.organization_id)
        and (erasing.scope is null or t.scope = erasing.scope)
    )
$$;
revoke all on function app_private.erasing(uuid, text) from public;
grant execute on function app_private.erasing(uuid, text) to :DATABASE_VISITOR, :DATABASE_WORKER;

-- The log's append-only rule, with the erasure's door (see the top of this file).
create or replace function app_private.tg__append_only() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
  -- The doors open on the log only (on a month of the log, tg_relid is the partition:
  -- sql/functions/activity_partitions.sql).
  if tg_op in ('UPDATE', 'DELETE') and app_private.erasing(old.organization_id)
     and (tg_relid = 'app_public.activity_events'::regclass or exists (select from pg_inherits i where i.inhrelid = tg_relid and i.inhparent = 'app_public.activity_events'::regclass)) then
    -- An erasure rewrites the values of its organization's events, nothing else about them
    -- (retention only deletes).
    if tg_op = 'UPDATE' and not app_private.erasing(old.organization_id, 'retention')
       and (to_jsonb(new) - array['old_values', 'new_values']) = (to_jsonb(old) - array['old_values', 'new_values']) then
      return new;
    end if;
    -- The purge of a deleted organization (sql/functions/organization_deletion.sql) deletes its log.
    if tg_op = 'DELETE' and app_private.erasing(old.organization_id, 'organization') then
      return old;
    end if;
    -- Retention (sql/functions/activity_retention.sql) deletes the events that have expired by the
    -- organization's rules, and no other.
    if tg_op = 'DELETE' and app_private.erasing(old.organization_id, 'retention') and app_private.activity_event_expired(old.organization_id, old.occurred_at, old.table_name, old.parent_table) then
      return old;
    end if;
  end if;
  raise exception '% is append-only: rows cannot be changed or deleted', tg_table_name
    using errcode = '42501';
end
$$;
-- The owner may write the two value columns and delete; the trigger above decides when (only an
-- erasure rewrites; the purge of a deleted organization and retention delete).
grant update (old_values, new_values), delete on app_public.activity_events to current_user;

------------------------------------------------------------------------------------------------
-- Redaction

-- `needle` as a case-insensitive regular expression matching itself literally.
create or replace function app_private.literal_pattern(needle text) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select regexp_replace(needle, '([.\\+*?\[^\]$(){}=!<>|:\-#/&])', '\\\1', 'g')
$$;

-- `value` with every occurrence of each needle (any case) replaced by "[erased]".
create or replace function app_private.redact_text(value text, needles text[]) returns text
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
declare
  v_needle text;
begin
  if value is null then
    return null;
  end if;
  foreach v_needle in array needles loop
    value := regexp_replace(value, app_private.literal_pattern(v_needle), '[erased]', 'gi');
  end loop;
  return value;
end
$$;

-- Every string inside `j` (at any depth) redacted; `erase_keys`: top-level keys whose non-null
-- values become "[erased]" whatever they hold.
create or replace function app_private.redact_jsonb(j jsonb, needles text[], erase_keys text[] default '{}') returns jsonb
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
begin
  case jsonb_typeof(j)
    when 'string' then
      return to_jsonb(app_private.redact_text(j #>> '{}', needles));
    when 'object' then
      return (
        select coalesce(jsonb_object_agg(e.key,
          case when e.key = any (erase_keys) and jsonb_typeof(e.value) <> 'null' then '"[erased]"'::jsonb
            else app_private.redact_jsonb(e.value, needles) end), '{}')
        from jsonb_each(j) as e
      );
    when 'array' then
      return (select coalesce(jsonb_agg(app_private.redact_jsonb(e.value, needles) order by e.n), '[]') from jsonb_array_elements(j) with ordinality as e(value, n));
    else
      return j;
  end case;
end
$$;

-- The personal columns of `table_name` (anything classified but none, free text, copies, secrets).
create or replace function app_private.personal_columns(table_name text) returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(array_agg(d.column_name order by d.column_name), '{}')
  from app_private.data_columns d
  where d.schema_name = 'app_public' and d.table_name = personal_columns.table_name
    and d.category in ('person_name', 'email', 'phone', 'address', 'identifier', 'person_detail')
$$;

-- The columns of tenant tables that may hold a person's data as text (classified person_name,
-- email, phone, address, identifier, person_detail, free_text or copy in
-- sql/functions/personal_data.sql): where the erasure redacts a person's values and where an
-- export of one contact looks for them (sql/functions/person_exports.sql).
create or replace function app_private.person_text_columns() returns table (table_name text, column_name text, type regtype)
language sql stable
set search_path = pg_catalog
as $$
  select d.table_name, d.column_name, a.atttypid::regtype
  from app_private.data_columns d
  join pg_class c on c.relname = d.table_name and c.relnamespace = 'app_public'::regnamespace
  join pg_attribute a on a.attrelid = c.oid and a.attname = d.column_name and not a.attisdropped
  where d.schema_name = 'app_public' and d.category in ('person_name', 'email', 'phone', 'address', 'identifier', 'person_detail', 'free_text', 'copy')
    and exists (select from pg_attribute o where o.attrelid = c.oid and o.attname = 'organization_id' and not o.attisdropped)
$$;

-- SQL that is true for a row of `table_name` whose person text columns (those of them in
-- `among`, when given) match the regular expression in `pattern` (a parameter such as '$3'),
-- case-insensitively; 'false' for a table without any.
drop function if exists app_private.person_text_match(text, text);
create or replace function app_private.person_text_match(table_name text, pattern text, among text[] default null) returns text
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(string_agg(format('%I::text ~* %s', t.column_name, pattern), ' or ' order by t.column_name), 'false')
  from app_private.person_text_columns() t
  where t.table_name = person_text_match.table_name and (among is null or t.column_name = any (among))
$$;

-- Redacts `needles` in the current organization everywhere but the subject's own row (the
-- caller clears that one first): live text columns, the activity log, webhook deliveries, email
-- records, the job queue. `subject_table`/`subject_id`: the record whose events lose every
-- personal value. Returns rows changed per table.
create or replace function app_private.redact_organization(needles text[], subject_table text, subject_id uuid) returns jsonb
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_pattern text := (select string_agg(app_private.literal_pattern(n), '|') from unnest(needles) as n);
  v_counts jsonb := '{}';
  v_table record;
  v_export record;
  v_n bigint;
begin
  if cardinality(needles) = 0 then
    return v_counts;
  end if;
  -- Live text: every classified text column of a tenant table, one update per table (app_public.users
  -- is global: its rows are people's own accounts, erased by themselves).
  for v_table in
    select t.table_name,
      string_agg(format(case
        when t.type = 'jsonb'::regtype then '%1$I = app_private.redact_jsonb(%1$I, $2)'
        -- an email address column keeps a valid address, one per row: erased-<id>@erased.invalid
        when t.type = 'app_public.email_address'::regtype then '%1$I = case when %1$I ~* $3 then format(''erased-%%s@erased.invalid'', id) else %1$I end'
        else '%1$I = app_private.redact_text(%1$I, $2)'
      end, t.column_name), ', ' order by t.column_name) as sets,
      app_private.person_text_match(t.table_name, '$3') as matches
    from app_private.person_text_columns() t
    group by t.table_name
    order by t.table_name
  loop
    execute format('update app_public.%I set %s where organization_id = $1 and (%s)', v_table.table_name, v_table.sets, v_table.matches)
      using v_org, needles, v_pattern;
    get diagnostics v_n = row_count;
    if v_n > 0 then
      v_counts := v_counts || jsonb_build_object(v_table.table_name, v_n);
    end if;
  end loop;

  -- The activity log (after the live rows: their redaction wrote events too).
  update app_public.activity_events e
  set old_values = app_private.redact_jsonb(e.old_values, needles, case when e.table_name = subject_table and e.record_id = subject_id then app_private.personal_columns(subject_table) else '{}' end),
      new_values = app_private.redact_jsonb(e.new_values, needles, case when e.table_name = subject_table and e.record_id = subject_id then app_private.personal_columns(subject_table) else '{}' end)
  where e.organization_id = v_org
    and ((e.table_name = subject_table and e.record_id = subject_id) or e.old_values::text ~* v_pattern or e.new_values::text ~* v_pattern);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('activity_events', v_n);

  -- Emails: who they went to, and what the mail server said about it.
  update app_private.email_messages m
  set recipient = case when m.recipient ~* v_pattern then '[erased]' else m.recipient end,
      transport_detail = app_private.redact_text(m.transport_detail, needles),
      message_id = app_private.redact_text(m.message_id, needles)
  where m.organization_id = v_org and (m.recipient ~* v_pattern or m.transport_detail ~* v_pattern or m.message_id ~* v_pattern);
  get diagnostics v_n = row_count;
  if v_n > 0 then
    v_counts := v_counts || jsonb_build_object('email_messages', v_n);
  end if;

  -- Jobs of the organization that carry a needle are removed, taken by a worker or not. An email
  -- to the erased person that a worker already holds is recorded as gone out, with nobody as its
  -- recipient, so that app_private.claim_email answers "already sent" and it is never sent (one
  -- being handed to the mail server at this very moment cannot be called back).
  insert into app_private.email_messages as m (message_key, organization_id, template, recipient, sent_at, message_id, transport_detail)
  select j.payload ->> 'message_key', v_org, j.payload ->> 'template', '[erased]', now(), 'not-sent:erased', 'not sent: its recipient was erased'
  from graphile_worker._private_jobs j
  where j.payload ->> 'organization_id' = v_org::text and j.payload ->> 'message_key' is not null
    and j.payload ->> 'template' ~ '^[a-z][a-z0-9_]*$' and j.payload::text ~* v_pattern
  on conflict on constraint email_messages_pkey do update
    set recipient = '[erased]', sent_at = coalesce(m.sent_at, excluded.sent_at), message_id = coalesce(m.message_id, excluded.message_id),
      transport_detail = case when m.sent_at is null then excluded.transport_detail else app_private.redact_text(m.transport_detail, needles) end;
  delete from app_private.email_secrets s
  where s.organization_id = v_org and exists (
    select from graphile_worker._private_jobs j
    where j.key = 'send_email:' || s.message_key and j.payload::text ~* v_pattern
  );
  delete from graphile_worker._private_jobs j
  where j.payload ->> 'organization_id' = v_org::text
    and (j.payload::text ~* v_pattern or j.last_error ~* v_pattern);
  get diagnostics v_n = row_count;
  if v_n > 0 then
    v_counts := v_counts || jsonb_build_object('jobs', v_n);
  end if;

  -- Exports made before hold the person's data: they expire now, and data_export_expire deletes
  -- their zips (sql/functions/data_exports.sql).
  v_n := 0;
  for v_export in
    update app_public.data_exports e set expires_at = now()
    where e.organization_id = v_org and e.status = 'ready' and e.expires_at > now()
    returning e.id
  loop
    perform graphile_worker.add_job('data_export_expire', json_build_object('organization_id', v_org, 'export_id', v_export.id),
      job_key => format('data_export_expire:%s', v_export.id), max_attempts => 25);
    v_n := v_n + 1;
  end loop;
  if v_n > 0 then
    v_counts := v_counts || jsonb_build_object('data_exports', v_n);
  end if;
  return v_counts;
end
$$;

------------------------------------------------------------------------------------------------
-- Contacts

-- Every email, phone and full name the contact's record ever had in the current organization (its
-- history too), longest first (a longer needle containing a shorter one is replaced whole), 5
-- characters or more: what the erasure replaces everywhere, and what an export of the contact
-- looks for (sql/functions/person_exports.sql). Shorter ones are only erased from the contact's
-- own record and events.
create or replace function app_private.contact_needles(contact_id uuid) returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(array_agg(n order by length(n) desc, n), '{}')
  from (
    select distinct trim(v) as n
    from (
      select x.v
      from app_public.contacts c
      cross join lateral (values (c.email::text), (c.phone), (concat_ws(' ', c.first_name, c.last_name))) as x(v)
      where c.organization_id = app_public.current_org_id() and c.id = contact_needles.contact_id
      union all
      select x.j ->> k
      from app_public.activity_events e
      cross join lateral (values (e.old_values), (e.new_values)) as x(j)
      cross join unnest(array['email', 'phone']) as k
      where e.organization_id = app_public.current_org_id() and e.table_name = 'contacts' and e.record_id = contact_needles.contact_id
      union all
      select concat_ws(' ', x.j ->> 'first_name', x.j ->> 'last_name')
      from app_public.activity_events e
      cross join lateral (values (e.old_values), (e.new_values)) as x(j)
      where e.organization_id = app_public.current_org_id() and e.table_name = 'contacts' and e.record_id = contact_needles.contact_id and x.j is not null
    ) as values_held
    where length(trim(v)) >= 5 and trim(v) <> '[erased]'
  ) as needles
$$;

create or replace function app_private.erase_contact_data(contact_id uuid) returns jsonb
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_contact app_public.contacts;
  v_needles text[];
  v_counts jsonb;
begin
  select c.* into v_contact from app_public.contacts c where c.organization_id = v_org and c.id = erase_contact_data.contact_id for update;
  if not found then
    return '{}';
  end if;
  v_needles := app_private.contact_needles(v_contact.id);

  update app_public.contacts c
  set first_name = 'Erased', last_name = 'contact', email = null, phone = null, job_title = null, is_primary = false
  where c.organization_id = v_org and c.id = v_contact.id;
  delete from app_public.client_portal_access p where p.organization_id = v_org and p.contact_id = v_contact.id;

  v_counts := jsonb_build_object('contacts', 1) || app_private.redact_organization(v_needles, 'contacts', v_contact.id);
  return v_counts;
end
$$;

------------------------------------------------------------------------------------------------
-- Requests and the job

create or replace function app_public.erase_contact(contact_id uuid) returns app_public.erasures
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
begin
  if v_org is null then
    perform app_private.fail('NO_ORGANIZATION', 'Choose an organization first (switchOrganization) to erase a contact.');
  end if;
  if not app_public.current_member_has_role('owner') then
    perform app_private.fail('NOT_PERMITTED', 'Only an owner may erase a contact''s personal data.');
  end if;
  if not exists (select from app_public.contacts c where c.organization_id = v_org and c.id = erase_contact.contact_id) then
    perform app_private.fail('NOT_FOUND', 'No such contact in this organization.');
  end if;
  return app_private.request_erasure('contact', erase_contact.contact_id);
end
$$;
revoke all on function app_public.erase_contact(uuid) from public;
grant execute on function app_public.erase_contact(uuid) to :DATABASE_VISITOR;
comment on function app_public.erase_contact(uuid) is E'Erases a client contact''s personal data (GDPR art. 17), owners only: the contact keeps its place (and invoices their amounts) but loses name, email, phone and job title, everywhere the organization holds them, the activity log included. Runs as a job; the returned erasure turns `done` when it has. Irreversible.';

-- The job's work, in one transaction inside the erasure's organization (the worker sets
-- app.org_id): opens the log's door for this transaction, erases, records the counts, closes it.
-- Idempotent: a done erasure is left alone.
create or replace function app_private.run_erasure(erasure_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_erasure app_public.erasures;
  v_counts jsonb;
begin
  select e.* into v_erasure from app_public.erasures e where e.organization_id = v_org and e.id = run_erasure.erasure_id for update;
  if not found or v_erasure.status = 'done' then
    return null;
  end if;
  insert into app_private.erasure_transactions (transaction_id, organization_id, erasure_id)
  values (pg_current_xact_id()::text::bigint, v_org, v_erasure.id);
  perform set_config('app.erasure', v_erasure.id::text, true);

  case v_erasure.scope
    when 'contact' then v_counts := app_private.erase_contact_data(v_erasure.subject_id);
    when 'user' then v_counts := app_private.erase_user_data(v_erasure.subject_id);
  end case;

  delete from app_private.erasure_transactions t where t.transaction_id = pg_current_xact_id()::text::bigint;
  perform set_config('app.erasure', '', true);
  update app_public.erasures e set status = 'done', completed_at = now(), redacted = v_counts
  where e.organization_id = v_org and e.id = v_erasure.id;
  return v_counts;
end
$$;
revoke all on function app_private.run_erasure(uuid) from public;
grant execute on function app_private.run_erasure(uuid) to :DATABASE_WORKER;
comment on function app_private.run_erasure(uuid) is 'Runs an erasure (the erase_personal_data job), in the erasure''s organization, in one transaction; returns the rows redacted per table.';

------------------------------------------------------------------------------------------------
-- Users: a member leaving (eraseMember, owners) and self-service account deletion (deleteAccount)
--
-- A user's account is global (app_public.users: one email, one name, many organizations); what an
-- organization holds about them is its own. eraseMember removes a member from the organization
-- and erases their email and name from its records and log (scope user, in that organization);
-- the account stays theirs. deleteAccount does that in every organization the user belongs to,
-- ends their sign-in at once (sessions revoked, password and reset tokens deleted, portal access
-- ended), and queues `erase_account`, which, once the organizations' erasures are done, replaces
-- the account's email and name (erased-<id>@erased.invalid, "Erased user") and removes what the
-- system holds under the email (sign-in throttling, pending sign-ups, emails not yet sent). The
-- user's id stays in the log as the actor of their changes: a pseudonymous id whose name is gone.

-- One organization's part (run_erasure, scope user): the email and the name (5 characters or
-- more) wherever the organization's text, log, emails and jobs hold them.
create or replace function app_private.erase_user_data(user_id uuid) returns jsonb
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_needles text[];
begin
  select coalesce(array_agg(n order by length(n) desc, n), '{}') into v_needles
  from (
    select u.email::text as n from app_public.users u where u.id = erase_user_data.user_id and u.email::text not like 'erased-%@erased.invalid'
    union
    select trim(u.name) from app_public.users u where u.id = erase_user_data.user_id and length(trim(u.name)) >= 5 and u.name <> 'Erased user'
  ) as needles;
  delete from app_public.organization_members m where m.organization_id = app_public.current_org_id() and m.user_id = erase_user_data.user_id;
  return app_private.redact_organization(v_needles, 'users', erase_user_data.user_id);
end
$$;

-- Queues the erasure of `subject_id` (a contact's id for scope contact, a user's for scope user) in
-- the current organization; the caller has checked who may. One request per subject at a time:
-- asking again returns the pending one.
create or replace function app_private.request_erasure(scope text, subject_id uuid) returns app_public.erasures
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_erasure app_public.erasures;
begin
  select e.* into v_erasure from app_public.erasures e
  where e.organization_id = v_org and e.scope = request_erasure.scope and e.subject_id = request_erasure.subject_id and e.status = 'pending';
  if found then
    return v_erasure;
  end if;
  insert into app_public.erasures (organization_id, scope, subject_id, requested_by)
  values (v_org, request_erasure.scope, request_erasure.subject_id, app_public.current_user_id())
  returning * into v_erasure;
  perform graphile_worker.add_job(
    'erase_personal_data',
    json_build_object('organization_id', v_org, 'erasure_id', v_erasure.id, 'actor_id', app_public.current_user_id()),
    job_key => 'erase_personal_data:' || v_erasure.id,
    max_attempts => 10
  );
  return v_erasure;
end
$$;
revoke all on function app_private.request_erasure(text, uuid) from public;
drop function if exists app_private.request_user_erasure(uuid);

create or replace function app_public.erase_member(member_id uuid) returns app_public.erasures
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_member app_public.organization_members;
  v_erasure app_public.erasures;
begin
  if v_org is null then
    perform app_private.fail('NO_ORGANIZATION', 'Choose an organization first (switchOrganization) to erase a member.');
  end if;
  if not app_public.current_member_has_role('owner') then
    perform app_private.fail('NOT_PERMITTED', 'Only an owner may erase a member''s personal data.');
  end if;
  select m.* into v_member from app_public.organization_members m where m.organization_id = v_org and m.id = erase_member.member_id for update;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such member in this organization.');
  end if;
  if v_member.user_id = app_public.current_user_id() then
    perform app_private.fail('NOT_PERMITTED', 'To erase yourself, delete your account (deleteAccount).');
  end if;
  v_erasure := app_private.request_erasure('user', v_member.user_id);
  delete from app_public.organization_members m where m.organization_id = v_org and m.id = v_member.id;
  update app_public.client_portal_access a set revoked_at = coalesce(a.revoked_at, now())
  where a.organization_id = v_org and a.user_id = v_member.user_id;
  return v_erasure;
end
$$;
revoke all on function app_public.erase_member(uuid) from public;
grant execute on function app_public.erase_member(uuid) to :DATABASE_VISITOR;
comment on function app_public.erase_member(uuid) is E'Removes a member who leaves and erases their email and name from this organization''s records and activity log (owners only; GDPR art. 17). Their account stays theirs. Runs as a job; the returned erasure turns `done` when it has. Irreversible.';

create or replace function app_public.delete_account() returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user uuid := app_public.current_user_id();
  v_org_setting text := current_setting('app.org_id', true);
  v_member record;
begin
  if v_user is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in to delete your account.');
  end if;
  -- No organization is left without an owner.
  for v_member in
    select m.organization_id from app_public.organization_members m
    where m.user_id = v_user and m.role = 'owner'
      and not exists (select from app_public.organization_members o where o.organization_id = m.organization_id and o.role = 'owner' and o.user_id <> v_user)
  loop
    perform app_private.fail('LAST_OWNER', 'You are the last owner of an organization: make someone else owner (or delete the organization) before deleting your account.');
  end loop;
  -- Each organization's part, as that organization (its erasure is recorded and audited there).
  for v_member in
    select m.id, m.organization_id from app_public.organization_members m where m.user_id = v_user order by m.organization_id
  loop
    perform set_config('app.org_id', v_member.organization_id::text, true);
    perform app_private.request_erasure('user', v_user);
    delete from app_public.organization_members m where m.organization_id = v_member.organization_id and m.id = v_member.id;
  end loop;
  perform set_config('app.org_id', coalesce(v_org_setting, ''), true);
  -- Signed out everywhere, now.
  update app_private.sessions s set revoked_at = now(), revoked_reason = 'account deleted' where s.user_id = v_user and s.revoked_at is null;
  delete from app_private.user_secrets s where s.user_id = v_user;
  delete from app_private.password_reset_tokens t where t.user_id = v_user;
  update app_public.client_portal_access a set revoked_at = coalesce(a.revoked_at, now()) where a.user_id = v_user;
  perform graphile_worker.add_job('erase_account', json_build_object('user_id', v_user), job_key => 'erase_account:' || v_user, max_attempts => 25);
  return true;
end
$$;
revoke all on function app_public.delete_account() from public;
grant execute on function app_public.delete_account() to :DATABASE_VISITOR;
comment on function app_public.delete_account() is E'Deletes your account (GDPR art. 17): you leave every organization, are signed out everywhere, and your email and name are erased from the account and from each organization''s records and activity log (jobs). Refused (LAST_OWNER) while you are an organization''s last owner. Irreversible.';

-- The account's part (job erase_account), after every organization's: refused (the job retries)
-- while one is pending. Returns false when there was nothing left to erase.
create or replace function app_private.erase_account(user_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user app_public.users;
  v_pattern text;
begin
  select u.* into v_user from app_public.users u where u.id = erase_account.user_id for update;
  if not found or v_user.email::text like 'erased-%@erased.invalid' then
    return false;
  end if;
  if exists (select from app_public.erasures e where e.scope = 'user' and e.subject_id = erase_account.user_id and e.status = 'pending') then
    perform app_private.fail('RETRY', 'The organizations'' erasures of this account are not all done yet.');
  end if;
  v_pattern := app_private.literal_pattern(v_user.email::text);
  delete from app_private.login_throttle t where t.email = v_user.email::text;
  delete from app_private.registrations r where r.email = v_user.email::text;
  update app_private.email_messages m set recipient = '[erased]', transport_detail = app_private.redact_text(m.transport_detail, array[v_user.email::text])
  where m.recipient = v_user.email::text;
  delete from graphile_worker._private_jobs j where j.locked_at is null and j.payload::text ~* v_pattern;
  update app_public.users u set email = format('erased-%s@erased.invalid', u.id), name = 'Erased user' where u.id = v_user.id;
  return true;
end
$$;
revoke all on function app_private.erase_account(uuid) from public;
grant execute on function app_private.erase_account(uuid) to :DATABASE_WORKER;
comment on function app_private.erase_account(uuid) is 'The account''s part of deleteAccount (job erase_account), once every organization''s erasure is done.';
--! EndIncluded functions/erasure.sql
--! Included functions/retention_growing.sql
-- Retention of the tables that grow with use (the activity log's rules are in
-- sql/functions/activity_retention.sql; its rule 'activity_events' runs here). Nothing here is
-- a soft-deleted record (those: sql/functions/retention.sql); these are logs, tokens and
-- counters that are only needed for a while, some of them holding personal data.
--
-- Per organization (its own data; owners and admins set the windows through the API, like every
-- organization setting, app_public.organizations):
--   webhook_payload_retention_days  a finished webhook delivery keeps its row, the delivery log,
--                                   but loses its payload (a copy of a record) and last_error
--                                   that many days after its event; payload_removed_at says when
--   email_log_retention_days        the organization's rows of the email send log
--                                   (app_private.email_messages: recipient addresses) are deleted
--                                   that many days after their last attempt
--   failed_job_retention_days       the organization's jobs that failed for good (their payloads
--                                   name recipients and records) are removed that many days after
--                                   their last attempt
-- and, with a fixed window, its invitations never accepted, 30 days after they expired (rule
-- expired_invitations).
-- Each is an app_public.retention_window: 1 to 365 days, default 30 (refused otherwise with
-- INVALID_VALUE and the rule's message: app_private.domain_rules).
--
-- System-wide (fixed windows, each tied to what makes the rows meaningful):
--   sessions             30 days after the session ended (expired or revoked). An ended session
--                        can do nothing (app_public.current_user_id, app_private.refresh); its row
--                        is the record of how it ended (revoked_reason 'refresh token reused' is
--                        the trace of a detected theft). Its used refresh tokens go with it.
--   used_refresh_tokens  the refresh-token TTL after their use (app_private.refresh_token_ttl():
--                        REFRESH_TOKEN_TTL_SECONDS, set by the worker as by the API). A token is
--                        issued before it is used, so by then it has expired on its own: presenting
--                        it could not sign anyone in, and reuse detection is only needed while a
--                        rotated token could still have been valid.
--   password_reset_tokens a day after they expire (1 hour after issue): until then a late click
--                        hears RESET_TOKEN_EXPIRED rather than RESET_TOKEN_INVALID.
--   registrations        a day after they expire (24 hours after the request), as
--                        app_private.purge_expired_secrets does (sql/functions/registration.sql).
--   email_secrets        once expired (their links no longer work).
--   login_throttle       a day after the last failure: app_private.login forgets failures older
--                        than a day, so such a row counts nothing any more.
--   job_enqueue_counts   after a day: fair priorities read the current and previous minute only
--                        (app_private.count_queued_jobs); the day is for operators.
--   activity_dispatches  7 days after the dispatch, once no job of that dispatch is left (a
--                        dispatch_activity job retries for about 4 days: 25 attempts, backoff up to
--                        e^10 s ≈ 6 h). Transaction ids never repeat, so nothing asks again.
--   email_messages       account emails (no organization): 30 days after the last attempt.
--   failed jobs          jobs without an organization: 30 days after their last attempt.
-- An email_messages row is the idempotency record of its message_key (a retried send_email job
-- does not send twice): it is deleted only once no job with that key is left (pending or failed).
-- Every key names a one-time event (an invitation, a reset, a sign-up, a document leaving draft,
-- which never returns to draft), so no new job asks for a deleted key.
--
-- Failed jobs: graphile-worker's own cleanup (WorkerUtils.cleanup, DELETE_PERMAFAILED_JOBS) deletes
-- every failed job at once, whatever its age or organization, in one statement; that does not
-- fit. The jobs to remove are chosen here — read from graphile_worker._private_jobs, as
-- app_private.failed_jobs() reads them (the public view graphile_worker.jobs has no payload, and
-- the payload names the organization) — and removed through graphile-worker's SQL API,
-- graphile_worker.complete_jobs(ids), which skips any job a worker holds. (Atrium uses no named
-- job queues, and task identifiers are few and fixed: GC_JOB_QUEUES and GC_TASK_IDENTIFIERS have
-- nothing to collect.)
--
-- Batches: each call removes (or strips) at most `batch_size` rows, chosen through an index once
-- (a materialized CTE: a sub-select with LIMIT and SKIP LOCKED that the plan ran again would
-- skip the rows this statement just changed and take further ones), and returns how many. The
-- worker calls again, each call its own short transaction, until a call returns fewer
-- (src/worker/retention.ts: 1,000 rows a batch, at most 1,000 batches per rule and run). Conditions are re-checked on every call, so a run that stops half-way, or runs twice,
-- leaves nothing inconsistent and the next run goes on. Only the worker's session may call them.
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- The windows an organization sets

do $$
begin
  if to_regtype('app_public.retention_window') is null then
    create domain app_public.retention_window as integer;
  end if;
end
$$;
alter domain app_public.retention_window drop constraint if exists retention_window_range;
alter domain app_public.retention_window add constraint retention_window_range check (value between 1 and 365);
comment on domain app_public.retention_window is 'How many days data is kept before retention removes it: 1 to 365.';

insert into app_private.domain_rules (domain_name, constraint_name, code, message) values
  ('app_public.retention_window', 'retention_window_range', 'INVALID_VALUE', 'A retention window is a whole number of days from 1 to 365.')
on conflict (domain_name, constraint_name) do update set code = excluded.code, message = excluded.message;

alter table app_public.organizations
  add column if not exists webhook_payload_retention_days app_public.retention_window not null default 30,
  add column if not exists email_log_retention_days app_public.retention_window not null default 30,
  add column if not exists failed_job_retention_days app_public.retention_window not null default 30;
comment on column app_public.organizations.webhook_payload_retention_days is 'Days a webhook delivery keeps its payload and last error after its event (1 to 365, default 30); the delivery log itself stays.';
comment on column app_public.organizations.email_log_retention_days is 'Days the record of an email sent for the organization (recipient, when, how) is kept after its last attempt (1 to 365, default 30).';
comment on column app_public.organizations.failed_job_retention_days is 'Days a job of the organization that failed for good is kept for inspection and retry after its last attempt (1 to 365, default 30).';
-- Owners and admins change them (policy update_current_by_admins), as every setting.
grant update (webhook_payload_retention_days, email_log_retention_days, failed_job_retention_days) on app_public.organizations to :DATABASE_VISITOR;

------------------------------------------------------------------------------------------------
-- Indexes the batches take their rows through (oldest first)

create index if not exists sessions_ended_at_idx on app_private.sessions ((least(revoked_at, expires_at)));
create index if not exists used_refresh_tokens_used_at_idx on app_private.used_refresh_tokens (used_at);
create index if not exists password_reset_tokens_expires_at_idx on app_private.password_reset_tokens (expires_at);
create index if not exists login_throttle_last_failed_at_idx on app_private.login_throttle (last_failed_at);
create index if not exists activity_dispatches_dispatched_at_idx on app_private.activity_dispatches (dispatched_at);
create index if not exists invitations_organization_id_expires_at_idx on app_public.invitations (organization_id, expires_at) where accepted_at is null;
create index if not exists email_messages_organization_id_last_attempt_at_idx on app_private.email_messages (organization_id, last_attempt_at);

------------------------------------------------------------------------------------------------
-- The rules

create or replace function app_private.require_retention_batch(batch_size integer) returns void
language plpgsql immutable
set search_path = pg_catalog
as $$
begin
  if batch_size is null or batch_size not between 1 and 10000 then
    raise exception 'batch_size must be from 1 to 10,000 (got %)', batch_size using errcode = '22023';
  end if;
end
$$;

-- No job (pending, running or failed) is left with this key.
create or replace function app_private.no_job_with_key(job_key text) returns boolean
language plpgsql stable
set search_path = pg_catalog
as $$
begin
  return not exists (select from graphile_worker.jobs j where j.key = job_key);
end
$$;

-- The organization a job names in its payload (organization_id), or null.
create or replace function app_private.job_organization(payload json) returns uuid
language sql immutable
set search_path = pg_catalog
as $$
  select case when payload ->> 'organization_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    then (payload ->> 'organization_id')::uuid end
$$;

-- The system-wide rules, by name, in the order the daily run applies them.
create or replace function app_private.system_retention_rules() returns setof text
language sql immutable
set search_path = pg_catalog
as $$
  select unnest(array['sessions', 'used_refresh_tokens', 'password_reset_tokens', 'registrations', 'email_secrets',
    'login_throttle', 'job_enqueue_counts', 'activity_dispatches', 'account_email_messages', 'failed_jobs'])
$$;

-- One batch of system-wide `rule` (see the top of this file). Returns how many rows went.
create or replace function app_private.purge_system_rows(rule text, batch_size integer) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_n integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker applies retention.');
  end if;
  perform app_private.require_retention_batch(batch_size);
  case rule
  when 'sessions' then
    with batch as materialized (
      select o.id from app_private.sessions o
      where least(o.revoked_at, o.expires_at) < now() - interval '30 days'
      order by least(o.revoked_at, o.expires_at) limit batch_size for update skip locked)
    delete from app_private.sessions s using batch b where s.id = b.id;
  when 'used_refresh_tokens' then
    with batch as materialized (
      select o.token_hash from app_private.used_refresh_tokens o
      where o.used_at < now() - app_private.refresh_token_ttl()
      order by o.used_at limit batch_size for update skip locked)
    delete from app_private.used_refresh_tokens t using batch b where t.token_hash = b.token_hash;
  when 'password_reset_tokens' then
    with batch as materialized (
      select o.id from app_private.password_reset_tokens o
      where o.expires_at < now() - interval '1 day'
      order by o.expires_at limit batch_size for update skip locked)
    delete from app_private.password_reset_tokens t using batch b where t.id = b.id;
  when 'registrations' then
    with batch as materialized (
      select o.id from app_private.registrations o
      where o.expires_at < now() - interval '1 day'
      order by o.expires_at limit batch_size for update skip locked)
    delete from app_private.registrations r using batch b where r.id = b.id;
  when 'email_secrets' then
    with batch as materialized (
      select o.message_key from app_private.email_secrets o
      where o.expires_at <= now()
      order by o.expires_at limit batch_size for update skip locked)
    delete from app_private.email_secrets s using batch b where s.message_key = b.message_key;
  when 'login_throttle' then
    with batch as materialized (
      select o.email, o.client from app_private.login_throttle o
      where o.last_failed_at < now() - interval '1 day'
      order by o.last_failed_at limit batch_size for update skip locked)
    delete from app_private.login_throttle t using batch b where t.email = b.email and t.client = b.client;
  when 'job_enqueue_counts' then
    with batch as materialized (
      select o.organization_id, o.minute from app_private.job_enqueue_counts o
      where o.minute < now() - interval '1 day'
      order by o.minute limit batch_size for update skip locked)
    delete from app_private.job_enqueue_counts c using batch b where c.organization_id = b.organization_id and c.minute = b.minute;
  when 'activity_dispatches' then
    with batch as materialized (
      select o.organization_id, o.transaction_id from app_private.activity_dispatches o
      where o.dispatched_at < now() - interval '7 days'
        and app_private.no_job_with_key(format('dispatch_activity:%s:%s', o.organization_id, o.transaction_id))
      order by o.dispatched_at limit batch_size for update skip locked)
    delete from app_private.activity_dispatches d using batch b where d.organization_id = b.organization_id and d.transaction_id = b.transaction_id;
  when 'account_email_messages' then
    with batch as materialized (
      select o.message_key from app_private.email_messages o
      where o.organization_id is null and o.last_attempt_at < now() - interval '30 days'
        and app_private.no_job_with_key('send_email:' || o.message_key)
      order by o.last_attempt_at limit batch_size for update skip locked)
    delete from app_private.email_messages m using batch b where m.message_key = b.message_key;
  when 'failed_jobs' then
    -- Each organization's failed jobs after its own window; jobs without one after 30 days.
    select count(*) into v_n from graphile_worker.complete_jobs(array(
      select j.id from graphile_worker._private_jobs j
      left join app_public.organizations o on o.id = app_private.job_organization(j.payload)
      where j.attempts >= j.max_attempts and j.locked_at is null
        and j.updated_at < now() - make_interval(days => coalesce(o.failed_job_retention_days, 30))
      order by j.updated_at, j.id limit batch_size));
    return v_n;
  else
    raise exception 'unknown retention rule %', rule using errcode = '22023';
  end case;
  get diagnostics v_n = row_count;
  return v_n;
end
$$;

-- The per-organization rules, by name.
create or replace function app_private.tenant_retention_rules() returns setof text
language sql immutable
set search_path = pg_catalog
as $$
  select unnest(array['webhook_payloads', 'email_messages', 'expired_invitations', 'activity_events'])
$$;

-- One batch of per-organization `rule`, inside the current organization (the worker's tenant
-- transaction), with that organization's window. Returns how many rows were stripped or deleted.
create or replace function app_private.purge_tenant_rows(rule text, batch_size integer) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_settings app_public.organizations;
  v_n integer;
begin
  perform app_private.require_retention_batch(batch_size);
  select o.* into v_settings from app_public.organizations o where o.id = v_org;
  case rule
  when 'webhook_payloads' then
    -- Finished deliveries only: a pending one still needs its payload (and a failed or cancelled
    -- one can be retried until this happens: app_public.retry_webhook_delivery).
    with batch as materialized (
      select o.id from app_public.webhook_deliveries o
      where o.organization_id = v_org and o.payload is not null and o.status <> 'pending'
        and o.created_at < now() - make_interval(days => v_settings.webhook_payload_retention_days)
      order by o.created_at limit batch_size for update skip locked)
    update app_public.webhook_deliveries d set payload = null, last_error = null, payload_removed_at = now()
    from batch b where d.organization_id = v_org and d.id = b.id;
  when 'email_messages' then
    with batch as materialized (
      select o.message_key from app_private.email_messages o
      where o.organization_id = v_org
        and o.last_attempt_at < now() - make_interval(days => v_settings.email_log_retention_days)
        and app_private.no_job_with_key('send_email:' || o.message_key)
      order by o.last_attempt_at limit batch_size for update skip locked)
    delete from app_private.email_messages m using batch b where m.message_key = b.message_key;
  when 'expired_invitations' then
    -- An invitation never accepted is useless once expired (accepting answers
    -- INVITATION_INVALID); 30 days later it goes with the address it was sent to. (An accepted
    -- one stays: it records who invited the member.)
    with batch as materialized (
      select o.id from app_public.invitations o
      where o.organization_id = v_org and o.accepted_at is null and o.expires_at < now() - interval '30 days'
      order by o.expires_at limit batch_size for update skip locked)
    delete from app_public.invitations i using batch b where i.organization_id = v_org and i.id = b.id;
  when 'activity_events' then
    -- The activity log's expired events, through its retention door
    -- (sql/functions/activity_retention.sql).
    return app_private.purge_expired_activity(batch_size);
  else
    raise exception 'unknown retention rule %', rule using errcode = '22023';
  end case;
  get diagnostics v_n = row_count;
  return v_n;
end
$$;

revoke all on function
  app_private.require_retention_batch(integer),
  app_private.no_job_with_key(text),
  app_private.job_organization(json),
  app_private.system_retention_rules(),
  app_private.purge_system_rows(text, integer),
  app_private.tenant_retention_rules(),
  app_private.purge_tenant_rows(text, integer)
from public;
grant execute on function
  app_private.system_retention_rules(),
  app_private.purge_system_rows(text, integer),
  app_private.tenant_retention_rules(),
  app_private.purge_tenant_rows(text, integer)
to :DATABASE_WORKER;
--! EndIncluded functions/retention_growing.sql
--! Included functions/webhooks.sql
-- Webhooks: an organization registers endpoints (URL, event types); every matching domain event
-- is POSTed to them as JSON signed with HMAC-SHA256 by the job `deliver_webhook`
-- (src/worker/tasks/deliver_webhook.ts), with retries and backoff, a delivery log the
-- organization reads, and automatic disabling of an endpoint that keeps failing.
--
-- The path of an event (docs/DATA_FLOWS.md, "Webhooks"):
--   a change commits → its audit trigger enqueued `dispatch_activity` in the same transaction →
--   `dispatch_activity` calls app_private.queue_webhook_deliveries(transaction): the
--   transaction's activity events that are domain events (app_private.webhook_event_rules) become
--   one app_public.webhook_deliveries row per subscribed endpoint — unique per (endpoint, event),
--   so a retried dispatch creates nothing twice — and one `deliver_webhook` job each (job key per
--   delivery) → `deliver_webhook` signs and POSTs it, then records the attempt
--   (app_private.record_webhook_attempt).
--
-- Who may do what: reading endpoints and deliveries needs webhooks.read; creating, changing,
-- deleting endpoints, rotating secrets and retrying deliveries needs webhooks.write (a special
-- permission: owners and admins by default, since an endpoint receives the organization's data).
-- Signing secrets live in app_private.webhook_secrets: shown once, when created or rotated.
-- Idempotent; re-included by later migrations.

-- The catalogue of domain events: which activity events are which webhook events. An `insert`
-- rule matches new rows of the table; a status rule matches rows entering `to_status` (inserted in
-- it, or updated into it from another status).
create table if not exists app_private.webhook_event_rules (
  event_type text primary key check (event_type ~ '^[a-z_]+\.[a-z_]+$'),
  table_name text not null,
  status_column text,
  to_status text,
  description text not null,
  constraint webhook_event_rules_status check ((status_column is null) = (to_status is null))
);
alter table app_private.webhook_event_rules enable row level security;
alter table app_private.webhook_event_rules force row level security;
comment on table app_private.webhook_event_rules is 'Domain events sent to webhooks: new rows of table_name, or rows whose status_column enters to_status.';

insert into app_private.webhook_event_rules (event_type, table_name, status_column, to_status, description) values
  ('client_company.created', 'client_companies', null, null, 'A client company was added.'),
  ('deal.won', 'deals', 'stage', 'won', 'A deal was won.'),
  ('deal.lost', 'deals', 'stage', 'lost', 'A deal was lost.'),
  ('proposal.sent', 'proposals', 'status', 'sent', 'A proposal was sent to the client.'),
  ('proposal.accepted', 'proposals', 'status', 'accepted', 'The client accepted a proposal.'),
  ('proposal.rejected', 'proposals', 'status', 'rejected', 'The client rejected a proposal.'),
  ('contract.signed', 'contracts', 'status', 'signed', 'A contract was signed.'),
  ('engagement.started', 'engagements', null, null, 'An engagement started (a contract was signed).'),
  ('invoice.sent', 'invoices', 'status', 'sent', 'An invoice was sent.'),
  ('invoice.paid', 'invoices', 'status', 'paid', 'An invoice was paid in full.'),
  ('invoice.overdue', 'invoices', 'status', 'overdue', 'An invoice passed its due date unpaid.'),
  ('invoice.cancelled', 'invoices', 'status', 'cancelled', 'An invoice was cancelled.'),
  ('payment.recorded', 'payments', null, null, 'A payment was recorded against an invoice.'),
  ('bill.approved', 'bills', 'status', 'approved', 'A bill was approved for payment.'),
  ('bill.paid', 'bills', 'status', 'paid', 'A bill was paid.')
on conflict (event_type) do update set table_name = excluded.table_name, status_column = excluded.status_column,
  to_status = excluded.to_status, description = excluded.description;

do $$
begin
  if not exists (select from pg_type where typname = 'webhook_event_type' and typnamespace = 'app_public'::regnamespace) then
    create type app_public.webhook_event_type as (event_type text, description text);
  end if;
  if not exists (select from pg_type where typname = 'webhook_endpoint_secret' and typnamespace = 'app_public'::regnamespace) then
    create type app_public.webhook_endpoint_secret as (endpoint_id uuid, secret text);
  end if;
end
$$;
comment on type app_public.webhook_event_type is 'A domain event a webhook endpoint can subscribe to.';
comment on type app_public.webhook_endpoint_secret is 'A webhook endpoint''s signing secret, shown only once (when created or rotated).';

create or replace function app_public.webhook_event_types() returns setof app_public.webhook_event_type
language sql stable security definer
set search_path = pg_catalog
as $$
  select row(r.event_type, r.description)::app_public.webhook_event_type
  from app_private.webhook_event_rules r
  order by r.event_type
$$;
comment on function app_public.webhook_event_types() is 'The events webhook endpoints can subscribe to (`*` subscribes to all of them).';

-- Endpoints ---------------------------------------------------------------------------------------

create table if not exists app_public.webhook_endpoints (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  url text not null check (url ~ '^https?://[^\s/?#@]+(/\S*)?$' and length(url) <= 2000),
  description text check (length(description) <= 500),
  event_types text[] not null check (cardinality(event_types) between 1 and 100),
  enabled boolean not null default true,
  disable_after_failures integer not null default 25 check (disable_after_failures between 1 and 1000),
  consecutive_failures integer not null default 0 check (consecutive_failures >= 0),
  disabled_at timestamptz,
  disabled_reason text,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create index if not exists webhook_endpoints_organization_id_created_at_idx on app_public.webhook_endpoints (organization_id, created_at);
comment on table app_public.webhook_endpoints is E'@behavior -insert -delete\nA URL that receives the organization''s domain events as signed JSON POSTs. Create one with createWebhookEndpoint (which returns its signing secret once).';
comment on column app_public.webhook_endpoints.event_types is 'The event types it receives (see webhookEventTypes), or `*` for all.';
comment on column app_public.webhook_endpoints.enabled is 'Disabled endpoints receive nothing. Set automatically after `disable_after_failures` failed attempts in a row (or a 410 Gone answer); set it back to true to resume.';
comment on column app_public.webhook_endpoints.consecutive_failures is 'Failed delivery attempts since the last success.';

-- Signing secrets: never in app_public, never in the activity log.
create table if not exists app_private.webhook_secrets (
  organization_id uuid not null,
  endpoint_id uuid not null,
  secret text not null,
  created_at timestamptz not null default now(),
  primary key (organization_id, endpoint_id),
  foreign key (organization_id, endpoint_id) references app_public.webhook_endpoints on delete cascade
);
alter table app_private.webhook_secrets enable row level security;
alter table app_private.webhook_secrets force row level security;
comment on table app_private.webhook_secrets is 'The HMAC-SHA256 signing secret of each webhook endpoint (readable by SECURITY DEFINER functions only).';

-- Event types must be known (or `*`); re-enabling an endpoint clears its failure record, disabling
-- it by hand stamps when. No other rows are read, so this may run BEFORE the row is written.
create or replace function app_private.tg_webhook_endpoints__check() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_unknown text;
begin
  select string_agg(t, ', ') into v_unknown
  from unnest(new.event_types) as t
  where t <> '*' and not exists (select from app_private.webhook_event_rules r where r.event_type = t);
  if v_unknown is not null then
    perform app_private.fail('INVALID_EVENT_TYPE', format('Unknown webhook event type(s): %s. See webhookEventTypes for the list, or use *.', v_unknown));
  end if;
  if tg_op = 'UPDATE' and new.enabled and not old.enabled then
    new.consecutive_failures := 0;
    new.disabled_at := null;
    new.disabled_reason := null;
  elsif tg_op = 'UPDATE' and not new.enabled and old.enabled and new.disabled_at is null then
    new.disabled_at := now();
    new.disabled_reason := coalesce(new.disabled_reason, 'Disabled by a member.');
  end if;
  return new;
end
$$;
revoke all on function app_private.tg_webhook_endpoints__check() from public;
drop trigger if exists tg_webhook_endpoints__check on app_public.webhook_endpoints;
create trigger tg_webhook_endpoints__check before insert or update on app_public.webhook_endpoints
  for each row execute function app_private.tg_webhook_endpoints__check();

call app_private.make_tenant_table('app_public.webhook_endpoints', 'webhooks',
  soft_delete_as => 'webhook_endpoint',
  readonly_columns => array['consecutive_failures', 'disabled_at', 'disabled_reason', 'created_by'],
  insertable => false);

-- A new signing secret: "whsec_" and 32 random bytes, base64url.
create or replace function app_private.new_webhook_secret() returns text
language sql volatile
set search_path = pg_catalog
as $$
  select 'whsec_' || app_private.random_token()
$$;
revoke all on function app_private.new_webhook_secret() from public;

create or replace function app_public.create_webhook_endpoint(url text, event_types text[], description text default null)
returns app_public.webhook_endpoint_secret
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_endpoint app_public.webhook_endpoints;
  v_secret text := app_private.new_webhook_secret();
begin
  perform app_private.require_permission('webhooks.write', 'add webhook endpoints');
  insert into app_public.webhook_endpoints (organization_id, url, event_types, description, created_by)
  values (app_public.current_org_id(), create_webhook_endpoint.url, create_webhook_endpoint.event_types,
    create_webhook_endpoint.description, app_public.current_user_id())
  returning * into v_endpoint;
  insert into app_private.webhook_secrets (organization_id, endpoint_id, secret) values (v_endpoint.organization_id, v_endpoint.id, v_secret);
  return row(v_endpoint.id, v_secret)::app_public.webhook_endpoint_secret;
end
$$;
comment on function app_public.create_webhook_endpoint(text, text[], text) is 'Registers a webhook endpoint for the given event types (or *). Returns its signing secret, shown only this once.';

create or replace function app_public.rotate_webhook_secret(id uuid) returns app_public.webhook_endpoint_secret
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_secret text := app_private.new_webhook_secret();
  v_org uuid;
begin
  perform app_private.require_permission('webhooks.write', 'rotate webhook secrets');
  select e.organization_id into v_org from app_public.webhook_endpoints e
  where e.organization_id = app_public.current_org_id() and e.id = rotate_webhook_secret.id and e.deleted_at is null;
  if v_org is null then
    perform app_private.fail('NOT_FOUND', 'No such webhook endpoint in this organization.');
  end if;
  insert into app_private.webhook_secrets (organization_id, endpoint_id, secret) values (v_org, rotate_webhook_secret.id, v_secret)
  on conflict (organization_id, endpoint_id) do update set secret = excluded.secret, created_at = now();
  return row(rotate_webhook_secret.id, v_secret)::app_public.webhook_endpoint_secret;
end
$$;
comment on function app_public.rotate_webhook_secret(uuid) is 'Replaces a webhook endpoint''s signing secret; returns the new one, shown only this once. Deliveries from now on are signed with it.';

-- Deliveries --------------------------------------------------------------------------------------

create table if not exists app_public.webhook_deliveries (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  endpoint_id uuid not null,
  event_type text not null,
  activity_event_id uuid,
  payload jsonb not null,
  status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed', 'cancelled')),
  attempts integer not null default 0 check (attempts >= 0),
  last_attempt_at timestamptz,
  response_code integer,
  last_error text,
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, endpoint_id) references app_public.webhook_endpoints on delete cascade,
  constraint webhook_deliveries_one_per_event unique (organization_id, endpoint_id, activity_event_id, event_type)
);
create index if not exists webhook_deliveries_organization_id_created_at_idx on app_public.webhook_deliveries (organization_id, created_at desc);
create index if not exists webhook_deliveries_organization_id_status_idx on app_public.webhook_deliveries (organization_id, status);
comment on table app_public.webhook_deliveries is E'@behavior -insert -update -delete\nThe delivery log: one row per event sent (or being sent) to an endpoint, with its status, attempts, last error and the endpoint''s last response code.';
comment on column app_public.webhook_deliveries.status is 'pending (being delivered or waiting to retry), succeeded (a 2xx answer), failed (gave up after the last attempt), cancelled (the endpoint was disabled or deleted first).';
comment on column app_public.webhook_deliveries.payload is 'The JSON body POSTed (the same on every attempt; its `id` is this delivery''s id, for receivers to ignore repeats). Null once retention removed it (payload_removed_at).';

-- Retention (sql/functions/retention_growing.sql): past the organization's
-- webhook_payload_retention_days a finished delivery keeps its row (status, times, attempts,
-- response code: the delivery log) but loses its payload and last_error, and payload_removed_at
-- says when. A pending delivery keeps both, whatever its age.
alter table app_public.webhook_deliveries alter column payload drop not null;
alter table app_public.webhook_deliveries add column if not exists payload_removed_at timestamptz;
comment on column app_public.webhook_deliveries.payload_removed_at is 'When the payload and last error were removed, the organization''s webhook_payload_retention_days after the event (null: still kept). Such a delivery cannot be sent again.';
alter table app_public.webhook_deliveries drop constraint if exists webhook_deliveries_payload_kept_or_removed;
alter table app_public.webhook_deliveries add constraint webhook_deliveries_payload_kept_or_removed
  check ((payload is null) = (payload_removed_at is not null)) not valid;
alter table app_public.webhook_deliveries validate constraint webhook_deliveries_payload_kept_or_removed;
-- The deliveries whose payload is still kept, oldest first: where the retention looks, without
-- walking past the ones it has already stripped.
create index if not exists webhook_deliveries_payload_kept_idx on app_public.webhook_deliveries (organization_id, created_at)
  where payload is not null;

-- The payload is large and the same as the event it carries: left out of the activity log. So is
-- the last error: it may quote the endpoint's URL or its answer, which retention removes too.
call app_private.make_tenant_table('app_public.webhook_deliveries', 'webhooks',
  secret_columns => array['payload', 'last_error'], insertable => false, updatable => false);

-- The job for one delivery: a job key per delivery, so queueing it twice runs it once; a fair
-- priority, so one organization's flood of events does not hold up another's.
-- (plpgsql: the job queue's schema is installed after the migrations.)
create or replace function app_private.enqueue_webhook_delivery(organization_id uuid, delivery_id uuid) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  perform graphile_worker.add_job(
    'deliver_webhook',
    json_build_object('organization_id', organization_id, 'delivery_id', delivery_id),
    job_key => 'deliver_webhook:' || delivery_id,
    max_attempts => 10,
    priority => app_private.fair_job_priority(organization_id) -- sql/functions/jobs.sql
  );
end
$$;
revoke all on function app_private.enqueue_webhook_delivery(uuid, uuid) from public;

-- The current organization's events of one transaction. Every event of a transaction carries its
-- start time (occurred_at defaults to now()); given it, the read looks in the months around it
-- only instead of in every month of the log. Inlined into the caller's query.
create or replace function app_private.transaction_events(transaction_id bigint, occurred_at timestamptz default null)
returns setof app_public.activity_events
language sql stable
-- (No SET clause: it would keep the function from being inlined. Every name is qualified.)
as $$
  select e.* from app_public.activity_events e
  where e.organization_id = app_public.current_org_id()
    and e.transaction_id = transaction_events.transaction_id
    and e.occurred_at >= coalesce(transaction_events.occurred_at - interval '1 day', '-infinity')
    and e.occurred_at <= coalesce(transaction_events.occurred_at + interval '1 day', 'infinity')
$$;
revoke all on function app_private.transaction_events(bigint, timestamptz) from public;
grant execute on function app_private.transaction_events(bigint, timestamptz) to :DATABASE_WORKER;

-- Called by dispatch_activity (worker, inside the organization): the transaction's domain events
-- become deliveries to the subscribed, enabled endpoints, each with its job. Returns how many
-- deliveries were created (0 when a retried dispatch finds them already there). `occurred_at`, the
-- transaction's time when the job carries it, lets the read look in that month of the log only
-- (app_private.transaction_events).
drop function if exists app_private.queue_webhook_deliveries(bigint);
create or replace function app_private.queue_webhook_deliveries(transaction_id bigint, occurred_at timestamptz default null) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_count integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker queues webhook deliveries.');
  elsif v_org is null then
    perform app_private.fail('NO_ORGANIZATION', 'Webhook deliveries are queued inside one organization (app.org_id).');
  end if;
  with events as (
    select e.id, r.event_type, e.occurred_at, e.table_name, e.record_id, e.new_values,
      case when e.action = 'update' then (
        select jsonb_object_agg(o.key, o.value) from jsonb_each(e.old_values) o
        where o.key <> 'updated_at' and o.value is distinct from e.new_values -> o.key
      ) end as previous
    from app_private.transaction_events(queue_webhook_deliveries.transaction_id, queue_webhook_deliveries.occurred_at) e
    join app_private.webhook_event_rules r on r.table_name = e.table_name
    where (

        (r.to_status is null and e.action = 'insert')
        or (r.to_status is not null and e.new_values ->> r.status_column = r.to_status and (
          e.action = 'insert'
          or (e.action = 'update' and e.old_values ->> r.status_column is distinct from r.to_status)
        ))
      )
  ),
  deliveries as (
    insert into app_public.webhook_deliveries (organization_id, id, endpoint_id, event_type, activity_event_id, payload)
    select v_org, d.id, d.endpoint_id, d.event_type, d.event_id,
      jsonb_build_object(
        'id', d.id,
        'type', d.event_type,
        'created_at', d.occurred_at,
        'organization_id', v_org,
        'data', jsonb_build_object('table', d.table_name, 'id', d.record_id, 'object', d.new_values, 'previous', d.previous)
      )
    from (
      -- A new id per delivery: in the select list, evaluated for each row (an uncorrelated
      -- sub-select would be evaluated once and give every delivery the same id).
      select gen_random_uuid() as id, w.id as endpoint_id, ev.event_type, ev.id as event_id, ev.occurred_at, ev.table_name, ev.record_id, ev.new_values, ev.previous
      from events ev
      join app_public.webhook_endpoints w on w.organization_id = v_org and w.enabled and w.deleted_at is null
        and (ev.event_type = any (w.event_types) or '*' = any (w.event_types))
        and ev.occurred_at >= w.created_at -- an endpoint receives what happens after it was registered
    ) d
    on conflict on constraint webhook_deliveries_one_per_event do nothing
    returning organization_id, id
  )
  select count(*)::integer into v_count
  from deliveries d, lateral app_private.enqueue_webhook_delivery(d.organization_id, d.id);
  return v_count;
end
$$;
revoke all on function app_private.queue_webhook_deliveries(bigint, timestamptz) from public;
grant execute on function app_private.queue_webhook_deliveries(bigint, timestamptz) to :DATABASE_WORKER;

-- What deliver_webhook needs for one delivery (worker, inside the organization): the delivery,
-- its endpoint's URL, state and signing secret. No row: the delivery does not exist (here).
create or replace function app_private.webhook_delivery_target(delivery_id uuid)
returns table (status text, attempts integer, url text, endpoint_live boolean, secret text, event_type text, payload jsonb)
language plpgsql stable security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker delivers webhooks.');
  end if;
  return query
    select d.status, d.attempts, w.url, w.enabled and w.deleted_at is null, s.secret, d.event_type, d.payload
    from app_public.webhook_deliveries d
    join app_public.webhook_endpoints w on w.organization_id = d.organization_id and w.id = d.endpoint_id
    join app_private.webhook_secrets s on s.organization_id = d.organization_id and s.endpoint_id = d.endpoint_id
    where d.organization_id = app_public.current_org_id() and d.id = webhook_delivery_target.delivery_id;
end
$$;
revoke all on function app_private.webhook_delivery_target(uuid) from public;
grant execute on function app_private.webhook_delivery_target(uuid) to :DATABASE_WORKER;

-- Records one attempt of a pending delivery (worker, inside the organization):
--   outcome 'succeeded'  a 2xx answer: the delivery is done, the endpoint's failure count resets;
--   outcome 'failed'     anything else: attempts + 1 and the error; the endpoint's consecutive
--                        failures + 1, and at `disable_after_failures` (or on `gone`, a 410
--                        answer) the endpoint is disabled and its pending deliveries cancelled;
--                        `final` (the job's last attempt) marks the delivery failed;
--   outcome 'cancelled'  the endpoint was disabled or deleted before the attempt.
-- Returns the delivery's status afterwards ('pending' means: retry).
create or replace function app_private.record_webhook_attempt(
  delivery_id uuid, outcome text, response_code integer default null, error text default null,
  final boolean default false, gone boolean default false
) returns text
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_delivery app_public.webhook_deliveries;
  v_endpoint app_public.webhook_endpoints;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker delivers webhooks.');
  end if;
  if outcome not in ('succeeded', 'failed', 'cancelled') then
    raise exception 'unknown outcome %', outcome using errcode = '22023';
  end if;
  -- The endpoint's row first, then the delivery's: attempts at one endpoint take their turns, in
  -- the order the disabling below takes its locks (the endpoint, then its pending deliveries).
  -- Locking the delivery first deadlocked two attempts at one endpoint when one of them disabled it.
  perform from app_public.webhook_endpoints w
  where w.organization_id = v_org
    and w.id = (select d.endpoint_id from app_public.webhook_deliveries d where d.organization_id = v_org and d.id = record_webhook_attempt.delivery_id)
  for no key update;
  select * into v_delivery from app_public.webhook_deliveries d
  where d.organization_id = v_org and d.id = record_webhook_attempt.delivery_id
  for update;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such webhook delivery in this organization.');
  end if;
  if v_delivery.status <> 'pending' then
    return v_delivery.status; -- recorded already (a retried job): change nothing
  end if;

  if outcome = 'cancelled' then
    update app_public.webhook_deliveries d set status = 'cancelled', last_error = coalesce(record_webhook_attempt.error, 'The endpoint is disabled or deleted.')
    where d.organization_id = v_org and d.id = v_delivery.id;
    return 'cancelled';
  end if;

  update app_public.webhook_deliveries d set
    attempts = d.attempts + 1,
    last_attempt_at = now(),
    response_code = record_webhook_attempt.response_code,
    last_error = case when outcome = 'failed' then left(record_webhook_attempt.error, 2000) end,
    delivered_at = case when outcome = 'succeeded' then now() end,
    status = case when outcome = 'succeeded' then 'succeeded' when final then 'failed' else 'pending' end
  where d.organization_id = v_org and d.id = v_delivery.id
  returning * into v_delivery;

  update app_public.webhook_endpoints w set
    consecutive_failures = case when outcome = 'succeeded' then 0 else w.consecutive_failures + 1 end
  where w.organization_id = v_org and w.id = v_delivery.endpoint_id
  returning * into v_endpoint;

  if outcome = 'failed' and v_endpoint.enabled and (gone or v_endpoint.consecutive_failures >= v_endpoint.disable_after_failures) then
    update app_public.webhook_endpoints w set enabled = false, disabled_at = now(),
      disabled_reason = case when gone then 'The endpoint answered 410 Gone.'
        else format('%s delivery attempts failed in a row (last: %s).', w.consecutive_failures, left(record_webhook_attempt.error, 500)) end
    where w.organization_id = v_org and w.id = v_endpoint.id;
    update app_public.webhook_deliveries d set status = 'cancelled', last_error = coalesce(d.last_error, 'The endpoint was disabled.')
    where d.organization_id = v_org and d.endpoint_id = v_endpoint.id and d.status = 'pending' and d.id <> v_delivery.id;
    if v_delivery.status = 'pending' then
      update app_public.webhook_deliveries d set status = 'failed' where d.organization_id = v_org and d.id = v_delivery.id
      returning * into v_delivery;
    end if;
  end if;
  return v_delivery.status;
end
$$;
revoke all on function app_private.record_webhook_attempt(uuid, text, integer, text, boolean, boolean) from public;
grant execute on function app_private.record_webhook_attempt(uuid, text, integer, text, boolean, boolean) to :DATABASE_WORKER;

-- Members: send a delivery again, or a test event -------------------------------------------------

create or replace function app_public.retry_webhook_delivery(id uuid) returns app_public.webhook_deliveries
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_delivery app_public.webhook_deliveries;
begin
  perform app_private.require_permission('webhooks.write', 'retry webhook deliveries');
  select * into v_delivery from app_public.webhook_deliveries d
  where d.organization_id = app_public.current_org_id() and d.id = retry_webhook_delivery.id
    and d.source_table = any (app_private.readable_activity_tables()) -- sql/functions/copies.sql
  for update;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such webhook delivery in this organization.');
  elsif v_delivery.status not in ('failed', 'cancelled') then
    perform app_private.fail('NOT_RETRYABLE', format('Only failed or cancelled deliveries can be retried; this one is %s.', v_delivery.status));
  elsif v_delivery.payload_removed_at is not null then
    perform app_private.fail('NOT_RETRYABLE', 'This delivery''s payload was removed after the organization''s webhook payload retention window; it cannot be sent again.');
  elsif not exists (
    select from app_public.webhook_endpoints w
    where w.organization_id = v_delivery.organization_id and w.id = v_delivery.endpoint_id and w.enabled and w.deleted_at is null
  ) then
    perform app_private.fail('NOT_RETRYABLE', 'The endpoint is disabled or deleted; enable it first.');
  end if;
  update app_public.webhook_deliveries d set status = 'pending', last_error = null
  where d.organization_id = v_delivery.organization_id and d.id = v_delivery.id
  returning * into v_delivery;
  perform app_private.enqueue_webhook_delivery(v_delivery.organization_id, v_delivery.id);
  return v_delivery;
end
$$;
comment on function app_public.retry_webhook_delivery(uuid) is 'Sends a failed or cancelled delivery again (its endpoint must be enabled).';

create or replace function app_public.send_test_webhook(endpoint_id uuid) returns app_public.webhook_deliveries
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_endpoint app_public.webhook_endpoints;
  v_delivery app_public.webhook_deliveries;
  v_id uuid := gen_random_uuid();
begin
  perform app_private.require_permission('webhooks.write', 'send test webhooks');
  select * into v_endpoint from app_public.webhook_endpoints w
  where w.organization_id = app_public.current_org_id() and w.id = send_test_webhook.endpoint_id and w.deleted_at is null;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such webhook endpoint in this organization.');
  elsif not v_endpoint.enabled then
    perform app_private.fail('NOT_RETRYABLE', 'The endpoint is disabled; enable it first.');
  end if;
  insert into app_public.webhook_deliveries (organization_id, id, endpoint_id, event_type, payload)
  values (v_endpoint.organization_id, v_id, v_endpoint.id, 'ping', jsonb_build_object(
    'id', v_id, 'type', 'ping', 'created_at', now(), 'organization_id', v_endpoint.organization_id,
    'data', jsonb_build_object('endpoint_id', v_endpoint.id)))
  returning * into v_delivery;
  perform app_private.enqueue_webhook_delivery(v_delivery.organization_id, v_delivery.id);
  return v_delivery;
end
$$;
comment on function app_public.send_test_webhook(uuid) is 'Sends a `ping` event to an endpoint, to check it receives and verifies deliveries.';

do $$
declare
  f text;
begin
  foreach f in array array[
    'app_public.webhook_event_types()',
    'app_public.create_webhook_endpoint(text, text[], text)',
    'app_public.rotate_webhook_secret(uuid)',
    'app_public.retry_webhook_delivery(uuid)',
    'app_public.send_test_webhook(uuid)'
  ] loop
    execute format('revoke all on function %s from public', f);
    execute format('grant execute on function %s to :DATABASE_VISITOR', f);
  end loop;
end
$$;
--! EndIncluded functions/webhooks.sql
--! Included functions/data_exports.sql
-- Data exports (docs/EXPORT_AND_IMPORT.md): an organization's data as one zip, made by a job.
--
--   requestOrganizationExport   app_public.request_organization_export(valid_days): owners and
--                               admins (they already read every row of the organization; the
--                               export gives them nothing the API does not). Adds the row
--                               (requested) and queues the `data_export` job in the same
--                               transaction. While one export of the organization is requested or
--                               running, a new request answers that one (one at a time); one
--                               not finished within a day is failed first.
--   data_export (job)           start_data_export → running; the worker reads every table of
--                               app_private.export_tables() inside the organization (row-level
--                               security, as every task reads) and stores the zip under
--                               storage_key; finish_data_export → ready, expires_at, queues the
--                               email to the requester (a link to the app, no secret) and the
--                               expiry job; fail_data_export → failed with a reason.
--   data_export_expire (job)    at expires_at: expire_data_export → expired; the worker deletes
--                               the object.
--   DataExport.downloadUrl      a short-lived signed link while the export is ready and not past
--                               expires_at (app_private.data_exports_downloadable; src/http/exports.ts).
--
-- `kind`: 'organization' (everything), or one person's data, named in subject_id (the check below
-- ties the two together): 'contact' (exportContact) and 'user' (exportUser), both in
-- sql/functions/person_exports.sql. What each export holds is app_private.export_sources.
-- `final`: the organization's last export, queued by deleteOrganization; it outlives the purge
-- (app_private.kept_exports, sql/functions/organization_deletion.sql).
-- Idempotent; re-included by later migrations.

create table if not exists app_public.data_exports (
  organization_id uuid not null references app_public.organizations on delete cascade,
  id uuid not null default gen_random_uuid(),
  kind text not null default 'organization' constraint data_exports_kind check (kind in ('organization', 'contact', 'user')),
  subject_id uuid,
  status text not null default 'requested' constraint data_exports_status check (status in ('requested', 'running', 'ready', 'expired', 'failed')),
  failure_reason text constraint data_exports_failure_reason check ((status = 'failed') = (failure_reason is not null) and length(failure_reason) <= 500),
  requested_by uuid references app_public.users on delete set null,
  valid_days integer not null default 7 constraint data_exports_valid_days check (valid_days between 1 and 30),
  storage_key text not null,
  byte_size bigint constraint data_exports_byte_size check (byte_size >= 0),
  row_counts jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  started_at timestamptz,
  ready_at timestamptz,
  expires_at timestamptz,
  expired_at timestamptz,
  primary key (organization_id, id),
  -- The key is the server's, one per export (a plain column, not a generated one, so that copies of
  -- rows in the catalog tests name only real columns).
  constraint data_exports_storage_key check (storage_key = 'exports/' || organization_id::text || '/' || id::text || '.zip'),
  constraint data_exports_subject check ((kind = 'organization') = (subject_id is null)),
  constraint data_exports_ready check (status not in ('ready', 'expired') or (ready_at is not null and expires_at is not null and byte_size is not null and row_counts is not null))
);
create index if not exists data_exports_organization_id_requested_by_idx on app_public.data_exports (organization_id, requested_by);
create index if not exists data_exports_organization_id_status_idx on app_public.data_exports (organization_id, status);
alter table app_public.data_exports drop constraint if exists data_exports_kind;
alter table app_public.data_exports add constraint data_exports_kind check (kind in ('organization', 'contact', 'user'));
alter table app_public.data_exports add column if not exists final boolean not null default false;
alter table app_public.data_exports drop constraint if exists data_exports_final;
alter table app_public.data_exports add constraint data_exports_final check (not final or kind = 'organization');
create index if not exists data_exports_organization_id_subject_id_idx on app_public.data_exports (organization_id, subject_id);
comment on table app_public.data_exports is 'Exports of the organization''s data (one zip each), requested by owners and admins, made by a job, downloadable until they expire.';
comment on column app_public.data_exports.kind is 'What is exported: organization (everything), contact (what the organization holds about one client contact: exportContact) or user (your own data: exportUser). subjectId names the contact or user.';
comment on column app_public.data_exports.final is 'The organization''s final export, made when an owner asked to delete it (deleteOrganization): downloadable until 30 days after the deletion (myFinalExports once the organization is gone).';
comment on column app_public.data_exports.status is 'requested → running → ready → expired, or failed (see failureReason).';
comment on column app_public.data_exports.valid_days is 'How many days the export stays downloadable once ready (1 to 30).';
comment on column app_public.data_exports.storage_key is 'Where the zip is stored (made by the server).';
comment on column app_public.data_exports.row_counts is 'Rows per table in the export.';

call app_private.assert_tenant_shape('app_public.data_exports');
call app_private.force_rls('app_public.data_exports');
call app_private.attach_updated_at('app_public.data_exports');
call app_private.attach_audit('app_public.data_exports');
call app_private.attach_email_normalizer('app_public.data_exports');
call app_private.classify_columns('app_public.data_exports', '{"kind": "none", "status": "none", "failure_reason": "free_text", "storage_key": "none", "row_counts": "none", "final": "none"}');
alter table app_public.data_exports alter column requested_by set default app_public.current_user_id();

-- Only owners and admins see exports (an export holds every row of the organization); nobody
-- writes them directly: request_organization_export and the job's functions do.
drop policy if exists select_by_admins on app_public.data_exports;
create policy select_by_admins on app_public.data_exports for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and (select app_public.current_member_has_role('admin')));
comment on policy select_by_admins on app_public.data_exports is 'Owners and admins read the current organization''s exports.';
-- Everyone reads the exports of their own data (exportUser) in the current organization.
drop policy if exists select_own_user_exports on app_public.data_exports;
create policy select_own_user_exports on app_public.data_exports for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and kind = 'user' and subject_id = (select app_public.current_user_id()));
comment on policy select_own_user_exports on app_public.data_exports is 'Every member reads the exports of their own data (exportUser) in the current organization.';
revoke all on app_public.data_exports from public, :DATABASE_VISITOR;
grant select on app_public.data_exports to :DATABASE_VISITOR;
insert into app_private.activity_read_rules (table_name, permission, min_role) values ('data_exports', null, 'admin')
on conflict (table_name) do update set permission = excluded.permission, min_role = excluded.min_role;

------------------------------------------------------------------------------------------------
-- What an export holds (read by the worker when it exports and by `import-organization`)

-- Tables never exported, with the reason: the exports themselves (their objects live in this
-- installation's store only).
create or replace function app_private.export_excluded_tables() returns text[]
language sql immutable
set search_path = pg_catalog
as $$
  select array['data_exports']
$$;

-- The tables of an organization export: `organizations` (its row), every app_public table with
-- organization_id (so a new tenant table is exported without anyone remembering), and `users`
-- (the people its rows point at: app_private.export_users). For each, the columns exported: all
-- but secret ones (the audit trigger's secret_columns, and any whose name says secret; app_private
-- is never read), with `generated` ones (computed again by PostgreSQL on import).
-- soft_delete: deleted rows are read through app_public.deleted_<table>() (those still restorable).
create or replace function app_private.export_tables()
returns table (table_name text, columns text[], generated_columns text[], soft_delete boolean)
language sql stable
set search_path = pg_catalog
as $$
  with tables as (
    select c.oid, c.relname::text as table_name
    from pg_class c
    where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p')
      and (c.relname in ('organizations', 'users')
        or exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped))
      and c.relname <> all (app_private.export_excluded_tables())
  ),
  secrets as (
    -- The audit trigger's second argument: its secret columns (layout in sql/functions/triggers.sql).
    select t.tgrelid as oid, s.col
    from pg_trigger t
    cross join lateral unnest((app_private.trigger_arguments(t.tgargs, t.tgnargs))[2]::text[]) as s(col)
    where t.tgname like 'tg\_%\_\_audit\_insert' and t.tgfoid = 'app_private.tg__audit'::regproc and not t.tgisinternal
  )
  select t.table_name,
    array_agg(a.attname::text order by a.attnum),
    coalesce(array_agg(a.attname::text order by a.attnum) filter (where a.attgenerated <> ''), '{}'),
    exists (select from pg_proc p where p.pronamespace = 'app_public'::regnamespace and p.proname = 'deleted_' || t.table_name and p.pronargs = 0)
  from tables t
  join pg_attribute a on a.attrelid = t.oid and a.attnum > 0 and not a.attisdropped
  where not exists (select from secrets s where s.oid = t.oid and s.col = a.attname)
    and a.attname !~ '(password|secret|token|hash)'
  group by t.table_name
  order by t.table_name
$$;
comment on function app_private.export_tables() is 'The tables and columns of an organization export (docs/EXPORT_AND_IMPORT.md): never app_private, never secret columns.';

-- The people the organization's rows point at (every foreign key from an exported table to
-- app_public.users): members, client-portal users, inviters. Row-level security shows the worker
-- only current members; the others are needed for the rows that name them.
create or replace function app_private.export_users() returns setof app_public.users
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_ids uuid[] := '{}';
  v_more uuid[];
  r record;
begin
  for r in
    select c.conrelid::regclass as tbl, a.attname
    from pg_constraint c
    join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
    where c.contype = 'f' and c.confrelid = 'app_public.users'::regclass and cardinality(c.conkey) = 1
      and c.connamespace = 'app_public'::regnamespace
      and (select relname from pg_class where oid = c.conrelid) in (select e.table_name from app_private.export_tables() e)
      and exists (select from pg_attribute o where o.attrelid = c.conrelid and o.attname = 'organization_id' and not o.attisdropped)
  loop
    execute format('select coalesce(array_agg(distinct %I), ''{}'') from %s where organization_id = $1 and %I is not null', r.attname, r.tbl, r.attname)
      into v_more using v_org;
    v_ids := v_ids || v_more;
  end loop;
  return query select u.* from app_public.users u where u.id = any (v_ids) order by u.id;
end
$$;

-- The rows of `table_name` that an organization export holds, as SQL selecting `columns` (run by
-- the worker inside the organization: row-level security applies as well). Soft-deleted rows the
-- organization can still restore are its data too (and rows point at them).
create or replace function app_private.export_table_source(table_name text, columns text[], soft_delete boolean) returns text
language sql immutable
set search_path = pg_catalog
as $$
  select case
    when table_name = 'users' then format('select %s from app_private.export_users()', x.cols)
    when table_name = 'organizations' then format('select %s from app_public.organizations where id = (select app_public.current_org_id())', x.cols)
    when soft_delete then format('select %1$s from app_public.%2$I where organization_id = (select app_public.current_org_id()) union all select %1$s from app_public.%3$I()', x.cols, table_name, 'deleted_' || table_name)
    else format('select %s from app_public.%I where organization_id = (select app_public.current_org_id())', x.cols, table_name)
  end
  from (select string_agg(format('%I', c.name), ', ' order by c.n) as cols from unnest(columns) with ordinality as c(name, n)) x
$$;

-- What an export holds, one row per file pair of the zip: the table's name, its columns, and the
-- SQL that selects its rows (every row has an id; the writer, src/export/writer.ts, reads them in
-- id order through a cursor, as the worker, inside the export's organization). One question, one
-- answer, for every kind: an organization export holds every table of export_tables(); exports of
-- one person (contact, user) are made by sql/functions/person_exports.sql. Only for an export
-- that is running in the current organization (on the worker's connection). The SQL names rows by
-- their ids only, never by a person's values.
create or replace function app_private.export_sources(export_id uuid) returns table (table_name text, columns text[], source text)
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_export app_public.data_exports;
begin
  select e.* into v_export from app_public.data_exports e
  where e.organization_id = v_org and e.id = export_sources.export_id and e.status = 'running';
  if not found then
    perform app_private.fail('NOT_FOUND', 'No running export with this id in this organization.');
  end if;
  case v_export.kind
    when 'organization' then
      return query select t.table_name, t.columns, app_private.export_table_source(t.table_name, t.columns, t.soft_delete) from app_private.export_tables() t;
    when 'contact' then
      return query select * from app_private.contact_export_sources(v_export.subject_id);
    when 'user' then
      return query select * from app_private.user_export_sources(v_export.id, v_export.subject_id);
  end case;
end
$$;
comment on function app_private.export_sources(uuid) is 'What an export holds (docs/EXPORT_AND_IMPORT.md): per table, its columns and the SQL selecting its rows.';

-- The schema an export was made with: the last committed migration.
create or replace function app_private.schema_migration(out filename text, out hash text)
language sql stable security definer
set search_path = pg_catalog
as $$
  select m.filename, m.hash from graphile_migrate.migrations m order by m.date desc, m.filename desc limit 1
$$;

------------------------------------------------------------------------------------------------
-- Requesting an export

-- Every request of an export, of any kind (the caller has checked who may ask): the row
-- (requested) and the `data_export` job, in the caller's transaction. One export of a kind and
-- subject at a time: a request while one is on its way answers that one. One that did not finish
-- within a day (its job failed without saying so: the database was away on its last attempt) is
-- failed now, so it cannot block every later request. `final`: deleteOrganization's export (an
-- organization export on its way becomes the final one).
create or replace function app_private.request_data_export(kind text, subject_id uuid, valid_days integer, final boolean default false) returns app_public.data_exports
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_export app_public.data_exports;
begin
  if request_data_export.valid_days is null or request_data_export.valid_days not between 1 and 30 then
    perform app_private.fail('INVALID_VALUE', 'validDays must be between 1 and 30.');
  end if;
  perform pg_advisory_xact_lock(hashtextextended('data_exports:' || v_org::text, 0));
  update app_public.data_exports e set status = 'failed', failure_reason = 'It did not finish within a day.'
  where e.organization_id = v_org and e.status in ('requested', 'running') and e.created_at < now() - interval '1 day';
  select * into v_export from app_public.data_exports e
  where e.organization_id = v_org and e.kind = request_data_export.kind and e.subject_id is not distinct from request_data_export.subject_id
    and e.status in ('requested', 'running');
  if found then
    if request_data_export.final and not v_export.final then
      update app_public.data_exports e set final = true, valid_days = request_data_export.valid_days
      where e.organization_id = v_org and e.id = v_export.id
      returning * into v_export;
    end if;
    return v_export;
  end if;
  v_export.id := gen_random_uuid();
  insert into app_public.data_exports (organization_id, id, kind, subject_id, final, valid_days, requested_by, storage_key)
  values (v_org, v_export.id, request_data_export.kind, request_data_export.subject_id, request_data_export.final, request_data_export.valid_days,
    app_public.current_user_id(), format('exports/%s/%s.zip', v_org, v_export.id))
  returning * into v_export;
  perform graphile_worker.add_job(
    'data_export',
    json_build_object('organization_id', v_export.organization_id, 'export_id', v_export.id),
    job_key => format('data_export:%s', v_export.id),
    max_attempts => 5
  );
  return v_export;
end
$$;

create or replace function app_public.request_organization_export(valid_days integer default 7) returns app_public.data_exports
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  perform app_private.require_member_role('admin', 'export the organization''s data');
  return app_private.request_data_export('organization', null, request_organization_export.valid_days);
end
$$;
comment on function app_public.request_organization_export(integer) is
  E'Export all of the organization''s data (owners and admins): a job writes one zip (JSON and CSV per table, and a manifest) and emails you when it is ready. It stays downloadable (`downloadUrl`) for `validDays` days (1 to 30, 7 by default). While an export is on its way, this answers that one.';

------------------------------------------------------------------------------------------------
-- The jobs' functions (only the worker, inside the export's organization)

-- data_export: requested → running; the export to make, or nothing (not found, or no longer
-- requested or running: a retry after it finished).
create or replace function app_private.start_data_export(export_id uuid) returns setof app_public.data_exports
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
begin
  return query
    update app_public.data_exports e set status = 'running', started_at = now()
    where e.organization_id = v_org and e.id = start_data_export.export_id and e.status in ('requested', 'running')
    returning e.*;
end
$$;

-- data_export: the zip is stored; ready until now() + valid_days. Emails the requester a link to
-- the export in the app (the app asks for a fresh downloadUrl; no link or secret in the job) and
-- queues the expiry.
create or replace function app_private.finish_data_export(export_id uuid, byte_size bigint, row_counts jsonb) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_export app_public.data_exports;
  v_user app_public.users;
  v_name text;
begin
  -- The final export of an organization being deleted stays until some time after the purge
  -- (app_private.final_export_keep(), sql/functions/organization_deletion.sql), whatever valid_days.
  update app_public.data_exports e
  set status = 'ready', ready_at = now(),
    expires_at = greatest(now() + make_interval(days => e.valid_days),
      case when e.final then (select o.deletion_due_at from app_public.organizations o where o.id = v_org) + app_private.final_export_keep() end),
    byte_size = finish_data_export.byte_size, row_counts = finish_data_export.row_counts
  where e.organization_id = v_org and e.id = finish_data_export.export_id and e.status = 'running'
  returning e.* into v_export;
  if not found then
    return false;
  end if;
  perform graphile_worker.add_job(
    'data_export_expire',
    json_build_object('organization_id', v_org, 'export_id', v_export.id),
    run_at => v_export.expires_at,
    job_key => format('data_export_expire:%s', v_export.id),
    max_attempts => 25
  );
  select u.* into v_user from app_public.users u where u.id = v_export.requested_by;
  if found then
    select o.name into v_name from app_public.organizations o where o.id = v_org;
    perform app_private.enqueue_email(
      'data_export_ready',
      v_user.email,
      jsonb_build_object(
        'name', v_user.name,
        'organization_name', v_name,
        'export_id', v_export.id,
        'expires_at', to_char(v_export.expires_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
        -- What it holds and who may download it (never a contact's name: jobs carry ids).
        'contents', case v_export.kind
          when 'contact' then 'everything it holds about one of its client contacts'
          when 'user' then 'your account, and what it holds about you as a member'
          else case when v_export.final then 'all of its data, made because its deletion was requested' else 'all of its data' end
        end,
        'download_rule', case
          when v_export.kind = 'user' then format('Sign in and choose %s to download it.', v_name)
          when v_export.final then format('Sign in as an owner or admin of %s to download it; once the organization is deleted, you find it among your final exports.', v_name)
          else format('Sign in as an owner or admin of %s to download it.', v_name)
        end
      ),
      format('data_export_ready:%s', v_export.id),
      v_org
    );
  end if;
  return true;
end
$$;

-- data_export, when it cannot succeed (or used up its attempts): failed, with the reason.
create or replace function app_private.fail_data_export(export_id uuid, reason text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
begin
  update app_public.data_exports e set status = 'failed', failure_reason = left(coalesce(nullif(fail_data_export.reason, ''), 'unknown'), 500)
  where e.organization_id = v_org and e.id = fail_data_export.export_id and e.status in ('requested', 'running');
end
$$;

-- data_export_expire: ready and past expires_at → expired. Returns the key of the object to
-- delete (again, for an export already expired: a retry after the store did not answer), or null.
create or replace function app_private.expire_data_export(export_id uuid) returns text
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_key text;
begin
  update app_public.data_exports e set status = 'expired', expired_at = now()
  where e.organization_id = v_org and e.id = expire_data_export.export_id and e.status = 'ready' and e.expires_at <= now();
  select e.storage_key into v_key from app_public.data_exports e
  where e.organization_id = v_org and e.id = expire_data_export.export_id and e.status = 'expired';
  return v_key;
end
$$;

-- A ready export may be downloaded until it expires (by those who read it: owners and admins).
-- (Plain SQL, every name qualified, so that PostgreSQL inlines it into the query.)
create or replace function app_private.data_exports_downloadable(e app_public.data_exports) returns boolean
language sql stable
as $$
  select e.status = 'ready' and e.expires_at > pg_catalog.now()
$$;
comment on function app_private.data_exports_downloadable(app_public.data_exports) is 'True while the export is ready and not past expiresAt: DataExport.downloadUrl is given then.';

revoke all on function
  app_private.export_excluded_tables(),
  app_private.export_tables(),
  app_private.export_users(),
  app_private.export_table_source(text, text[], boolean),
  app_private.export_sources(uuid),
  app_private.schema_migration(),
  app_private.request_data_export(text, uuid, integer, boolean),
  app_public.request_organization_export(integer),
  app_private.start_data_export(uuid),
  app_private.finish_data_export(uuid, bigint, jsonb),
  app_private.fail_data_export(uuid, text),
  app_private.expire_data_export(uuid),
  app_private.data_exports_downloadable(app_public.data_exports)
from public;
grant execute on function app_public.request_organization_export(integer), app_private.data_exports_downloadable(app_public.data_exports) to :DATABASE_VISITOR;
grant execute on function
  app_private.export_excluded_tables(),
  app_private.export_tables(),
  app_private.export_users(),
  app_private.export_sources(uuid),
  app_private.schema_migration(),
  app_private.start_data_export(uuid),
  app_private.finish_data_export(uuid, bigint, jsonb),
  app_private.fail_data_export(uuid, text),
  app_private.expire_data_export(uuid)
to :DATABASE_WORKER;
-- export_tables (run by the worker) reads the audit triggers' secret columns with it.
grant execute on function app_private.trigger_arguments(bytea, integer) to :DATABASE_WORKER;

------------------------------------------------------------------------------------------------
-- Import (`import-organization`, src/export/import.ts): what the imported rows imply, set by the
-- owner at the end of the import's transaction. Nothing else may run it.
--   * the invoice counter continues after the highest imported invoice number;
--   * webhook endpoints are disabled: their signing secrets are not in the export (rotate the
--     secret, then enable the endpoint).
create or replace function app_private.finish_organization_import(organization_id uuid) returns void
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  insert into app_private.invoice_counters as c (organization_id, last_number)
  select i.organization_id, max(i.number) from app_public.invoices i
  where i.organization_id = finish_organization_import.organization_id and i.number is not null
  group by i.organization_id
  on conflict on constraint invoice_counters_pkey do update set last_number = greatest(c.last_number, excluded.last_number);
  update app_public.webhook_endpoints e
  set enabled = false, disabled_at = coalesce(e.disabled_at, now()),
    disabled_reason = 'Imported without its signing secret: rotate the secret, then enable the endpoint.'
  where e.organization_id = finish_organization_import.organization_id and e.enabled;
  -- Events written from now on come after the imported ones in the log's order (seq).
  perform setval('app_private.activity_event_seq', greatest(
    (select last_value from app_private.activity_event_seq),
    (select coalesce(max(e.seq), 1) from app_public.activity_events e where e.organization_id = finish_organization_import.organization_id)));
end
$$;
revoke all on function app_private.finish_organization_import(uuid) from public;

-- A deleted export row (the purge of a deleted organization: sql/functions/organization_deletion.sql)
-- queues the deletion of its zip, like a deleted file's object: data_export_delete_object, which
-- only ever deletes exports/<organization>/<export>.zip. The final export the purge keeps
-- (app_private.kept_exports, sql/functions/organization_deletion.sql) goes when it expires.
create or replace function app_private.tg_data_exports__delete_object() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  perform graphile_worker.add_job(
    'data_export_delete_object',
    json_build_object('organization_id', o.organization_id, 'export_id', o.id),
    run_at => greatest(now(), k.expires_at),
    job_key => format('data_export_delete_object:%s', o.id),
    max_attempts => 50
  )
  from old_rows o
  left join app_private.kept_exports k on k.organization_id = o.organization_id and k.export_id = o.id;
  return null;
end
$$;
drop trigger if exists tg_data_exports__delete_object on app_public.data_exports;
create trigger tg_data_exports__delete_object after delete on app_public.data_exports
  referencing old table as old_rows for each statement execute function app_private.tg_data_exports__delete_object();
--! EndIncluded functions/data_exports.sql
--! Included functions/person_exports.sql
-- Exports of one person's data (GDPR art. 15 and 20), made by the organization export's machinery
-- (sql/functions/data_exports.sql: a data_exports row, the data_export job, the zip, the email,
-- the expiry). docs/EXPORT_AND_IMPORT.md says what each holds and why.
--
--   exportContact(contactId)  owners and admins: everything the organization holds about one client
--                             contact (kind 'contact'). Admins may, as for the organization export:
--                             they already read every row the zip holds; members, viewers and
--                             custom roles may not (the zip crosses every area: invoices, messages,
--                             the log). Another organization's contact answers as a random id.
--   exportUser()              every member, for themselves: their account and what the current
--                             organization holds about them as a member (kind 'user'). They read
--                             their own exports (policy select_own_user_exports).
--
-- What a contact export holds (app_private.contact_export_sources), found as the erasure finds a
-- contact's data (sql/functions/erasure.sql):
--   - the contact's row; every row that references it through a foreign key (read from the
--     catalog: a new table pointing at contacts is covered the day it exists);
--   - the contact's client-portal accounts (users named by those rows) and every row such an
--     account created (`created_by`: the messages the contact posted in the portal);
--   - every row whose personal or free-text columns (app_private.person_text_columns) hold one of
--     the contact's needles (app_private.contact_needles: every email, phone and full name the
--     contact's record ever had): a task description or a message quoting the contact;
--   - the activity log's events of all those rows, and every event whose values hold a needle.
-- What a user export holds (app_private.user_export_sources):
--   - the account: the users row (id, email, name, dates), its sessions (when made, refreshed,
--     expiring, revoked, and why; never a token or its hash), its memberships in every
--     organization (organization, its name, role, since);
--   - in the current organization: every row that names them as its person through a foreign key
--     from the catalog, on a `user_id` column (their member row, portal access) or to their member
--     row on a `member_id` column (role assignments, time entries);
--   - the events they authored here (actor_id), without the old and new values of records that are
--     not theirs (those are the organization's records, in its own export), and every event of
--     the rows above, values included.
-- Never secrets: app_private is read only through the functions below, which leave out password
-- and token hashes; tables' secret columns are never exported (app_private.export_tables()).
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- Requests

create or replace function app_public.export_contact(contact_id uuid, valid_days integer default 7) returns app_public.data_exports
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  perform app_private.require_member_role('admin', 'export a contact''s data');
  -- One lookup by organization and id (soft-deleted contacts included): another organization's
  -- contact misses exactly as a random id does.
  if not exists (select from app_public.contacts c where c.organization_id = app_public.current_org_id() and c.id = export_contact.contact_id) then
    perform app_private.fail('NOT_FOUND', 'No such contact in this organization.');
  end if;
  return app_private.request_data_export('contact', export_contact.contact_id, export_contact.valid_days);
end
$$;
comment on function app_public.export_contact(uuid, integer) is
  E'Export everything the organization holds about one client contact (GDPR art. 15 and 20; owners and admins): a job writes one zip (JSON and CSV per table, and a manifest) with the contact, the records that reference or mention them, and those records'' history, and emails you when it is ready. Downloadable (`downloadUrl`) for `validDays` days (1 to 30, 7 by default).';

create or replace function app_public.export_user(valid_days integer default 7) returns app_public.data_exports
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  if app_public.current_user_id() is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in to export your data.');
  end if;
  perform app_private.require_member_role('viewer', 'export your data');
  return app_private.request_data_export('user', app_public.current_user_id(), export_user.valid_days);
end
$$;
comment on function app_public.export_user(integer) is
  E'Export your own data (GDPR art. 15 and 20; every member): a job writes one zip with your account (profile, sessions, memberships; never a password or token) and what this organization holds about you as a member (your member row, role assignments, time entries, the changes you made), and emails you when it is ready. Downloadable (`downloadUrl`) for `validDays` days (1 to 30, 7 by default).';

------------------------------------------------------------------------------------------------
-- What they hold (called by app_private.export_sources, as its owner, in the export's organization)

-- The rows of a person's export, table by table: for each table of `predicates` (its name → SQL
-- true for the rows to export; $1, $2 and $3 in it are `a`, `b` and `c`), the ids of the rows that
-- an organization export reads (live and restorable soft-deleted ones) where it holds, and the SQL
-- selecting exactly those rows. Tables without such rows are left out, and so are users,
-- organizations and the log (each kind says which of those it holds). In export_tables() order.
create or replace function app_private.export_matching_rows(predicates jsonb, a uuid, b uuid[], c text)
returns table (table_name text, columns text[], source text, ids uuid[])
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_table record;
  v_source text;
begin
  for v_table in
    select t.* from app_private.export_tables() t
    where predicates ? t.table_name and t.table_name not in ('users', 'organizations', 'activity_events')
  loop
    v_source := app_private.export_table_source(v_table.table_name, v_table.columns, v_table.soft_delete);
    execute format('select coalesce(array_agg(x.id order by x.id), ''{}'') from (%s) x where %s', v_source, predicates ->> v_table.table_name)
      into ids using a, b, c;
    continue when cardinality(ids) = 0;
    table_name := v_table.table_name;
    columns := v_table.columns;
    source := format('select * from (%s) x where x.id = any (%L::uuid[])', v_source, ids);
    return next;
  end loop;
end
$$;

-- The non-organization columns of each foreign key from an exported table to `target`.
create or replace function app_private.export_references(target regclass)
returns table (table_name text, column_name text)
language sql stable
set search_path = pg_catalog
as $$
  select c.conrelid::regclass::text, a.attname::text
  from pg_constraint c
  cross join lateral unnest(c.conkey) as k(attnum)
  join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
  where c.contype = 'f' and c.confrelid = export_references.target and c.connamespace = 'app_public'::regnamespace
    and a.attname <> 'organization_id'
$$;

create or replace function app_private.contact_export_sources(contact_id uuid) returns table (table_name text, columns text[], source text)
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_needles text[] := app_private.contact_needles(contact_export_sources.contact_id);
  v_pattern text;
  v_accounts uuid[];
  v_tables text[] := '{}';
  v_ids uuid[] := '{}';
  v_rows record;
  v_events uuid[];
  v_users text[] := (select t.columns from app_private.export_tables() t where t.table_name = 'users');
  v_events_table record;
begin
  v_pattern := (select string_agg(app_private.literal_pattern(n.n), '|') from unnest(v_needles) as n(n));
  -- The contact's portal accounts: users named by the rows that reference the contact.
  select coalesce(array_agg(distinct p.user_id) filter (where p.user_id is not null), '{}') into v_accounts
  from app_public.client_portal_access p where p.organization_id = v_org and p.contact_id = contact_export_sources.contact_id;
  for v_rows in
    select * from app_private.export_matching_rows(
      (select jsonb_object_agg(t.table_name, p.predicate)
       from app_private.export_tables() t
       cross join lateral (select concat_ws(' or ',
         case when t.table_name = 'contacts' then 'id = $1' end,
         (select string_agg(format('%I = $1', r.column_name), ' or ') from app_private.export_references('app_public.contacts') r where r.table_name = 'app_public.' || t.table_name),
         case when 'created_by' = any (t.columns) and cardinality(v_accounts) > 0 then 'created_by = any ($2)' end,
         case when v_pattern is not null then nullif(app_private.person_text_match(t.table_name, '$3', t.columns), 'false') end) as predicate) p
       where p.predicate <> ''),
      contact_export_sources.contact_id, v_accounts, v_pattern)
  loop
    v_tables := v_tables || array_fill(v_rows.table_name, array[cardinality(v_rows.ids)]);
    v_ids := v_ids || v_rows.ids;
    return query select v_rows.table_name, v_rows.columns, v_rows.source;
  end loop;
  if cardinality(v_accounts) > 0 then
    table_name := 'users';
    columns := v_users;
    source := format('select %s from app_private.export_users() x where x.id = any (%L::uuid[])',
      (select string_agg(format('x.%I', c), ', ') from unnest(v_users) as c), v_accounts);
    return next;
  end if;
  -- The log: the events of every row above, and every event whose values hold a needle.
  select e.* into v_events_table from app_private.export_tables() e where e.table_name = 'activity_events';
  select coalesce(array_agg(e.id order by e.id), '{}') into v_events
  from app_public.activity_events e
  where e.organization_id = v_org
    and ((e.table_name, e.record_id) in (select * from unnest(v_tables, v_ids))
      or (v_pattern is not null and (e.old_values::text ~* v_pattern or e.new_values::text ~* v_pattern)));
  if cardinality(v_events) > 0 then
    table_name := 'activity_events';
    columns := v_events_table.columns;
    source := format('select * from (%s) x where x.id = any (%L::uuid[])', app_private.export_table_source('activity_events', v_events_table.columns, false), v_events);
    return next;
  end if;
end
$$;

-- The account of a running user export's subject, its sessions (no token hash) and its memberships
-- in every organization: the parts of a user export that row-level security does not show the
-- worker (the account is global; sessions live in app_private). Only for a user export running in
-- the current organization, on the worker's connection.
create or replace function app_private.export_subject(export_id uuid) returns uuid
language sql stable security definer
set search_path = pg_catalog
as $$
  select e.subject_id from app_public.data_exports e
  where e.organization_id = app_private.require_worker_in_organization() and e.id = export_subject.export_id and e.kind = 'user' and e.status = 'running'
$$;

create or replace function app_private.export_subject_user(export_id uuid) returns setof app_public.users
language sql stable security definer
set search_path = pg_catalog
as $$
  select u.* from app_public.users u where u.id = app_private.export_subject(export_subject_user.export_id)
$$;

create or replace function app_private.export_user_sessions(export_id uuid)
returns table (id uuid, organization_id uuid, created_at timestamptz, refreshed_at timestamptz, expires_at timestamptz, revoked_at timestamptz, revoked_reason text)
language sql stable security definer
set search_path = pg_catalog
as $$
  select s.id, s.organization_id, s.created_at, s.refreshed_at, s.expires_at, s.revoked_at, s.revoked_reason
  from app_private.sessions s where s.user_id = app_private.export_subject(export_user_sessions.export_id)
$$;

create or replace function app_private.export_user_memberships(export_id uuid)
returns table (id uuid, organization_id uuid, organization_name text, role app_public.member_role, created_at timestamptz)
language sql stable security definer
set search_path = pg_catalog
as $$
  select m.id, m.organization_id, o.name, m.role, m.created_at
  from app_public.organization_members m
  join app_public.organizations o on o.id = m.organization_id
  where m.user_id = app_private.export_subject(export_user_memberships.export_id)
$$;

create or replace function app_private.user_export_sources(export_id uuid, user_id uuid) returns table (table_name text, columns text[], source text)
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_members uuid[];
  v_tables text[] := '{}';
  v_ids uuid[] := '{}';
  v_rows record;
  v_users text[] := (select t.columns from app_private.export_tables() t where t.table_name = 'users');
  v_events_columns text[] := (select t.columns from app_private.export_tables() t where t.table_name = 'activity_events');
begin
  select coalesce(array_agg(m.id), '{}') into v_members from app_public.organization_members m
  where m.organization_id = v_org and m.user_id = user_export_sources.user_id;

  table_name := 'users';
  columns := v_users;
  source := format('select %s from app_private.export_subject_user(%L)', (select string_agg(format('%I', c), ', ') from unnest(v_users) as c), export_id);
  return next;
  table_name := 'sessions';
  columns := array['id', 'organization_id', 'created_at', 'refreshed_at', 'expires_at', 'revoked_at', 'revoked_reason'];
  source := format('select * from app_private.export_user_sessions(%L)', export_id);
  return next;
  table_name := 'memberships';
  columns := array['id', 'organization_id', 'organization_name', 'role', 'created_at'];
  source := format('select * from app_private.export_user_memberships(%L)', export_id);
  return next;

  -- Rows that name them as their person: a user_id key to their account, a member_id key to
  -- their member row (foreign keys read from the catalog).
  for v_rows in
    select * from app_private.export_matching_rows(
      (select jsonb_object_agg(t.table_name, p.predicate)
       from app_private.export_tables() t
       cross join lateral (select concat_ws(' or ',
         (select string_agg(format('%I = $1', r.column_name), ' or ') from app_private.export_references('app_public.users') r
          where r.table_name = 'app_public.' || t.table_name and r.column_name = 'user_id'),
         (select string_agg(format('%I = any ($2)', r.column_name), ' or ') from app_private.export_references('app_public.organization_members') r
          where r.table_name = 'app_public.' || t.table_name and r.column_name = 'member_id')) as predicate) p
       where p.predicate <> ''),
      user_export_sources.user_id, v_members, null)
  loop
    v_tables := v_tables || array_fill(v_rows.table_name, array[cardinality(v_rows.ids)]);
    v_ids := v_ids || v_rows.ids;
    return query select v_rows.table_name, v_rows.columns, v_rows.source;
  end loop;

  -- The log: every event they authored here (the values only of the rows above: the others are
  -- the organization's records), and every event of the rows above.
  table_name := 'activity_events';
  columns := v_events_columns;
  source := format(
    'select %s from app_public.activity_events x where x.organization_id = (select app_public.current_org_id()) and (x.actor_id = %L or (x.table_name, x.record_id) in (select * from unnest(%L::text[], %L::uuid[])))',
    (select string_agg(case when c in ('old_values', 'new_values')
        then format('case when (x.table_name, x.record_id) in (select * from unnest(%L::text[], %L::uuid[])) then x.%I end as %I', v_tables, v_ids, c, c)
        else format('x.%I', c) end, ', ' order by n)
     from unnest(v_events_columns) with ordinality as u(c, n)),
    user_export_sources.user_id, v_tables, v_ids);
  return next;
end
$$;

revoke all on function
  app_public.export_contact(uuid, integer),
  app_public.export_user(integer),
  app_private.export_matching_rows(jsonb, uuid, uuid[], text),
  app_private.export_references(regclass),
  app_private.contact_export_sources(uuid),
  app_private.export_subject(uuid),
  app_private.export_subject_user(uuid),
  app_private.export_user_sessions(uuid),
  app_private.export_user_memberships(uuid),
  app_private.user_export_sources(uuid, uuid)
from public;
grant execute on function app_public.export_contact(uuid, integer), app_public.export_user(integer) to :DATABASE_VISITOR;
-- Called by the SQL of app_private.export_sources, which the worker runs.
grant execute on function
  app_private.export_subject_user(uuid),
  app_private.export_user_sessions(uuid),
  app_private.export_user_memberships(uuid)
to :DATABASE_WORKER;
--! EndIncluded functions/person_exports.sql
--! Included functions/organization_deletion.sql
-- Deleting an organization (GDPR art. 17 for a whole firm), owners only, with a grace period:
--
--   deleteOrganization(slug)      an owner types the organization's slug to confirm; the
--                                 organization is due for deletion in 30 days
--                                 (app_private.organization_deletion_grace()) and the job
--                                 `organization_purge` is queued to run then. Everything works as
--                                 before meanwhile. A final export of the whole organization is
--                                 queued at once (data_exports.final, requested by the owner, who
--                                 gets the email): downloadable through the grace period and
--                                 30 days after the purge (app_private.final_export_keep()): the
--                                 purge keeps it (app_private.kept_exports) and its owner finds
--                                 it with myFinalExports.
--   cancelOrganizationDeletion    an owner changes their mind during the grace period.
--
-- The purge (app_private.purge_organization, in one transaction) deletes every row the
-- organization owns in every table of app_public and app_private (children first, by foreign
-- keys, read from the catalog: a new table is covered the day it exists), its activity log
-- (through the erasure door of sql/functions/erasure.sql, opened for this organization with scope
-- `organization`: the only way events are ever deleted), its queued jobs, and its stored files
-- (each deleted file row queues `file_delete_object`). Without writing an event per deleted row:
-- the log being deleted with them. The people stay: users' accounts are their own. What remains
-- is app_private.deleted_organizations: the organization's id (`id`: the table holds no row of
-- the organization), who asked, when, when it was purged, and how many rows went per table.
-- Never its name or data.
-- Idempotent; re-included by later migrations.

alter table app_public.organizations
  add column if not exists deletion_requested_at timestamptz,
  add column if not exists deletion_requested_by uuid,
  add column if not exists deletion_due_at timestamptz;
comment on column app_public.organizations.deletion_requested_at is 'When an owner asked to delete the organization (deleteOrganization); null when no deletion is pending.';
comment on column app_public.organizations.deletion_requested_by is 'The owner who asked to delete the organization.';
comment on column app_public.organizations.deletion_due_at is 'When the organization and all its data will be deleted for good, unless an owner cancels (cancelOrganizationDeletion).';

create or replace function app_private.organization_deletion_grace() returns interval
language sql immutable
set search_path = pg_catalog
as $$ select interval '30 days' $$;
comment on function app_private.organization_deletion_grace() is 'How long an organization''s deletion waits for an owner to cancel it.';

create table if not exists app_private.deleted_organizations (
  id uuid primary key,
  requested_by uuid,
  requested_at timestamptz not null,
  purged_at timestamptz not null default now(),
  rows_deleted jsonb not null
);
alter table app_private.deleted_organizations enable row level security;
alter table app_private.deleted_organizations force row level security;
comment on table app_private.deleted_organizations is 'Organizations deleted for good (deleteOrganization, then the organization_purge job): who asked, when, and how many rows were deleted per table. Nothing of their data.';

-- How long the final export of a deleted organization stays after the purge.
create or replace function app_private.final_export_keep() returns interval
language sql immutable
set search_path = pg_catalog
as $$ select interval '30 days' $$;
comment on function app_private.final_export_keep() is 'How long the final export of a deleted organization stays downloadable after its purge.';

-- The final exports a purge kept: the zip stays in the store until expires_at (then the job
-- data_export_delete_object deletes it and this row), downloadable by the owner who asked for the
-- deletion (app_public.my_final_exports). Ids, a key and dates: nothing of the organization's data.
create table if not exists app_private.kept_exports (
  organization_id uuid not null,
  export_id uuid not null,
  user_id uuid not null references app_public.users on delete cascade,
  storage_key text not null constraint kept_exports_storage_key check (storage_key = 'exports/' || organization_id::text || '/' || export_id::text || '.zip'),
  byte_size bigint not null,
  ready_at timestamptz not null,
  expires_at timestamptz not null,
  primary key (organization_id, export_id)
);
create index if not exists kept_exports_user_id_idx on app_private.kept_exports (user_id);
create index if not exists kept_exports_organization_id_user_id_idx on app_private.kept_exports (organization_id, user_id);
alter table app_private.kept_exports enable row level security;
alter table app_private.kept_exports force row level security;
comment on table app_private.kept_exports is 'Final exports of deleted organizations, kept after the purge until they expire (myFinalExports).';

create or replace function app_public.delete_organization(slug text) returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
begin
  if app_public.current_org_id() is null then
    perform app_private.fail('NO_ORGANIZATION', 'Choose the organization to delete first (switchOrganization).');
  end if;
  if not app_public.current_member_has_role('owner') then
    perform app_private.fail('NOT_PERMITTED', 'Only an owner may delete the organization.');
  end if;
  select o.* into v_org from app_public.organizations o where o.id = app_public.current_org_id() for update;
  if delete_organization.slug is distinct from v_org.slug then
    perform app_private.fail('INVALID_VALUE', 'Type the organization''s slug exactly to confirm its deletion.');
  end if;
  if v_org.deletion_due_at is not null then
    return v_org;
  end if;
  update app_public.organizations o
  set deletion_requested_at = now(), deletion_requested_by = app_public.current_user_id(), deletion_due_at = now() + app_private.organization_deletion_grace()
  where o.id = v_org.id
  returning * into v_org;
  perform graphile_worker.add_job(
    'organization_purge',
    json_build_object('organization_id', v_org.id),
    run_at => v_org.deletion_due_at,
    job_key => 'organization_purge:' || v_org.id,
    max_attempts => 10
  );
  -- The firm's data, once more, for the owner: the final export (expires after the purge).
  perform app_private.request_data_export('organization', null, 30, final => true);
  return v_org;
end
$$;
revoke all on function app_public.delete_organization(text) from public;
grant execute on function app_public.delete_organization(text) to :DATABASE_VISITOR;
comment on function app_public.delete_organization(text) is E'Deletes the current organization and all its data for good after a grace period of 30 days (owners only; type its slug to confirm). Until then everything works and an owner may cancel (cancelOrganizationDeletion). A final export of all its data is made at once and emailed to you; it stays downloadable until 30 days after the deletion (then through myFinalExports). Members'' accounts stay theirs.';

create or replace function app_public.cancel_organization_deletion() returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_export app_public.data_exports;
begin
  if app_public.current_org_id() is null then
    perform app_private.fail('NO_ORGANIZATION', 'Choose the organization first (switchOrganization).');
  end if;
  if not app_public.current_member_has_role('owner') then
    perform app_private.fail('NOT_PERMITTED', 'Only an owner may cancel the organization''s deletion.');
  end if;
  update app_public.organizations o
  set deletion_requested_at = null, deletion_requested_by = null, deletion_due_at = null
  where o.id = app_public.current_org_id()
  returning * into v_org;
  perform graphile_worker.remove_job('organization_purge:' || v_org.id);
  -- The final export becomes an ordinary one: it expires valid_days after it was made.
  for v_export in
    update app_public.data_exports e
    set final = false, expires_at = case when e.status = 'ready' then least(e.expires_at, e.ready_at + make_interval(days => e.valid_days)) else e.expires_at end
    where e.organization_id = v_org.id and e.final
    returning e.*
  loop
    if v_export.status = 'ready' then
      perform graphile_worker.add_job('data_export_expire', json_build_object('organization_id', v_export.organization_id, 'export_id', v_export.id),
        run_at => v_export.expires_at, job_key => format('data_export_expire:%s', v_export.id), max_attempts => 25);
    end if;
  end loop;
  return v_org;
end
$$;
revoke all on function app_public.cancel_organization_deletion() from public;
grant execute on function app_public.cancel_organization_deletion() to :DATABASE_VISITOR;
comment on function app_public.cancel_organization_deletion() is 'Cancels a pending deletion of the current organization (owners only).';

-- The tables holding an organization's rows: every table of app_public and app_private with an
-- organization_id column, but the log (deleted last), the door itself, and the final exports the
-- purge keeps.
create or replace function app_private.organization_tables() returns setof regclass
language sql stable
set search_path = pg_catalog
as $$
  select c.oid::regclass
  from pg_class c
  where c.relnamespace in ('app_public'::regnamespace, 'app_private'::regnamespace) and c.relkind in ('r', 'p') and not c.relispartition
    and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
    and c.oid not in ('app_public.activity_events'::regclass, 'app_private.erasure_transactions'::regclass, 'app_private.kept_exports'::regclass)
  order by c.relnamespace, c.relname
$$;

-- The purge (job organization_purge), as the worker inside the organization. Does nothing unless a
-- deletion is due (cancelled, or not yet: returns null). Returns the rows deleted per table.
create or replace function app_private.purge_organization() returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_table regclass;
  v_counts jsonb := '{}';
  v_n bigint;
  v_left text;
begin
  select o.* into v_org from app_public.organizations o where o.id = app_private.require_worker_in_organization() for update;
  if not found or v_org.deletion_due_at is null or v_org.deletion_due_at > now() then
    return null;
  end if;
  insert into app_private.erasure_transactions (transaction_id, organization_id, erasure_id, scope)
  values (pg_current_xact_id()::text::bigint, v_org.id, v_org.id, 'organization');
  perform set_config('app.erasure', v_org.id::text, true);

  -- Its final export stays, for its owner, until it expires: deleting its row below then queues
  -- the deletion of its zip for that time (app_private.tg_data_exports__delete_object).
  insert into app_private.kept_exports (organization_id, export_id, user_id, storage_key, byte_size, ready_at, expires_at)
  select e.organization_id, e.id, e.requested_by, e.storage_key, e.byte_size, e.ready_at, e.expires_at
  from app_public.data_exports e
  where e.organization_id = v_org.id and e.final and e.status = 'ready' and e.expires_at > now() and e.requested_by is not null
  on conflict on constraint kept_exports_pkey do nothing;

  -- Its jobs go first, taken by a worker or not (one a worker already holds finds nothing left
  -- when it runs, and its completion or failure then changes no row; an email is not sent:
  -- app_private.claim_email refuses an organization that is gone); deleting its files and exports
  -- queues the deletion of their objects afterwards.
  delete from graphile_worker._private_jobs j where j.payload ->> 'organization_id' = v_org.id::text;
  get diagnostics v_n = row_count;
  v_counts := jsonb_build_object('jobs', v_n);

  -- Children first: each pass deletes the rows nothing left still references (NO ACTION or
  -- RESTRICT keys), until a pass deletes nothing (app_private.delete_in_passes).
  v_counts := v_counts || app_private.delete_in_passes(array(select app_private.organization_tables()), 't.organization_id = $1', v_org.id, null, false, true);
  for v_table in select app_private.organization_tables() loop
    execute format('select %L from %s t where t.organization_id = $1 limit 1', v_table::text, v_table) into v_left using v_org.id;
    if v_left is not null then
      raise exception 'purge_organization: rows of % are left that nothing deletes (a reference cycle?)', v_left;
    end if;
  end loop;

  delete from app_public.activity_events e where e.organization_id = v_org.id;
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('app_public.activity_events', v_n);

  delete from app_public.organizations o where o.id = v_org.id;
  delete from app_private.erasure_transactions t where t.transaction_id = pg_current_xact_id()::text::bigint;
  perform set_config('app.erasure', '', true);
  insert into app_private.deleted_organizations (id, requested_by, requested_at, rows_deleted)
  values (v_org.id, v_org.deletion_requested_by, v_org.deletion_requested_at, v_counts);
  return v_counts;
end
$$;
revoke all on function app_private.purge_organization() from public;
grant execute on function app_private.purge_organization() to :DATABASE_WORKER;
comment on function app_private.purge_organization() is 'Deletes the current organization and every row it owns, its log included, once its deletion is due (job organization_purge). Returns the rows deleted per table; null when no deletion is due.';

------------------------------------------------------------------------------------------------
-- The final exports kept after the purge

-- What myFinalExports shows (DataExport.downloadUrl's twin: src/http/exports.ts signs the link).
do $$
begin
  create type app_public.final_export as (
    export_id uuid,
    organization_id uuid,
    byte_size bigint,
    ready_at timestamptz,
    expires_at timestamptz,
    storage_key text
  );
exception when duplicate_object then null;
end
$$;
comment on type app_public.final_export is 'The final export of an organization you deleted, kept after its deletion until expiresAt.';

create or replace function app_public.my_final_exports() returns setof app_public.final_export
language sql stable security definer
set search_path = pg_catalog
as $$
  select k.export_id, k.organization_id, k.byte_size, k.ready_at, k.expires_at, k.storage_key
  from app_private.kept_exports k
  where k.user_id = app_public.current_user_id() and k.expires_at > now()
  order by k.ready_at desc
$$;
comment on function app_public.my_final_exports() is 'The final exports of organizations you deleted, downloadable (downloadUrl) until they expire, 30 days after the deletion.';

-- data_export_delete_object asks before it deletes an export's zip: false while the purge keeps it
-- (not yet expired: a job run early deletes nothing); otherwise the kept row, if any, goes and
-- the zip may. Only the worker.
drop function if exists app_private.forget_kept_export(uuid, uuid);
create or replace function app_private.release_kept_export(organization_id uuid, export_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker deletes exports.');
  end if;
  if exists (select from app_private.kept_exports k
             where k.organization_id = release_kept_export.organization_id and k.export_id = release_kept_export.export_id and k.expires_at > now()) then
    return false;
  end if;
  delete from app_private.kept_exports k where k.organization_id = release_kept_export.organization_id and k.export_id = release_kept_export.export_id;
  return true;
end
$$;

revoke all on function app_private.final_export_keep(), app_public.my_final_exports(), app_private.release_kept_export(uuid, uuid) from public;
grant execute on function app_public.my_final_exports() to :DATABASE_VISITOR;
grant execute on function app_private.release_kept_export(uuid, uuid) to :DATABASE_WORKER;
grant execute on function app_private.final_export_keep() to :DATABASE_WORKER;
--! EndIncluded functions/organization_deletion.sql
--! Included functions/time_travel.sql
-- Time travel over the activity log: every version of a record, the record as it was at a moment,
-- and what changed in the organization between two moments. Each reads app_public.activity_events
-- as the caller (SECURITY INVOKER), so its policy decides: a member reads the history of exactly
-- the tables whose rows they may read (sql/functions/activity.sql), in their organization.
--
-- The log keeps whole rows (new_values after the change, old_values before it; secrets and
-- `omit` columns left out, `mask` columns as "[masked]": sql/functions/personal_data.sql), so a
-- version is read, never rebuilt by replaying diffs, and `record_as_of` costs one index probe
-- whatever the number of versions.
--
-- Order: `seq` numbers events as they are written. Two transactions cannot change one row at the
-- same time (the second waits for the first's row lock and writes after it commits), so a
-- record's events in `seq` order are in commit order; within a transaction, statements and rows
-- keep the order they were written in. Events written before `seq` existed have negative
-- numbers, in their time order.
-- Idempotent; re-included by later migrations.

-- The columns they read (seq, changed_columns, parent_table, parent_id) and their indexes are
-- made with the partitioned log in sql/functions/activity_partitions.sql.

------------------------------------------------------------------------------------------------
-- What a timeline shows of an event

-- Each changed column with its value before and after: {"status": {"old": "draft", "new": "sent"}}.
-- Updates name their changed columns (masked ones read "[masked]" on both sides); an insert shows
-- every value it set, a delete every value it removed.
create or replace function app_public.activity_events_changes(e app_public.activity_events) returns jsonb
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(jsonb_object_agg(c.col, jsonb_build_object('old', e.old_values -> c.col, 'new', e.new_values -> c.col) order by c.col), '{}')
  from (
    select unnest(e.changed_columns) as col
    where e.changed_columns is not null
    union all
    -- events without changed_columns: inserts, deletes, and updates written before the column
    select k.key
    from jsonb_each(coalesce(e.new_values, e.old_values)) as k
    where e.changed_columns is null and k.key <> 'updated_at'
      and k.value is distinct from (case when e.old_values is null or e.new_values is null then 'null'::jsonb else e.old_values -> k.key end)
  ) as c
$$;
revoke all on function app_public.activity_events_changes(app_public.activity_events) from public;
grant execute on function app_public.activity_events_changes(app_public.activity_events) to :DATABASE_VISITOR;
comment on function app_public.activity_events_changes(app_public.activity_events) is 'The columns this event changed, each with its old and new value: {"status": {"old": "draft", "new": "sent"}}. Inserts list the values they set, deletes the values they removed. Masked columns read "[masked]".';

-- The name of the member who made the change, as the caller sees users (their colleagues): null
-- for the system (no actor) and for someone who is no longer a member.
create or replace function app_public.activity_events_actor_name(e app_public.activity_events) returns text
language sql stable
set search_path = pg_catalog
as $$
  select u.name from app_public.users u where u.id = e.actor_id
$$;
revoke all on function app_public.activity_events_actor_name(app_public.activity_events) from public;
grant execute on function app_public.activity_events_actor_name(app_public.activity_events) to :DATABASE_VISITOR;
comment on function app_public.activity_events_actor_name(app_public.activity_events) is 'The name of the member who made the change. Null when the system made it (actorId null) or the person is no longer a member.';

------------------------------------------------------------------------------------------------
-- The questions

-- A table whose history may be asked for: one with a read rule for its events. Anything else is
-- refused with INVALID_VALUE (a typo should not look like a record without history).
create or replace function app_private.assert_history_table(table_name text) returns boolean
language plpgsql stable security definer
set search_path = pg_catalog
as $$
begin
  if not exists (select from app_private.activity_read_rules r where r.table_name = assert_history_table.table_name) then
    perform app_private.fail('INVALID_VALUE', format('%s is not a table with a history (use the SQL name, e.g. invoices)', coalesce(table_name, 'null')));
  end if;
  return true;
end
$$;
revoke all on function app_private.assert_history_table(text) from public;
grant execute on function app_private.assert_history_table(text) to :DATABASE_VISITOR;

create or replace function app_public.record_history(table_name text, record_id uuid, with_parts boolean default true)
returns setof app_public.activity_events
language sql stable
-- (No SET clause: the planner inlines the function into the caller's query, so a page of it
-- reads only that page through the index. Every name is qualified.)
as $$
  select e.*
  from app_public.activity_events e
  where app_private.assert_history_table(record_history.table_name)
    and e.organization_id = (select app_public.current_org_id())
    and ((e.table_name = record_history.table_name and e.record_id = record_history.record_id)
      or (record_history.with_parts and e.parent_table = record_history.table_name and e.parent_id = record_history.record_id))
  order by e.seq
$$;
revoke all on function app_public.record_history(text, uuid, boolean) from public;
grant execute on function app_public.record_history(text, uuid, boolean) to :DATABASE_VISITOR;
comment on function app_public.record_history(text, uuid, boolean) is E'Every version of a record, oldest first in commit order: who changed what (changedColumns, changes), when. `tableName` is the SQL table name (invoices, tasks, ...). With `withParts` (the default) the events of its parts come too: an invoice''s line items and payments, a project''s tasks. Only tables you may read have a history for you.';

create or replace function app_public.record_as_of(table_name text, record_id uuid, at timestamptz) returns jsonb
language sql stable
set search_path = pg_catalog
as $$
  select case when e.action = 'delete' then null else e.new_values end
  from app_public.activity_events e
  where app_private.assert_history_table(record_as_of.table_name)
    and e.organization_id = (select app_public.current_org_id())
    and e.table_name = record_as_of.table_name and e.record_id = record_as_of.record_id
    and e.occurred_at <= record_as_of.at
  order by e.seq desc
  limit 1
$$;
revoke all on function app_public.record_as_of(text, uuid, timestamptz) from public;
grant execute on function app_public.record_as_of(text, uuid, timestamptz) to :DATABASE_VISITOR;
comment on function app_public.record_as_of(text, uuid, timestamptz) is E'The record as it was at `at` (its columns as JSON, as the activity log keeps them: secrets left out, masked columns "[masked]"), or null if it did not exist then (not yet created, or deleted for good). A soft-deleted record comes with its deletedAt. Times are those of the changes'' transactions.';

create or replace function app_public.activity_between(since timestamptz, until timestamptz)
returns setof app_public.activity_events
language sql stable
-- (No SET clause: the planner inlines the function into the caller's query, so a page of it
-- reads only that page through the index. Every name is qualified.)
as $$
  select e.*
  from app_public.activity_events e
  where e.organization_id = (select app_public.current_org_id())
    and e.occurred_at >= activity_between.since and e.occurred_at < activity_between.until
  order by e.occurred_at, e.seq
$$;
revoke all on function app_public.activity_between(timestamptz, timestamptz) from public;
grant execute on function app_public.activity_between(timestamptz, timestamptz) to :DATABASE_VISITOR;
comment on function app_public.activity_between(timestamptz, timestamptz) is E'What changed in the organization from `since` (inclusive) to `until` (exclusive), oldest first: the events of every table you may read.';
--! EndIncluded functions/time_travel.sql
