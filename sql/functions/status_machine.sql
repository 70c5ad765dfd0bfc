-- Status machines: which status changes a record may make, as rows a DBA can read and change.
--
--   select from_status, to_status, stamp_column from app_private.status_transitions
--   where table_name = 'invoices' order by 1, 2;
--
-- `from_status = '*new*'` lists the statuses a row may be created in. `stamp_column`, when set,
-- is stamped with now() when the row enters `to_status` (sent_at, signed_at, ...).
-- app_private.attach_status_machine(table) adds the trigger that enforces them; anything else is
-- refused with INVALID_TRANSITION.

create table if not exists app_private.status_transitions (
  table_name text not null,
  from_status text not null,
  to_status text not null,
  stamp_column text,
  primary key (table_name, from_status, to_status)
);
alter table app_private.status_transitions enable row level security;
alter table app_private.status_transitions force row level security;
comment on table app_private.status_transitions is 'Allowed status changes per table (from_status *new*: allowed initial statuses), and the timestamp column each change stamps.';

-- BEFORE UPDATE OF <status> per row: the change must be allowed; stamps its timestamp.
-- AFTER INSERT per row: the row must start in an allowed status (after row-level security, so a
-- row the caller may not insert at all is refused by RLS first).
-- TG_ARGV[0]: the status column. SECURITY DEFINER to read the transition table, which nobody
-- else may.
create or replace function app_private.tg__status_transition() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_column text := coalesce(tg_argv[0], 'status');
  v_from text := case when tg_op = 'INSERT' then '*new*' else to_jsonb(old) ->> v_column end;
  v_to text := to_jsonb(new) ->> v_column;
  v_stamp text;
begin
  if tg_op = 'UPDATE' and v_from is not distinct from v_to then
    return new;
  end if;
  select t.stamp_column into v_stamp
  from app_private.status_transitions t
  where t.table_name = tg_table_name and t.from_status = v_from and t.to_status = v_to;
  if not found then
    perform app_private.fail('INVALID_TRANSITION', case
      when tg_op = 'INSERT' then format('A new %s cannot start as %s.', app_private.singular_label(tg_table_name), v_to)
      else format('A %s cannot go from %s to %s.', app_private.singular_label(tg_table_name), v_from, v_to)
    end);
  end if;
  if tg_op = 'INSERT' then
    return null;
  end if;
  if v_stamp is not null then
    new := jsonb_populate_record(new, jsonb_build_object(v_stamp, now()));
  end if;
  return new;
end
$$;

-- "client_companies" -> "client company", for messages.
create or replace function app_private.singular_label(table_name text) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select replace(regexp_replace(regexp_replace(table_name, 'ies$', 'y'), '([^s])s$', '\1'), '_', ' ')
$$;

create or replace procedure app_private.attach_status_machine(tbl regclass, status_column text default 'status')
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
begin
  if not exists (select from app_private.status_transitions where table_name = v_rel) then
    raise exception 'no status transitions defined for %', v_rel;
  end if;
  execute format('drop trigger if exists %I on %s', format('tg_%s__status_transition', v_rel), tbl);
  execute format('create trigger %I before update of %I on %s for each row execute function app_private.tg__status_transition(%L)',
    format('tg_%s__status_transition', v_rel), status_column, tbl, status_column);
  execute format('drop trigger if exists %I on %s', format('tg_%s__status_initial', v_rel), tbl);
  execute format('create trigger %I after insert on %s for each row execute function app_private.tg__status_transition(%L)',
    format('tg_%s__status_initial', v_rel), tbl, status_column);
end
$$;

-- Records that freeze once they leave their editable statuses (a sent invoice, a signed
-- contract, an approved bill): app_private.attach_edit_lock(table, array['draft']) adds a BEFORE
-- UPDATE trigger refusing, with NOT_EDITABLE, any change to a column the visitor may update
-- while the row's status is not one of `editable_statuses`. The columns are those granted to
-- the visitor when it is attached (so call it after make_tenant_table), plus `also_locked`
-- (e.g. deleted_at: a sent invoice cannot be deleted). Changes the lifecycle functions and
-- triggers make (status, totals, stamps) are not the visitor's columns and pass.
create or replace function app_private.tg__edit_lock() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_status text := to_jsonb(old) ->> tg_argv[0];
  v_editable text[] := string_to_array(tg_argv[1], ',');
  v_locked text[] := string_to_array(tg_argv[2], ',');
  v_old jsonb := to_jsonb(old);
  v_new jsonb := to_jsonb(new);
  v_column text;
begin
  if v_status = any (v_editable) or app_private.erasing(new.organization_id) then
    return new; -- (an erasure redacts text of finished records too: sql/functions/erasure.sql)
  end if;
  foreach v_column in array v_locked loop
    if v_old -> v_column is distinct from v_new -> v_column then
      perform app_private.fail('NOT_EDITABLE', format('A %s that is %s can no longer be changed (%s).',
        app_private.singular_label(tg_table_name), v_status, v_column));
    end if;
  end loop;
  return new;
end
$$;

create or replace procedure app_private.attach_edit_lock(tbl regclass, editable_statuses text[], status_column text default 'status', also_locked text[] default '{}')
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
  v_locked text[];
begin
  select array_agg(attname::text order by attnum) into v_locked
  from pg_attribute
  where attrelid = tbl and attnum > 0 and not attisdropped
    and (has_column_privilege(':DATABASE_VISITOR', tbl, attname, 'UPDATE') or attname = any (also_locked));
  execute format('drop trigger if exists %I on %s', format('tg_%s__edit_lock', v_rel), tbl);
  execute format('create trigger %I before update on %s for each row execute function app_private.tg__edit_lock(%L, %L, %L)',
    format('tg_%s__edit_lock', v_rel), tbl, status_column, array_to_string(editable_statuses, ','), array_to_string(v_locked, ','));
end
$$;
