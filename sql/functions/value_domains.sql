-- Values the data model accepts, said once: a domain per kind of value, applied to every column
-- of that kind, and found by the catalog when a column bypasses them (sql/checks/
-- value_columns_use_domains.sql, email_columns_normalized.sql).
--
--   app_public.money_amount       numeric(14,2): an amount of money (amounts, totals, prices,
--                                 balances, rates per hour, budgets, values). Finite, below
--                                 10^12 in magnitude (12 digits before the point, cents after:
--                                 what every money column held before), never NaN.
--   app_public.quantity           numeric(12,2): a number of units or hours on a line. Finite,
--                                 below 10^10, never NaN (whether it may be 0 or negative is the
--                                 column's own check).
--   app_public.percentage         numeric(5,2): a rate in percent (tax rates), 0 to 100.
--   app_public.business_date      date: 1900-01-01 to 2999-12-31 (no 'infinity', no year 1 due
--                                 date, no year 20000).
--   app_public.business_timestamp timestamptz: the same years, finite. For points in time a
--                                 caller gives; the timestamps Atrium sets itself from now()
--                                 (created_at, sent_at, …) stay timestamptz (the catalog check
--                                 lists them and proves the visitor cannot write them).
--   app_public.email_address      text: looks like name@domain.tld once trimmed, at most 320
--                                 characters. Stored lower-cased and trimmed: a BEFORE trigger
--                                 (attach_email_normalizer, below) normalizes every column of
--                                 this type. The domain cannot do it itself: its CHECK runs
--                                 when the value is cast, before any trigger, so it only refuses
--                                 what no normalizing could fix.
--
-- PostgreSQL refuses a value outside a domain with SQLSTATE 23514 naming the domain and the
-- constraint; app_private.domain_rules (sql/errors.sql) turns each constraint into the catalogued
-- code and a message naming the rule (src/http/errors.ts). ±Infinity cannot even be held by
-- numeric(p,s): PostgreSQL answers 22003, mapped by app_private.error_sqlstates.
--
-- A migration puts existing columns into a domain with one call per table and domain:
--   call app_private.set_column_domain('app_public.invoices', 'app_public.money_amount', 'subtotal', 'amount_paid');
-- New tables simply declare their columns with these types (and make_tenant_table attaches the
-- email normalizer). Idempotent; re-included by later migrations.

do $$
begin
  if to_regtype('app_public.money_amount') is null then
    create domain app_public.money_amount as numeric(14,2);
  end if;
  if to_regtype('app_public.quantity') is null then
    create domain app_public.quantity as numeric(12,2);
  end if;
  if to_regtype('app_public.percentage') is null then
    create domain app_public.percentage as numeric(5,2);
  end if;
  if to_regtype('app_public.business_date') is null then
    create domain app_public.business_date as date;
  end if;
  if to_regtype('app_public.business_timestamp') is null then
    create domain app_public.business_timestamp as timestamptz;
  end if;
  if to_regtype('app_public.email_address') is null then
    create domain app_public.email_address as text;
  end if;
end
$$;

-- Each rule is dropped and added again, so a change here applies on the next run. (NaN equals
-- NaN in PostgreSQL and sorts above every number, so `<> 'NaN'` and `abs(value) < …` both
-- refuse it; a NULL passes every domain rule: whether a column may be empty is its own affair.)
alter domain app_public.money_amount drop constraint if exists money_amount_finite;
alter domain app_public.money_amount add constraint money_amount_finite
  check (value <> 'NaN'::numeric and abs(value) < 1e12);
comment on domain app_public.money_amount is 'An amount of money: a finite number below 1,000,000,000,000 in magnitude, with cents (numeric(14,2)); never NaN or infinite.';

alter domain app_public.quantity drop constraint if exists quantity_finite;
alter domain app_public.quantity add constraint quantity_finite
  check (value <> 'NaN'::numeric and abs(value) < 1e10);
comment on domain app_public.quantity is 'A quantity (units, hours): a finite number below 10,000,000,000 in magnitude, with two decimals (numeric(12,2)); never NaN or infinite.';

alter domain app_public.percentage drop constraint if exists percentage_range;
alter domain app_public.percentage add constraint percentage_range
  check (value <> 'NaN'::numeric and value between 0 and 100);
comment on domain app_public.percentage is 'A percentage from 0 to 100, with two decimals (numeric(5,2)).';

alter domain app_public.business_date drop constraint if exists business_date_range;
alter domain app_public.business_date add constraint business_date_range
  check (value between '1900-01-01'::date and '2999-12-31'::date);
comment on domain app_public.business_date is 'A calendar date from 1900-01-01 to 2999-12-31 (no infinity).';

alter domain app_public.business_timestamp drop constraint if exists business_timestamp_range;
alter domain app_public.business_timestamp add constraint business_timestamp_range
  check (value >= '1900-01-01 00:00:00+00'::timestamptz and value < '3000-01-01 00:00:00+00'::timestamptz);
comment on domain app_public.business_timestamp is 'A point in time from 1900 to 2999 (no infinity).';

alter domain app_public.email_address drop constraint if exists email_address_format;
alter domain app_public.email_address add constraint email_address_format
  check (length(value) <= 320 and btrim(value) ~ '^[^@\s[:cntrl:]]+@[^@\s[:cntrl:]]+\.[^@\s[:cntrl:]]+$');
comment on domain app_public.email_address is 'An email address: name@domain.tld, at most 320 characters; stored lower-cased and trimmed (app_private.tg__normalize_emails).';

-- BEFORE INSERT OR UPDATE, per row: every column named in TG_ARGV (the table's email_address
-- columns) is stored lower-cased and trimmed, as sign-in, invitations and password reset
-- compare them (lower(btrim(email))). Attached by attach_email_normalizer, never by hand.
create or replace function app_private.tg__normalize_emails() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_row jsonb := to_jsonb(new);
  v_patch jsonb := '{}';
  v_column text;
begin
  foreach v_column in array tg_argv loop
    if v_row ->> v_column is distinct from lower(btrim(v_row ->> v_column)) then
      v_patch := v_patch || jsonb_build_object(v_column, lower(btrim(v_row ->> v_column)));
    end if;
  end loop;
  if v_patch <> '{}' then
    new := jsonb_populate_record(new, v_patch);
  end if;
  return new;
end
$$;

-- Attaches tg_<table>__normalize_emails for the table's email_address columns (or removes it
-- when it has none). Called by make_tenant_table and set_column_domain; idempotent.
create or replace procedure app_private.attach_email_normalizer(tbl regclass)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_name text := format('tg_%s__normalize_emails', (select relname from pg_class where oid = tbl));
  v_columns text[];
begin
  select array_agg(a.attname::text order by a.attnum) into v_columns
  from pg_attribute a
  where a.attrelid = tbl and a.attnum > 0 and not a.attisdropped and a.atttypid = 'app_public.email_address'::regtype;
  execute format('drop trigger if exists %I on %s', v_name, tbl);
  if v_columns is not null then
    execute format('create trigger %I before insert or update of %s on %s for each row execute function app_private.tg__normalize_emails(%s)',
      v_name,
      (select string_agg(quote_ident(c), ', ') from unnest(v_columns) as c),
      tbl,
      (select string_agg(quote_literal(c), ', ') from unnest(v_columns) as c));
  end if;
end
$$;

-- Puts `columns` of `tbl` into `domain`. A column that already has it is left alone, so the call
-- is idempotent. Generated columns computed from these columns (a total from a subtotal)
-- cannot stay while their inputs change type: they are dropped and added again with the same
-- expression, comment and NOT NULL (and with `domain` if they are among `columns`); so are
-- triggers that name the columns (`before update of next_run_on`). Existing
-- values the domain refuses stop the migration with a message naming the column; for email
-- columns the existing values are then normalized, and a clash under a unique index (two
-- addresses that differ only in case or spaces) stops it too, naming the index.
create or replace procedure app_private.set_column_domain(tbl regclass, domain regtype, variadic columns text[])
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_missing text[];
  v_generated jsonb := '[]';
  v_column jsonb;
  v_alter text;
  v_constraint text;
  v_triggers text[];
  v_trigger_names text[];
  v_trigger text;
begin
  if not exists (select from pg_type t where t.oid = domain and t.typtype = 'd') then
    raise exception '% is not a domain', domain;
  end if;
  select array_agg(c) into v_missing
  from unnest(columns) as c
  where not exists (select from pg_attribute a where a.attrelid = tbl and a.attname = c and a.attnum > 0 and not a.attisdropped);
  if v_missing is not null then
    raise exception 'columns % are not all columns of %', columns, tbl;
  end if;
  if not exists (
    select from pg_attribute a
    where a.attrelid = tbl and a.attname = any (columns) and not a.attisdropped and a.atttypid <> domain
  ) then
    call app_private.attach_email_normalizer(tbl);
    return;
  end if;

  -- Generated columns among `columns` or computed from them: remember, then drop.
  select coalesce(jsonb_agg(jsonb_build_object(
           'name', a.attname,
           'expression', pg_get_expr(d.adbin, d.adrelid),
           'type', case when a.attname = any (columns) then format_type(domain, null) else format_type(a.atttypid, a.atttypmod) end,
           'not_null', a.attnotnull,
           'comment', col_description(tbl, a.attnum)) order by a.attnum), '[]')
  into v_generated
  from pg_attribute a
  join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
  where a.attrelid = tbl and a.attgenerated = 's' and not a.attisdropped
    and (a.attname = any (columns) or exists (
      select from pg_depend dep
      join pg_attribute src on src.attrelid = dep.refobjid and src.attnum = dep.refobjsubid
      where dep.classid = 'pg_attrdef'::regclass and dep.objid = d.oid and dep.refobjid = tbl and src.attname = any (columns)));
  -- Triggers that name these columns (BEFORE UPDATE OF next_run_on, WHEN clauses) block a type
  -- change too: remember their definitions, drop them, create them again afterwards.
  select coalesce(array_agg(distinct pg_get_triggerdef(t.oid)), '{}'), coalesce(array_agg(distinct t.tgname::text), '{}')
  into v_triggers, v_trigger_names
  from pg_trigger t
  join pg_depend dep on dep.classid = 'pg_trigger'::regclass and dep.objid = t.oid and dep.refobjid = tbl and dep.refobjsubid > 0
  join pg_attribute src on src.attrelid = tbl and src.attnum = dep.refobjsubid
  where t.tgrelid = tbl and not t.tgisinternal
    and (src.attname = any (columns) or src.attname in (select g ->> 'name' from jsonb_array_elements(v_generated) as g));
  foreach v_trigger in array v_trigger_names loop
    execute format('drop trigger %I on %s', v_trigger, tbl);
  end loop;

  if jsonb_array_length(v_generated) > 0 then
    execute format('alter table %s %s', tbl,
      (select string_agg(format('drop column %I', g ->> 'name'), ', ') from jsonb_array_elements(v_generated) as g));
  end if;

  -- The columns themselves, in one statement (one pass over the table).
  select string_agg(format('alter column %I type %s using %I::%s', a.attname, format_type(domain, null), a.attname, format_type(domain, null)), ', ')
  into v_alter
  from pg_attribute a
  where a.attrelid = tbl and a.attname = any (columns) and not a.attisdropped and a.attgenerated = '' and a.atttypid <> domain;
  if v_alter is not null then
    begin
      execute format('alter table %s %s', tbl, v_alter);
    exception when check_violation or numeric_value_out_of_range or datetime_field_overflow then
      raise exception 'rows of % hold values that % refuses in % (%): correct them, then migrate again', tbl, domain, columns, sqlerrm
        using errcode = sqlstate;
    end;
  end if;

  if jsonb_array_length(v_generated) > 0 then
    execute format('alter table %s %s', tbl,
      (select string_agg(format('add column %I %s generated always as (%s) stored%s',
         g ->> 'name', g ->> 'type', g ->> 'expression', case when (g ->> 'not_null')::boolean then ' not null' else '' end), ', ')
       from jsonb_array_elements(v_generated) as g));
    for v_column in select * from jsonb_array_elements(v_generated) loop
      if v_column ->> 'comment' is not null then
        execute format('comment on column %s.%I is %L', tbl, v_column ->> 'name', v_column ->> 'comment');
      end if;
    end loop;
  end if;

  foreach v_trigger in array v_triggers loop
    execute v_trigger;
  end loop;

  call app_private.attach_email_normalizer(tbl);
  if domain = 'app_public.email_address'::regtype then
    -- Existing addresses: normalized by the trigger (a no-op update of what is not yet normal).
    begin
      execute format('update %s set %s where %s', tbl,
        (select string_agg(format('%I = %I', c, c), ', ') from unnest(columns) as c),
        (select string_agg(format('%I is distinct from lower(btrim(%I))', c, c), ' or ') from unnest(columns) as c));
    exception when unique_violation then
      get stacked diagnostics v_constraint = constraint_name;
      raise exception 'normalizing % of % makes two rows equal under %: merge them, then migrate again', columns, tbl, v_constraint
        using errcode = 'unique_violation';
    end;
  end if;
end
$$;

-- The stored values that break a rule of the kinds above, whatever their columns' types: every
-- app_public column that holds a number (NaN or ±Infinity), a date or point in time (infinite,
-- or outside the years 1900 to 2999) or an email address (not lower-cased and trimmed). The
-- domains make such rows impossible; this finds them if a column ever bypassed its domain
-- (sql/checks/stored_values_keep_rules.sql, and the input fuzz test after it has thrown
-- generated values at every mutation: tests/input-fuzz.test.ts).
create or replace function app_private.values_breaking_rules()
returns table (table_name text, column_name text, rule text, rows bigint)
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_column record;
  v_condition text;
begin
  for v_column in
    select c.oid::regclass as tbl, c.relname, a.attname, coalesce(nullif(t.typbasetype, 0), t.oid) as base, a.atttypid
    from pg_attribute a
    join pg_class c on c.oid = a.attrelid
    join pg_type t on t.oid = a.atttypid
    where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
    order by c.relname, a.attnum
  loop
    v_condition := case
      when v_column.base in ('numeric'::regtype, 'float4'::regtype, 'float8'::regtype) then
        format('%1$I = ''NaN'' or %1$I in (''Infinity'', ''-Infinity'')', v_column.attname)
      when v_column.base in ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype) then
        format('not isfinite(%1$I) or %1$I < ''1900-01-01'' or %1$I >= ''3000-01-01''', v_column.attname)
      when v_column.atttypid = 'app_public.email_address'::regtype or (v_column.base = 'text'::regtype and v_column.attname ~ 'email') then
        format('%1$I is distinct from lower(btrim(%1$I))', v_column.attname)
    end;
    continue when v_condition is null;
    table_name := v_column.relname;
    column_name := v_column.attname;
    rule := case
      when v_column.base in ('numeric'::regtype, 'float4'::regtype, 'float8'::regtype) then 'a finite number'
      when v_column.base in ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype) then 'a finite date or time in the years 1900 to 2999'
      else 'an email address lower-cased and trimmed'
    end;
    execute format('select count(*) from %s where %s', v_column.tbl, v_condition) into rows;
    if rows > 0 then
      return next;
    end if;
  end loop;
end
$$;
revoke all on function app_private.values_breaking_rules() from public;
comment on function app_private.values_breaking_rules() is 'Stored values that break a value rule (NaN or infinite numbers, dates outside 1900-2999, emails not normalized), per column.';
