--! Previous: sha1:b1df46e7f4f671247555e15d8186095155f93e53
--! Hash: sha1:e8eba9d4d7ba1f5843d9f2167234706e773417df
--! Message: The API edge: limits, errors, rate limits, secrets, input domains, permissions

-- The API edge (issue 11): statement timeouts answer QUERY_TIMEOUT; a row added without an
-- organization answers NO_ORGANIZATION (or UNAUTHENTICATED) instead of FORBIDDEN.
--! Included errors.sql
-- Error codes: the one list of errors a client can get, each with a stable code, the SQLSTATE
-- that carries it out of PostgreSQL, and the HTTP status the API answers with.
-- SQL raises them by name: `perform app_private.fail('LAST_OWNER', 'An organization must keep an owner');`
-- The API maps the SQLSTATE back to the code (src/http/errors.ts loads this table at start), and
-- docs/ERRORS.md lists the same rows (tests/docs.test.ts checks they agree).
-- Re-included by later migrations whenever a code is added; every statement is idempotent.

create table if not exists app_private.error_codes (
  code text primary key check (code ~ '^[A-Z][A-Z_]*$'),
  sqlstate text not null unique check (sqlstate ~ '^[0-9A-Z]{5}$'),
  http_status int not null check (http_status between 400 and 599),
  description text not null
);
alter table app_private.error_codes enable row level security;
alter table app_private.error_codes force row level security;
comment on table app_private.error_codes is 'Stable error codes: SQLSTATE carried by PostgreSQL, code and HTTP status returned by the API.';

insert into app_private.error_codes (code, sqlstate, http_status, description) values
  -- Raised by PostgreSQL itself
  ('FORBIDDEN', '42501', 403, 'The current user may not do this (permission denied or row-level security).'),
  ('ALREADY_EXISTS', '23505', 409, 'A record with these unique values already exists.'),
  ('INVALID_REFERENCE', '23503', 422, 'A referenced record does not exist in this organization, or is still referenced.'),
  ('CONSTRAINT_VIOLATION', '23514', 422, 'A value breaks a rule of the data model (check constraint).'),
  ('REQUIRED_VALUE', '23502', 422, 'A required value is missing.'),
  ('INVALID_INPUT', '22P02', 400, 'A value has the wrong format (e.g. not a UUID or number).'),
  ('INVALID_VALUE', '22023', 400, 'A value is outside what is allowed.'),
  ('VALUE_TOO_LONG', '22001', 400, 'A text value is longer than allowed.'),
  ('RETRY', '40001', 409, 'The transaction conflicted with another one; retry it.'),
  ('DEADLOCK', '40P01', 409, 'The transaction deadlocked with another one; retry it.'),
  -- Raised by Atrium's functions and triggers (class AT)
  ('UNAUTHENTICATED', 'AT401', 401, 'Sign in first: this needs a signed-in user.'),
  ('NO_ORGANIZATION', 'AT402', 403, 'Choose an organization first (switchOrganization): this needs one.'),
  ('NOT_PERMITTED', 'AT403', 403, 'Your role in this organization does not allow this.'),
  ('NOT_FOUND', 'AT404', 404, 'No such record in this organization (or it is not visible to you).'),
  ('INVALID_CREDENTIALS', 'AT410', 401, 'Email or password is wrong.'),
  ('INVALID_REFRESH_TOKEN', 'AT411', 401, 'The refresh token is unknown, expired, revoked or was already used; sign in again.'),
  ('EMAIL_TAKEN', 'AT412', 409, 'An account with this email already exists.'),
  ('WEAK_PASSWORD', 'AT413', 400, 'The password must be 8 to 72 characters long.'),
  ('INVALID_EMAIL', 'AT414', 400, 'The email address is not valid.'),
  ('TOO_MANY_ATTEMPTS', 'AT417', 429, 'Too many failed sign-ins for this account from your network address: wait before the next attempt (extensions.retryAfterSeconds).'),
  ('LAST_OWNER', 'AT420', 409, 'An organization must keep at least one owner.'),
  ('OWNER_REQUIRED', 'AT421', 403, 'Only an owner may grant, change or remove the owner role.'),
  ('INVITATION_INVALID', 'AT422', 404, 'The invitation is unknown, expired, revoked, already used, or for another email.'),
  ('ALREADY_MEMBER', 'AT423', 409, 'This user is already a member of the organization.'),
  ('NOT_RESTORABLE', 'AT430', 409, 'The record is not deleted, or its retention window has passed.'),
  ('IMMUTABLE', 'AT440', 403, 'This record cannot be changed or deleted.'),
  ('INVALID_TRANSITION', 'AT450', 409, 'The record''s status cannot change that way (see app_private.status_transitions).'),
  ('NOT_EDITABLE', 'AT451', 409, 'The record has left its editable status (e.g. a sent invoice, a signed contract) and can no longer be changed.'),
  ('HAS_LIVE_ENGAGEMENTS', 'AT452', 409, 'The client company still has active or on-hold engagements; complete or cancel them first.'),
  ('OVERPAYMENT', 'AT460', 422, 'The payment is larger than the invoice''s balance.'),
  ('NOT_PAYABLE', 'AT461', 409, 'The invoice does not take payments in its status (only sent, viewed or overdue invoices do).'),
  ('EMPTY_DOCUMENT', 'AT462', 422, 'A proposal or invoice needs at least one line and a total above zero before it is sent.'),
  ('EXPIRED', 'AT463', 409, 'The proposal''s validity date has passed.'),
  ('INVALID_EVENT_TYPE', 'AT470', 422, 'A webhook endpoint names an event type that does not exist (see webhookEventTypes).'),
  ('NOT_RETRYABLE', 'AT471', 409, 'Only failed or cancelled deliveries of an enabled endpoint can be sent again.'),
  ('UNKNOWN_TASK', 'AT472', 422, 'The task is not one that other services may queue (see app_private.producer_tasks).'),
  ('INTERNAL', 'AT500', 500, 'Unexpected error.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- Raise a catalogued error. Unknown codes are a bug and raise INTERNAL with the code in the message.
create or replace function app_private.fail(code text, message text) returns void
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_sqlstate text;
begin
  select e.sqlstate into v_sqlstate from app_private.error_codes e where e.code = fail.code;
  if v_sqlstate is null then
    raise exception 'unknown error code %: %', code, message using errcode = 'AT500';
  end if;
  raise exception using message = message, errcode = v_sqlstate;
end
$$;
comment on function app_private.fail(text, text) is 'Raises the catalogued error `code` (app_private.error_codes) with a human message.';

-- Password reset (sql/functions/password_reset.sql).
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('RESET_TOKEN_INVALID', 'AT415', 400, 'The password-reset token is unknown, was replaced by a newer one, or was already used; ask for a new one.'),
  ('RESET_TOKEN_EXPIRED', 'AT416', 400, 'The password-reset token has expired; ask for a new one.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- The API edge: a request's statements run at most STATEMENT_TIMEOUT_MS (set per transaction
-- by the API, src/http/auth.ts); PostgreSQL cancels a longer one with 57014.
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('QUERY_TIMEOUT', '57014', 503, 'The request ran longer than the server allows (STATEMENT_TIMEOUT_MS) and was stopped; ask for less, or retry later.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- Permissions that cannot be used to gain more (sql/functions/permissions.sql, sql/functions/copies.sql).
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('PERMISSION_NOT_HELD', 'AT541', 403, 'This would pass on permissions (or data) you do not hold yourself: through roles and webhooks you may grant only what you hold.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- Input values (sql/functions/value_domains.sql): errors PostgreSQL raises itself about a value
-- it cannot take answer a catalogued code too, never INTERNAL.
-- More SQLSTATEs for a code: the catalogue above holds one SQLSTATE per code; these map further
-- ones onto existing codes, each with the message the API answers (PostgreSQL's own would quote
-- SQL). src/http/errors.ts loads both; docs/ERRORS.md lists them (tests/docs.test.ts).
create table if not exists app_private.error_sqlstates (
  sqlstate text primary key check (sqlstate ~ '^[0-9A-Z]{5}$'),
  code text not null references app_private.error_codes (code),
  message text not null
);
create index if not exists error_sqlstates_code_idx on app_private.error_sqlstates (code);
alter table app_private.error_sqlstates enable row level security;
alter table app_private.error_sqlstates force row level security;
comment on table app_private.error_sqlstates is 'SQLSTATEs PostgreSQL raises about values it cannot take, mapped onto catalogued codes (app_private.error_codes), with the message the API answers.';

insert into app_private.error_sqlstates (sqlstate, code, message) values
  ('22003', 'INVALID_VALUE', 'A number is too large for its field (or not finite).'),
  ('22008', 'INVALID_VALUE', 'A date or time does not exist (e.g. 2024-02-30) or is out of range.'),
  ('22007', 'INVALID_INPUT', 'A date or time has the wrong format (use YYYY-MM-DD, or ISO 8601 for a point in time).'),
  ('22021', 'INVALID_VALUE', 'A text contains a character that cannot be stored (the NUL character, \u0000).'),
  ('22P05', 'INVALID_VALUE', 'A text contains a character that cannot be stored (the NUL character, \u0000).')
on conflict (sqlstate) do update set code = excluded.code, message = excluded.message;

-- Domain rules: a value outside a domain (app_public.money_amount, …) is refused by PostgreSQL
-- with SQLSTATE 23514 naming the domain and the constraint; the API answers this code and
-- message instead of CONSTRAINT_VIOLATION. Every CHECK of an app_public domain has a row here
-- (sql/checks/domain_rules_catalogued.sql).
create table if not exists app_private.domain_rules (
  domain_name text not null check (domain_name ~ '^[a-z_]+\.[a-z_]+$'),
  constraint_name text not null,
  code text not null references app_private.error_codes (code),
  message text not null,
  primary key (domain_name, constraint_name)
);
create index if not exists domain_rules_code_idx on app_private.domain_rules (code);
alter table app_private.domain_rules enable row level security;
alter table app_private.domain_rules force row level security;
comment on table app_private.domain_rules is 'The code and message the API answers when a value breaks a rule (CHECK) of an app_public domain.';

insert into app_private.domain_rules (domain_name, constraint_name, code, message) values
  ('app_public.money_amount', 'money_amount_finite', 'INVALID_VALUE', 'An amount of money must be a finite number below 1,000,000,000,000 (with at most two decimals).'),
  ('app_public.quantity', 'quantity_finite', 'INVALID_VALUE', 'A quantity must be a finite number below 10,000,000,000 (with at most two decimals).'),
  ('app_public.percentage', 'percentage_range', 'INVALID_VALUE', 'A percentage must be a number from 0 to 100.'),
  ('app_public.business_date', 'business_date_range', 'INVALID_VALUE', 'A date must be between 1900-01-01 and 2999-12-31.'),
  ('app_public.business_timestamp', 'business_timestamp_range', 'INVALID_VALUE', 'A point in time must be between the years 1900 and 2999.'),
  ('app_public.email_address', 'email_address_format', 'INVALID_EMAIL', 'An email address must look like name@example.com (at most 320 characters, no spaces inside).')
on conflict (domain_name, constraint_name) do update set code = excluded.code, message = excluded.message;

-- Sign-up by email (sql/functions/registration.sql): confirming a registration.
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('REGISTRATION_TOKEN_INVALID', 'AT491', 400, 'The confirmation token is unknown, was replaced by a newer one, or was already used; sign up again.'),
  ('REGISTRATION_TOKEN_EXPIRED', 'AT492', 400, 'The confirmation token has expired; sign up again.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;
--! EndIncluded errors.sql
--! Included functions/value_domains.sql
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
--! EndIncluded functions/value_domains.sql
--! Included functions/require_organization.sql
-- "Choose an organization first": a row added to a tenant table without one is refused with
-- NO_ORGANIZATION (UNAUTHENTICATED when nobody is signed in), not with row-level security's
-- generic FORBIDDEN. A tenant table's organization_id defaults to the request's organization
-- (app_public.current_org_id(), null when none is chosen or the user is not a member), so the
-- row reaches this BEFORE INSERT trigger with a null organization_id exactly then (a
-- client-portal user's row is left to row-level security, which refuses it); the trigger's
-- WHEN clause keeps every other insert free of it. Row-level security still decides everything
-- else (BEFORE triggers run before its checks). Attached to every tenant table by
-- app_private.assert_tenant_shape (sql/functions/tenant_tables.sql); a catalog check
-- (sql/checks/tenant_tables_require_organization.sql) finds tables without it.

-- SECURITY DEFINER: it asks the identity helpers the visitor may not call directly; it only raises.
create or replace function app_private.tg__require_organization() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if app_public.current_user_id() is null and not app_private.is_worker_session() then
    perform app_private.fail('UNAUTHENTICATED', format('Sign in to add %s.', replace(tg_table_name, '_', ' ')));
  end if;
  if app_public.current_portal_org_id() is not null then
    -- A client-portal user is in an organization, not as a member: row-level security decides
    -- (portal users add only the rows their table's portal_insert rule allows).
    return new;
  end if;
  perform app_private.fail('NO_ORGANIZATION', format('Choose an organization first (switchOrganization) to add %s.', replace(tg_table_name, '_', ' ')));
  return null;
end
$$;
comment on function app_private.tg__require_organization() is 'BEFORE INSERT on tenant tables, for rows without an organization: UNAUTHENTICATED or NO_ORGANIZATION.';
revoke all on function app_private.tg__require_organization() from public;

create or replace procedure app_private.attach_require_organization(tbl regclass)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_name text := format('tg_%s__require_organization', (select relname from pg_class where oid = tbl));
begin
  execute format('drop trigger if exists %I on %s', v_name, tbl);
  execute format('create trigger %I before insert on %s for each row when (new.organization_id is null) execute function app_private.tg__require_organization()', v_name, tbl);
end
$$;
--! EndIncluded functions/require_organization.sql
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
create or replace procedure app_private.attach_audit(tbl regclass, org_column text default 'organization_id', secret_columns text[] default '{}')
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
  v_args text := (select string_agg(quote_literal(a), ', ') from unnest(array[org_column] || secret_columns) as a);
  v_op text;
begin
  if exists (
    select from unnest(secret_columns) as s(col)
    where not exists (select from pg_attribute where attrelid = tbl and attname = s.col and not attisdropped)
  ) then
    raise exception 'secret_columns % are not all columns of %', secret_columns, tbl;
  end if;
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
--! Included functions/email.sql
-- Transactional email: the outbox side in SQL. Writes that should send an email enqueue a
-- `send_email` job in their own transaction (src/worker/tasks/send_email.ts sends it):
--   invitation      app_public.invite_member                    (sql/functions/auth.sql)
--   password_reset  app_private.request_password_reset          (sql/functions/password_reset.sql)
--   proposal_sent   a proposal goes draft → sent                 (trigger below)
--   invoice_sent    an invoice goes draft → sent                 (trigger below)
-- A rolled-back write therefore never emails anyone, and a committed one always has its job.
--
-- A message's one-time secret (the token of an invitation, password-reset or sign-up link) never
-- travels in the job: the job carries ids, and the secret waits in app_private.email_secrets,
-- which only the worker reads (app_private.email_secret), inside the transaction that claims the
-- message. It is deleted when the message is recorded as sent, when its invitation, reset or
-- sign-up is replaced, revoked or used (app_private.cancel_email), and once it expires. So no
-- token sits in graphile-worker's job rows, reaches its log lines or a job's last_error.
--
-- Each message has an idempotency key, `message_key` (e.g. invitation:<invitation id>), used as
-- the job key (enqueuing it again while pending collapses into one job) and as the primary key of
-- app_private.email_messages, where the worker records each message: it claims the key before
-- sending and marks it sent afterwards, so a retried job never sends a message recorded as sent.
-- The one window left — the SMTP server accepted the message but the worker died before
-- recording it — sends it again on retry, with the same Message-ID (docs/DATA_FLOWS.md, "Email").
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- The send log. Only the worker writes it, through the two functions below; nobody reads it
-- through the API. Message bodies are not kept (they may hold tokens), only what identifies
-- them.

create table if not exists app_private.email_messages (
  message_key text primary key check (length(message_key) between 1 and 300),
  organization_id uuid references app_public.organizations,
  template text not null check (template ~ '^[a-z][a-z0-9_]*$'),
  recipient text not null check (length(recipient) <= 320),
  attempts integer not null default 1 check (attempts >= 1),
  first_attempt_at timestamptz not null default now(),
  last_attempt_at timestamptz not null default now(),
  sent_at timestamptz,
  message_id text,
  transport text check (transport in ('smtp', 'folder')),
  transport_detail text,
  check ((sent_at is null) = (message_id is null))
);
create index if not exists email_messages_organization_id_idx on app_private.email_messages (organization_id);
call app_private.force_rls('app_private.email_messages');
comment on table app_private.email_messages is 'Every email the worker has tried to send (task send_email), by idempotency key: attempts, and when and how it was sent. No bodies.';
comment on column app_private.email_messages.organization_id is 'The organization the email is about; null for account emails (password reset).';
comment on column app_private.email_messages.transport_detail is 'SMTP: the server''s final answer; folder: the .eml file written.';

-- The one-time secrets of messages waiting to be sent, by message key (see the top of this file).
-- Nobody is granted anything on it: the owner's SECURITY DEFINER functions below write and read
-- it, the worker through app_private.email_secret only.
create table if not exists app_private.email_secrets (
  message_key text primary key check (length(message_key) between 1 and 300),
  organization_id uuid references app_public.organizations on delete cascade,
  secrets jsonb not null check (jsonb_typeof(secrets) = 'object'),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null
);
create index if not exists email_secrets_organization_id_idx on app_private.email_secrets (organization_id);
create index if not exists email_secrets_expires_at_idx on app_private.email_secrets (expires_at);
call app_private.force_rls('app_private.email_secrets');
comment on table app_private.email_secrets is 'One-time secrets (link tokens) of emails not yet sent, by message key: read by the worker inside the send, deleted once sent, replaced, revoked or expired. Never in a job payload.';

-- Drops the secret and the pending job of a message that must not go out any more (its link was
-- replaced, revoked or used). A job a worker already holds finds no secret and sends nothing.
create or replace function app_private.cancel_email(message_key text) returns void
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  perform graphile_worker.remove_job('send_email:' || cancel_email.message_key);
  delete from app_private.email_secrets s where s.message_key = cancel_email.message_key;
end
$$;
comment on function app_private.cancel_email(text) is 'Cancels a queued email: removes its pending job and deletes its one-time secret.';

-- Enqueue one email, in the caller's transaction. Called only by Atrium's own SECURITY DEFINER
-- functions and triggers (granted to nobody). `data` fills the template's placeholders and goes
-- into the job; `secrets` (e.g. {"token": …}) fill the others and never do: they are kept in
-- app_private.email_secrets until `secrets_expire_at`, and the job only says it has some.
-- A key that looks like a secret in `data` is refused (a bug: it would sit in the job row).
drop function if exists app_private.enqueue_email(text, text, jsonb, text, uuid); -- before secrets
create or replace function app_private.enqueue_email(
  template text, recipient text, data jsonb, message_key text, organization_id uuid default null,
  secrets jsonb default null, secrets_expire_at timestamptz default null
) returns void
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  if exists (select from jsonb_object_keys(coalesce(enqueue_email.data, '{}')) k where k ~* '(token|password|secret)') then
    perform app_private.fail('INTERNAL', format('enqueue_email(%s): secrets go in `secrets`, never in `data` (it is stored in the job)', enqueue_email.template));
  end if;
  if enqueue_email.secrets is not null then
    if enqueue_email.secrets_expire_at is null then
      perform app_private.fail('INTERNAL', format('enqueue_email(%s): secrets need secrets_expire_at', enqueue_email.template));
    end if;
    -- Expired secrets of other messages go at the same time (their links no longer work).
    delete from app_private.email_secrets s where s.expires_at <= now();
    insert into app_private.email_secrets as s (message_key, organization_id, secrets, expires_at)
    values (enqueue_email.message_key, enqueue_email.organization_id, enqueue_email.secrets, enqueue_email.secrets_expire_at)
    on conflict on constraint email_secrets_pkey do update
      set organization_id = excluded.organization_id, secrets = excluded.secrets, created_at = now(), expires_at = excluded.expires_at;
  end if;
  perform graphile_worker.add_job(
    'send_email',
    json_strip_nulls(json_build_object(
      'organization_id', enqueue_email.organization_id,
      'template', enqueue_email.template,
      'to', enqueue_email.recipient,
      'data', enqueue_email.data,
      'message_key', enqueue_email.message_key,
      'has_secrets', case when enqueue_email.secrets is not null then true end
    )),
    job_key => 'send_email:' || enqueue_email.message_key,
    max_attempts => 12
  );
end
$$;
comment on function app_private.enqueue_email(text, text, jsonb, text, uuid, jsonb, timestamptz) is 'Enqueues the send_email job of one message in the current transaction (job key send_email:<message_key>); its one-time secrets wait in app_private.email_secrets, not in the job.';

-- The worker, before sending: records an attempt at `message_key` in the current organization
-- (app.org_id; none for account emails). Returns the attempt's number (1 the first time; more
-- means an earlier attempt did not record its outcome), or null when the message was already
-- sent (the job is a retry or a duplicate: send nothing). Only the worker's session may call it.
create or replace function app_private.claim_email(message_key text, template text, recipient text) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v app_private.email_messages;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker sends emails.');
  end if;
  insert into app_private.email_messages as m (message_key, organization_id, template, recipient)
  values (claim_email.message_key, v_org, claim_email.template, claim_email.recipient)
  on conflict on constraint email_messages_pkey do update
    set attempts = m.attempts + 1, last_attempt_at = now()
    where m.sent_at is null and m.organization_id is not distinct from v_org
  returning m.* into v;
  if v.message_key is null then
    -- Either sent already, or the key belongs to another organization (never reused across them).
    select m.* into v from app_private.email_messages m where m.message_key = claim_email.message_key;
    if v.organization_id is distinct from v_org then
      perform app_private.fail('NOT_PERMITTED', 'This email belongs to another organization.');
    end if;
    return null;
  end if;
  return v.attempts;
end
$$;
comment on function app_private.claim_email(text, text, text) is 'Worker only: records an attempt to send message_key; returns the attempt number, or null when it already went out.';

-- The worker, after the transport accepted the message.
create or replace function app_private.record_email_sent(message_key text, message_id text, transport text, transport_detail text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker sends emails.');
  end if;
  update app_private.email_messages m
  set sent_at = now(), message_id = record_email_sent.message_id, transport = record_email_sent.transport,
      transport_detail = left(record_email_sent.transport_detail, 1000)
  where m.message_key = record_email_sent.message_key
    and m.organization_id is not distinct from app_public.current_org_id()
    and m.sent_at is null;
  -- Sent: its one-time secret is needed no more.
  delete from app_private.email_secrets s
  where s.message_key = record_email_sent.message_key
    and s.organization_id is not distinct from app_public.current_org_id();
end
$$;
comment on function app_private.record_email_sent(text, text, text, text) is 'Worker only: marks message_key as sent (Message-ID, transport, SMTP answer or file) and deletes its one-time secret.';

-- The worker, inside the transaction that claims a message: its one-time secrets (a JSON object),
-- or null when there are none any more (sent, replaced, revoked or expired: send nothing). Only
-- the worker's session may call it, and only for a message of the current organization.
create or replace function app_private.email_secret(message_key text) returns jsonb
language plpgsql stable security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker reads the secrets of emails.');
  end if;
  return (
    select s.secrets from app_private.email_secrets s
    where s.message_key = email_secret.message_key
      and s.organization_id is not distinct from app_public.current_org_id()
      and s.expires_at > now()
  );
end
$$;
comment on function app_private.email_secret(text) is 'Worker only: the one-time secrets of a message waiting to be sent, or null when it must not go out any more.';

revoke all on function
  app_private.cancel_email(text),
  app_private.enqueue_email(text, text, jsonb, text, uuid, jsonb, timestamptz),
  app_private.claim_email(text, text, text),
  app_private.record_email_sent(text, text, text, text),
  app_private.email_secret(text)
from public;
grant execute on function
  app_private.claim_email(text, text, text),
  app_private.record_email_sent(text, text, text, text),
  app_private.email_secret(text)
to :DATABASE_WORKER;

-- An invitation that is revoked (deleted) or replaced by a new one (inviteMember again) takes its
-- email along while it is still waiting in the queue, and its token with it: nobody receives a
-- link that no longer works.
-- AFTER DELETE per row; SECURITY DEFINER because the queue is not the visitor's.
create or replace function app_private.tg_invitations__cancel_email() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if old.accepted_at is null then
    perform app_private.cancel_email(format('invitation:%s', old.id));
  end if;
  return null;
end
$$;

drop trigger if exists tg_invitations__cancel_email on app_public.invitations;
create trigger tg_invitations__cancel_email after delete on app_public.invitations
  for each row execute function app_private.tg_invitations__cancel_email();

------------------------------------------------------------------------------------------------
-- Proposals and invoices sent to the client: one email to each primary contact of the client
-- company who has an email address (contacts.is_primary; deleted contacts excluded). A client
-- without one gets no email — the document is still sent (visible in the client portal).

create or replace function app_private.format_money(amount numeric, currency text) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select to_char(amount, 'FM999G999G999G990D00') || ' ' || currency
$$;

create or replace function app_private.format_day(day date) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select to_char(day, 'FMMonth FMDD, YYYY')
$$;

-- The client company's primary contacts with an email address.
create or replace function app_private.email_contacts_of(organization_id uuid, client_company_id uuid)
returns table (contact_id uuid, email text, name text)
language sql stable
set search_path = pg_catalog
as $$
  select c.id, c.email, c.first_name
  from app_public.contacts c
  where c.organization_id = email_contacts_of.organization_id
    and c.client_company_id = email_contacts_of.client_company_id
    and c.is_primary and c.email is not null and c.deleted_at is null
  order by c.created_at, c.id
$$;

-- AFTER UPDATE OF status on proposals, when a draft becomes sent. SECURITY DEFINER: it reads the
-- client's contacts and the organization whatever the sender may read, and enqueues jobs; it only
-- touches rows of the proposal's own organization.
create or replace function app_private.tg_proposals__email_sent() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_client text;
begin
  select o.* into v_org from app_public.organizations o where o.id = new.organization_id;
  select cc.name into v_client from app_public.client_companies cc where cc.organization_id = new.organization_id and cc.id = new.client_company_id;
  perform app_private.enqueue_email(
    'proposal_sent',
    r.email,
    jsonb_build_object(
      'contact_name', r.name,
      'organization_name', v_org.name,
      'client_name', v_client,
      'proposal_id', new.id,
      'proposal_title', new.title,
      'total', app_private.format_money(new.total, v_org.currency),
      'validity', case when new.valid_until is null then '' else format('It is valid until %s.', app_private.format_day(new.valid_until)) end
    ),
    format('proposal_sent:%s:%s', new.id, r.contact_id),
    new.organization_id
  )
  from app_private.email_contacts_of(new.organization_id, new.client_company_id) r;
  return null;
end
$$;

drop trigger if exists tg_proposals__email_sent on app_public.proposals;
create trigger tg_proposals__email_sent after update of status on app_public.proposals
  for each row when (old.status = 'draft' and new.status = 'sent')
  execute function app_private.tg_proposals__email_sent();

-- AFTER UPDATE OF status on invoices, when a draft becomes sent (sendInvoice: numbered, dated).
create or replace function app_private.tg_invoices__email_sent() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_client text;
begin
  select o.* into v_org from app_public.organizations o where o.id = new.organization_id;
  select cc.name into v_client from app_public.client_companies cc where cc.organization_id = new.organization_id and cc.id = new.client_company_id;
  perform app_private.enqueue_email(
    'invoice_sent',
    r.email,
    jsonb_build_object(
      'contact_name', r.name,
      'organization_name', v_org.name,
      'client_name', v_client,
      'invoice_id', new.id,
      'invoice_number', new.number,
      'total', app_private.format_money(new.total, v_org.currency),
      'amount_due', app_private.format_money(new.balance, v_org.currency),
      'issued_on', app_private.format_day(new.issued_on),
      'due_on', app_private.format_day(new.due_on)
    ),
    format('invoice_sent:%s:%s', new.id, r.contact_id),
    new.organization_id
  )
  from app_private.email_contacts_of(new.organization_id, new.client_company_id) r;
  return null;
end
$$;

drop trigger if exists tg_invoices__email_sent on app_public.invoices;
create trigger tg_invoices__email_sent after update of status on app_public.invoices
  for each row when (old.status = 'draft' and new.status = 'sent')
  execute function app_private.tg_invoices__email_sent();

revoke all on function
  app_private.format_money(numeric, text),
  app_private.format_day(date),
  app_private.email_contacts_of(uuid, uuid),
  app_private.tg_proposals__email_sent(),
  app_private.tg_invoices__email_sent(),
  app_private.tg_invitations__cancel_email()
from public;
--! EndIncluded functions/email.sql
--! Included functions/activity.sql
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
--! EndIncluded functions/activity.sql
--! Included functions/permissions.sql
-- Permissions: "may the user do X here?" — one helper, app_public.permitted_org_id('invoices.write')
-- (the organization, if so), called by the policies of every business table;
-- app_public.has_permission('invoices.write') asks the same as a yes or no.
--
-- Permission keys are `<area>.<action>` (the catalogue is app_public.permissions, filled below):
-- read and write per area, plus a few special actions. What a member may do:
--   * owners and admins: everything;
--   * a member with one or more custom roles (app_public.roles, assigned in role_assignments): exactly
--     the permissions of those roles (e.g. "billing clerk": invoices.read, invoices.write,
--     clients.read — and nothing about deals);
--   * otherwise the defaults of their base role: viewers read every area; members read and write
--     every area, except the special portal.write, roles.write and webhooks.write, which stay with
--     admins.
-- The job worker acts with admin rights inside the organization of its job.
-- Re-included by later migrations when areas or actions are added; idempotent.

insert into app_public.permissions (key, description) values
  ('clients.read', 'See client companies and contacts'),
  ('clients.write', 'Add, change and delete client companies and contacts'),
  ('deals.read', 'See the sales pipeline'),
  ('deals.write', 'Add, move and delete deals'),
  ('proposals.read', 'See proposals'),
  ('proposals.write', 'Draft, send and delete proposals'),
  ('contracts.read', 'See contracts'),
  ('contracts.write', 'Draft, send, sign and cancel contracts'),
  ('engagements.read', 'See engagements'),
  ('engagements.write', 'Change engagements'),
  ('projects.read', 'See project templates, projects, milestones and tasks'),
  ('projects.write', 'Plan and change projects, milestones and tasks'),
  ('time.read', 'See time entries'),
  ('time.write', 'Record and change time entries'),
  ('messages.read', 'Read threads and messages'),
  ('messages.write', 'Start threads and post messages'),
  ('files.read', 'See files'),
  ('files.write', 'Upload and delete files'),
  ('invoices.read', 'See invoices, invoice schedules and payments'),
  ('invoices.write', 'Draft, send and cancel invoices, record payments, manage invoice schedules'),
  ('vendors.read', 'See vendors'),
  ('vendors.write', 'Add and change vendors'),
  ('bills.read', 'See bills'),
  ('bills.write', 'Enter and change bills'),
  ('portal.read', 'See who has client-portal access'),
  ('portal.write', 'Give and revoke client-portal access (special: admins by default)'),
  ('roles.read', 'See custom roles and who holds them'),
  ('roles.write', 'Define custom roles and assign them (special: admins by default)'),
  ('webhooks.read', 'See webhook endpoints and their delivery log'),
  ('webhooks.write', 'Add, change and delete webhook endpoints, rotate their secrets, retry deliveries (special: admins by default)')
on conflict (key) do update set description = excluded.description;

-- Is `permission` one of the special actions that only admins (or a custom role) grant?
create or replace function app_private.is_special_permission(permission text) returns boolean
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select permission in ('portal.write', 'roles.write', 'webhooks.write')
$$;

-- The organization of this request, if the current user may do `permission` there; otherwise
-- null. The policies of business tables ask it once per query:
--   organization_id = (select app_public.permitted_org_id('deals.read'))
-- which is "in the current organization, holding deals.read" in one helper call.
create or replace function app_public.permitted_org_id(permission text) returns uuid
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.setting_uuid('app.org_id');
  v_user uuid;
  v_session uuid;
  v_member_id uuid;
  v_role app_public.member_role;
begin
  if v_org is null then
    return null;
  end if;
  if app_private.is_worker_session() then
    return (select o.id from app_public.organizations o where o.id = v_org);
  end if;
  v_user := app_private.setting_uuid('app.user_id');
  v_session := app_private.setting_uuid('app.session_id');
  if v_user is null or v_session is null then
    return null;
  end if;
  -- The member behind a live session (as current_user_id and current_org_id check): one query.
  select m.id, m.role into v_member_id, v_role
  from app_private.sessions s
  join app_public.organization_members m on m.organization_id = v_org and m.user_id = s.user_id
  where s.id = v_session and s.user_id = v_user and s.revoked_at is null and s.expires_at > now();
  if not found then
    return null;
  end if;
  if v_role >= 'admin' then
    return v_org;
  end if;
  if exists (select 1 from app_public.role_assignments mr where mr.organization_id = v_org and mr.member_id = v_member_id) then
    return case when exists (
      select 1
      from app_public.role_assignments mr
      join app_public.role_permissions rp on rp.organization_id = mr.organization_id and rp.role_id = mr.role_id
      join app_public.roles r on r.organization_id = mr.organization_id and r.id = mr.role_id and r.deleted_at is null
      where mr.organization_id = v_org and mr.member_id = v_member_id and rp.permission_key = permitted_org_id.permission
    ) then v_org end;
  end if;
  if permitted_org_id.permission like '%.read' then
    return v_org;
  end if;
  return case
    when v_role = 'member' and permitted_org_id.permission like '%.write' and not app_private.is_special_permission(permitted_org_id.permission) then v_org
  end;
end
$$;
comment on function app_public.permitted_org_id(text) is E'@behavior -queryField\nThe current organization, if you may do `permission` (e.g. deals.read) in it; otherwise null (for policies; clients ask hasPermission).';
revoke all on function app_public.permitted_org_id(text) from public;
grant execute on function app_public.permitted_org_id(text) to :DATABASE_VISITOR;

-- (SQL, no SET clause: PostgreSQL inlines it into its callers.)
create or replace function app_public.has_permission(permission text) returns boolean
language sql stable
as $$
  select app_public.permitted_org_id(permission) is not null
$$;
comment on function app_public.has_permission(text) is 'True when you may do `permission` (e.g. invoices.write) in the current organization: owners and admins always; members with custom roles what those roles grant; otherwise viewers read and members read and write.';

-- The current user's permissions in the current organization (for a UI to show or hide actions).
create or replace function app_public.my_permissions() returns setof text
language sql stable
set search_path = pg_catalog
as $$
  select p.key from app_public.permissions p where app_public.has_permission(p.key) order by p.key
$$;
comment on function app_public.my_permissions() is 'The permission keys you hold in the current organization.';

-- Raise the right error unless the current user may do `permission` in an organization.
create or replace function app_private.require_permission(permission text, action text) returns void
language plpgsql stable
set search_path = pg_catalog
as $$
begin
  if app_public.current_user_id() is null and not app_private.is_worker_session() then
    perform app_private.fail('UNAUTHENTICATED', format('Sign in to %s.', action));
  elsif app_public.current_org_id() is null then
    perform app_private.fail('NO_ORGANIZATION', format('Choose an organization to %s.', action));
  elsif not app_public.has_permission(permission) then
    perform app_private.fail('NOT_PERMITTED', format('You need the %s permission to %s.', permission, action));
  end if;
end
$$;

-- Roles cannot be used to gain more ------------------------------------------------------------
--
-- Holding roles.write lets a member define and assign custom roles, but a member may pass on
-- through roles only permissions they hold themselves (PERMISSION_NOT_HELD otherwise):
--   * adding a permission to a role (or moving one to another role) needs that permission — the
--     role may already be held by others, or by the member themself;
--   * assigning a role to anyone, the member themself included, needs every permission of it;
--   * removing a member's last custom role returns them to their base role's defaults (a member
--     reads and writes every area), so it needs every one of those defaults.
-- Owners and admins hold every permission, so for them nothing changes. Removing a permission
-- from a role, deleting a role, or assigning a role that narrows what someone may do only takes
-- away, and stays open to roles.write. A deleted role that members still hold is kept by the
-- retention purge (its foreign key below has no cascade): purging it would drop their last
-- custom role and hand them their base role's defaults, which nobody granted.
-- Checked in BEFORE ROW triggers on the API's and the worker's connections (like the owner rules
-- of sql/functions/members.sql); maintenance by the owner role is trusted. Without roles.write
-- the triggers leave the row to row-level security, which refuses it (42501). Every row is checked
-- against the permissions the member holds at that moment, and no allowed row adds to them, so
-- rows earlier in the same statement cannot lend the member anything.

-- The permissions of a base role without custom roles (what permitted_org_id answers for it).
create or replace function app_private.base_role_permissions(role app_public.member_role) returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(array_agg(p.key order by p.key), '{}')
  from app_public.permissions p
  where base_role_permissions.role >= 'admin'
    or p.key like '%.read'
    or (base_role_permissions.role = 'member' and p.key like '%.write' and not app_private.is_special_permission(p.key))
$$;
comment on function app_private.base_role_permissions(app_public.member_role) is 'The permissions a member of this base role holds when they hold no custom role (mirrors app_public.permitted_org_id).';

-- Raise PERMISSION_NOT_HELD unless the current user holds every one of `permissions` here.
create or replace function app_private.require_held(permissions text[], action text) returns void
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_missing text;
begin
  select string_agg(p.key, ', ' order by p.key) into v_missing
  from unnest(require_held.permissions) as p(key)
  where not app_public.has_permission(p.key);
  if v_missing is not null then
    perform app_private.fail('PERMISSION_NOT_HELD',
      format('Through roles you may pass on only permissions you hold yourself: to %s you would need %s.', action, v_missing));
  end if;
end
$$;

create or replace function app_private.tg_role_permissions__held() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if session_user in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name) and app_public.has_permission('roles.write')
     and (tg_op = 'INSERT' or new.permission_key is distinct from old.permission_key or new.role_id is distinct from old.role_id) then
    perform app_private.require_held(array[new.permission_key], 'add a permission to a role');
  end if;
  return new;
end
$$;
drop trigger if exists tg_role_permissions__held on app_public.role_permissions;
create trigger tg_role_permissions__held before insert or update on app_public.role_permissions
  for each row execute function app_private.tg_role_permissions__held();

create or replace function app_private.tg_role_assignments__held() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_base app_public.member_role;
begin
  if session_user not in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name) or not app_public.has_permission('roles.write')
     or (tg_op = 'UPDATE' and new.member_id = old.member_id and new.role_id = old.role_id) then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    perform app_private.require_held(array(
      select rp.permission_key from app_public.role_permissions rp
      where rp.organization_id = new.organization_id and rp.role_id = new.role_id
    ), 'assign this role');
  end if;
  if tg_op = 'DELETE' or new.member_id <> old.member_id then
    -- Their last custom role? Then they return to their base role's defaults. (A member being
    -- removed from the organization takes their roles along: no member row, nothing to check.)
    select m.role into v_base from app_public.organization_members m
    where m.organization_id = old.organization_id and m.id = old.member_id;
    if v_base < 'admin' and not exists (
      select from app_public.role_assignments ra
      where ra.organization_id = old.organization_id and ra.member_id = old.member_id and ra.id <> old.id
    ) then
      perform app_private.require_held(app_private.base_role_permissions(v_base),
        format('take away a member''s last custom role (they return to the %s role''s permissions)', v_base));
    end if;
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;
drop trigger if exists tg_role_assignments__held on app_public.role_assignments;
create trigger tg_role_assignments__held before insert or update or delete on app_public.role_assignments
  for each row execute function app_private.tg_role_assignments__held();

-- A deleted role that members still hold stays until they no longer do (see above).
alter table app_public.role_assignments
  drop constraint if exists role_assignments_organization_id_role_id_fkey,
  add constraint role_assignments_organization_id_role_id_fkey
    foreign key (organization_id, role_id) references app_public.roles;
--! EndIncluded functions/permissions.sql
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
comment on column app_public.webhook_deliveries.payload is 'The JSON body POSTed (the same on every attempt; its `id` is this delivery''s id, for receivers to ignore repeats).';

-- The payload is large and the same as the event it carries: left out of the activity log.
call app_private.make_tenant_table('app_public.webhook_deliveries', 'webhooks',
  secret_columns => array['payload'], insertable => false, updatable => false);

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

-- Called by dispatch_activity (worker, inside the organization): the transaction's domain events
-- become deliveries to the subscribed, enabled endpoints, each with its job. Returns how many
-- deliveries were created (0 when a retried dispatch finds them already there).
create or replace function app_private.queue_webhook_deliveries(transaction_id bigint) returns integer
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
    from app_public.activity_events e
    join app_private.webhook_event_rules r on r.table_name = e.table_name
    where e.organization_id = v_org
      and e.transaction_id = queue_webhook_deliveries.transaction_id
      and (
        (r.to_status is null and e.action = 'insert')
        or (r.to_status is not null and e.new_values ->> r.status_column = r.to_status and (
          e.action = 'insert'
          or (e.action = 'update' and e.old_values ->> r.status_column is distinct from r.to_status)
        ))
      )
  ),
  deliveries as (
    insert into app_public.webhook_deliveries (organization_id, id, endpoint_id, event_type, activity_event_id, payload)
    select v_org, d.id, w.id, ev.event_type, ev.id,
      jsonb_build_object(
        'id', d.id,
        'type', ev.event_type,
        'created_at', ev.occurred_at,
        'organization_id', v_org,
        'data', jsonb_build_object('table', ev.table_name, 'id', ev.record_id, 'object', ev.new_values, 'previous', ev.previous)
      )
    from events ev
    join app_public.webhook_endpoints w on w.organization_id = v_org and w.enabled and w.deleted_at is null
      and (ev.event_type = any (w.event_types) or '*' = any (w.event_types))
      and ev.occurred_at >= w.created_at -- an endpoint receives what happens after it was registered
    cross join lateral (select gen_random_uuid() as id) d
    on conflict on constraint webhook_deliveries_one_per_event do nothing
    returning organization_id, id
  )
  select count(*)::integer into v_count
  from deliveries d, lateral app_private.enqueue_webhook_delivery(d.organization_id, d.id);
  return v_count;
end
$$;
revoke all on function app_private.queue_webhook_deliveries(bigint) from public;
grant execute on function app_private.queue_webhook_deliveries(bigint) to :DATABASE_WORKER;

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
--! Included functions/copies.sql
-- Copies of rows read only by the readers of their source. Data leaves its table through side
-- doors: the activity log (old and new values: sql/functions/activity.sql), webhook deliveries
-- (the payload is the row) and webhook endpoints (which receive those payloads). Each door is
-- held to the rule of the table the data comes from, `<area>.read` as recorded in
-- app_private.activity_read_rules (make_tenant_table registers every table's area there):
--
--   * a webhook delivery names its source table (`source_table`, set by the trigger below from
--     its event type; a ping's source is the endpoint itself). Its row — payload, event type,
--     times — and its events in the activity log are read by members holding webhooks.read AND
--     the read permission of the source: a member with webhooks.read alone sees the pings and
--     nothing of deals, invoices, payments or contracts (the standard select policy does this for
--     every table with a source_table column: app_private.create_tenant_policies);
--   * subscribing an endpoint to events (creating it, or changing its URL or event types) needs
--     the read permission of every source table it would receive (`*`: of all of them), or
--     PERMISSION_NOT_HELD: webhooks.write must not be a way to mail oneself the deals.
--   * retrying a delivery finds only the deliveries one may read (sql/functions/webhooks.sql).
-- Emails and jobs are not readable through the API at all (app_private, graphile_worker).
-- Idempotent; re-included by later migrations.

alter table app_public.webhook_deliveries add column if not exists source_table text;
comment on column app_public.webhook_deliveries.source_table is 'The table whose row the payload carries (from the event type; webhook_endpoints for a ping). Only members who may read that table see the delivery.';

-- The source of a delivery: the table of its event type, or the endpoint itself for `ping`.
create or replace function app_private.tg_webhook_deliveries__source() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  new.source_table := coalesce(
    (select r.table_name from app_private.webhook_event_rules r where r.event_type = new.event_type),
    'webhook_endpoints');
  return new;
end
$$;
drop trigger if exists tg_webhook_deliveries__source on app_public.webhook_deliveries;
create trigger tg_webhook_deliveries__source before insert or update of event_type, source_table on app_public.webhook_deliveries
  for each row execute function app_private.tg_webhook_deliveries__source();

-- Deliveries made before they named their source (no audit events: nothing else changes).
do $$
begin
  if exists (select from app_public.webhook_deliveries d where d.source_table is null) then
    alter table app_public.webhook_deliveries disable trigger tg_webhook_deliveries__audit_update;
    update app_public.webhook_deliveries d
    set source_table = coalesce((select r.table_name from app_private.webhook_event_rules r where r.event_type = d.event_type), 'webhook_endpoints')
    where d.source_table is null;
    alter table app_public.webhook_deliveries enable trigger tg_webhook_deliveries__audit_update;
  end if;
end
$$;
alter table app_public.webhook_deliveries alter column source_table set not null;

-- The select policy now asks for the source too (it is made for every table with source_table).
call app_private.create_tenant_policies('app_public.webhook_deliveries', 'webhooks', false, insertable => false, updatable => false);

-- An endpoint receives copies of the rows its events carry: who subscribes it must read them.
create or replace function app_private.tg_webhook_endpoints__sources_readable() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_missing text;
begin
  if session_user not in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name)
     or (tg_op = 'UPDATE' and new.url = old.url and new.event_types = old.event_types) then
    return new;
  end if;
  select string_agg(distinct coalesce(rr.permission, format('the %s role', rr.min_role), r.table_name), ', '
    order by coalesce(rr.permission, format('the %s role', rr.min_role), r.table_name)) into v_missing
  from app_private.webhook_event_rules r
  left join app_private.activity_read_rules rr on rr.table_name = r.table_name
  where (r.event_type = any (new.event_types) or '*' = any (new.event_types))
    and r.table_name <> all (app_private.readable_activity_tables());
  if v_missing is not null then
    perform app_private.fail('PERMISSION_NOT_HELD', format(
      'A webhook endpoint receives the rows its events carry: to subscribe it to these events you need %s.', v_missing));
  end if;
  return new;
end
$$;
drop trigger if exists tg_webhook_endpoints__sources_readable on app_public.webhook_endpoints;
create trigger tg_webhook_endpoints__sources_readable before insert or update of url, event_types on app_public.webhook_endpoints
  for each row execute function app_private.tg_webhook_endpoints__sources_readable();
--! EndIncluded functions/copies.sql
--! Included functions/organization_slugs.sql
-- Organization slugs that reveal no other tenant. A slug is unique across all organizations (an
-- address such as /o/<slug> must name one firm), so a slug that people choose would answer "is
-- this name taken?" for every firm in the database. Instead every slug is made by the server:
-- a label (from the slug asked for, or from the name) and a random suffix,
--
--   "Northwind Traders" → northwind-traders-k7m2qx
--
-- unique by construction, whatever anybody else chose: creating or renaming an organization
-- with another firm's slug answers exactly as with a free one (a new suffix), and the answer says
-- nothing about other tenants. Organizations are addressed by id everywhere in the API; the slug
-- is for people (URLs, the UI). Changing the slug gives it a new suffix; changing only the name
-- keeps it. Idempotent; re-included by later migrations.

-- The label part: lower case, runs of anything but a-z and 0-9 as one '-', at most 56
-- characters (the suffix takes 7 of the 63 the slug check allows); 'org' when nothing is left.
create or replace function app_private.slug_label(value text) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select coalesce(nullif(trim(both '-' from left(trim(both '-' from regexp_replace(lower(coalesce(value, '')), '[^a-z0-9]+', '-', 'g')), 56)), ''), 'org')
$$;

-- Six random characters of 32 (no 0/o, 1/l): 30 bits.
create or replace function app_private.slug_suffix() returns text
language sql volatile
set search_path = pg_catalog
as $$
  select string_agg(substr('abcdefghijkmnpqrstuvwxyz23456789', 1 + (get_byte(b.bytes, i) % 32), 1), '' order by i)
  from (select public.gen_random_bytes(6) as bytes) b, generate_series(0, 5) as i
$$;

-- BEFORE INSERT, and UPDATE of slug: the slug is the label of what was given, and a suffix that
-- no organization has. A suffix drawn twice is drawn again (the odds are about one in a billion
-- per organization; a collision reveals nothing, since nobody chose it).
create or replace function app_private.tg_organizations__slug() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_label text;
begin
  if tg_op = 'UPDATE' and new.slug is not distinct from old.slug then
    return new;
  end if;
  v_label := app_private.slug_label(coalesce(new.slug, new.name));
  loop
    new.slug := v_label || '-' || app_private.slug_suffix();
    exit when not exists (select from app_public.organizations o where o.slug = new.slug and o.id <> new.id);
  end loop;
  return new;
end
$$;
drop trigger if exists tg_organizations__slug on app_public.organizations;
create trigger tg_organizations__slug before insert or update of slug on app_public.organizations
  for each row execute function app_private.tg_organizations__slug();

comment on column app_public.organizations.slug is 'A readable address for the organization, made by the server: a label from the slug you give (or the name) and a random suffix, e.g. northwind-traders-k7m2qx. Setting it again gives a new suffix.';
--! EndIncluded functions/organization_slugs.sql
--! Included functions/auth.sql
-- Accounts, sessions and organizations: every rule of signing up, signing in, refresh-token
-- rotation, organization switching, invitations. The API (src/http/auth-mutations.ts) only calls
-- these functions and signs the access token for the grant they return.
--
-- Sessions: one row per sign-in in app_private.sessions. The refresh token is random, shown to
-- the client once, stored only as a SHA-256 hash, and rotated on every refresh; presenting an
-- already-used refresh token revokes the whole session (token theft detection). Access tokens
-- name their session, and app_public.current_user_id() checks it is live, so signing out
-- cuts off every access token of that session at once.
--
-- Lifetimes come from the settings app.refresh_token_ttl_seconds (the API sets it per request
-- from REFRESH_TOKEN_TTL_SECONDS), 30 days when unset.

create or replace function app_private.refresh_token_ttl() returns interval
language sql stable
set search_path = pg_catalog
as $$
  select make_interval(secs => coalesce(nullif(current_setting('app.refresh_token_ttl_seconds', true), '')::int, 30 * 24 * 3600))
$$;

create or replace function app_private.hash_token(token text) returns bytea
language sql immutable strict
set search_path = pg_catalog
as $$
  select public.digest(token, 'sha256')
$$;

create or replace function app_private.random_token() returns text
language sql volatile
set search_path = pg_catalog
as $$
  select translate(encode(public.gen_random_bytes(32), 'base64'), '+/=', '-_')
$$;

-- Starts a session for a user, optionally in an organization they belong to.
create or replace function app_private.start_session(user_id uuid, organization_id uuid) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_token text := app_private.random_token();
  v_session app_private.sessions;
begin
  insert into app_private.sessions (user_id, organization_id, refresh_token_hash, expires_at)
  values (start_session.user_id, start_session.organization_id, app_private.hash_token(v_token), now() + app_private.refresh_token_ttl())
  returning * into v_session;
  return row(v_session.user_id, v_session.id, v_session.organization_id, v_token, v_session.expires_at)::app_private.auth_grant;
end
$$;

-- Create an account at once and sign in: for the demo data (src/db/seed.ts) and test fixtures,
-- run as the owner. The API never calls it (it would tell that an address has an account,
-- EMAIL_TAKEN): sign-up there goes through an email (sql/functions/registration.sql). The email
-- is stored lower-cased; the password is hashed with bcrypt (pgcrypto).
drop function if exists app_private.register(text, text, text); -- now create_account, owner only
create or replace function app_private.create_account(email text, password text, name text) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_email text := lower(btrim(create_account.email));
  v_user_id uuid;
begin
  if v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' or length(v_email) > 320 then
    perform app_private.fail('INVALID_EMAIL', 'The email address is not valid.');
  end if;
  if password is null or length(password) < 8 or octet_length(password) > 72 then
    perform app_private.fail('WEAK_PASSWORD', 'The password must be 8 to 72 characters long.');
  end if;
  if exists (select 1 from app_public.users u where u.email = v_email) then
    perform app_private.fail('EMAIL_TAKEN', 'An account with this email already exists; sign in instead.');
  end if;
  insert into app_public.users (email, name) values (v_email, btrim(create_account.name)) returning id into v_user_id;
  insert into app_private.user_secrets (user_id, password_hash) values (v_user_id, public.crypt(password, public.gen_salt('bf', 10)));
  return app_private.start_session(v_user_id, null);
end
$$;
revoke all on function app_private.create_account(text, text, text) from public;

-- Sign-in throttling, per email address AND client: the client is the caller's network address
-- as the API sees it (the setting app.client_address, from Express's req.ip: an IPv4 address or
-- an IPv6 /64, src/http/client-address.ts; 'unknown' when unset). Failed sign-ins are counted
-- per pair, known email or not (the answer tells nothing about whether an account exists). After
-- 5 failures in a row, that client must wait before its next attempt for that address is even
-- checked: 5 seconds, doubling with each further failure, at most 15 minutes (TOO_MANY_ATTEMPTS,
-- with the seconds to wait). So one client guessing one account gets about 15 tries in the first
-- hour and 4 an hour after that, while the same address signing in from anywhere else is not
-- slowed at all: a stranger cannot lock a known user out. A successful sign-in clears its pair; a
-- password reset clears every pair of the address (app_private.reset_password). Failures older
-- than a day are forgotten, and each failure deletes up to 10 forgotten rows, so the table holds
-- little more than the pairs that failed within the last day.

-- The client the current request comes from (set per request by the API: pgSettingsFor).
create or replace function app_private.login_client() returns text
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(nullif(current_setting('app.client_address', true), ''), 'unknown')
$$;

-- How long a client waits after its `failures`-th failure in a row for one address.
create or replace function app_private.login_delay(failures integer) returns interval
language sql immutable
set search_path = pg_catalog
as $$
  select case
    when failures < 5 then interval '0'
    else least(interval '5 seconds' * power(2, least(failures - 5, 20)), interval '15 minutes')
  end
$$;

-- Seconds the current client must still wait before it may sign in as `email` (0: now). Only
-- the caller's own failures count, so it tells nothing about the address or anyone else.
create or replace function app_private.login_retry_after(email text) returns integer
language sql volatile security definer
set search_path = pg_catalog
as $$
  select coalesce(max(ceil(extract(epoch from t.next_attempt_at - clock_timestamp())))::integer, 0)
  from app_private.login_throttle t
  where t.email = left(lower(btrim(coalesce(login_retry_after.email, ''))), 320)
    and t.client = app_private.login_client()
    and t.next_attempt_at > clock_timestamp()
$$;

-- Sign in; optionally straight into an organization (ignored unless the user may enter it).
-- Unknown email and wrong password fail alike, after the same bcrypt work. Throttled per email
-- address and client (above). A failure returns null instead of raising, so that its record is
-- committed (the API answers INVALID_CREDENTIALS).
create or replace function app_private.login(email text, password text, organization_id uuid default null) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_email text := lower(btrim(coalesce(login.email, '')));
  -- No account has a longer address (register allows 320 characters): the throttle key is bounded.
  v_key text := left(lower(btrim(coalesce(login.email, ''))), 320);
  v_client text := app_private.login_client();
  v_user_id uuid;
  v_hash text;
begin
  -- Claim the attempt, counted as a failure until the password proves right: concurrent attempts
  -- of one client for one address queue on this row and each sees the delay the previous one
  -- earned. A client that must still wait gets no password check at all.
  insert into app_private.login_throttle as t (email, client, failures, last_failed_at, next_attempt_at)
  values (v_key, v_client, 1, clock_timestamp(), clock_timestamp() + app_private.login_delay(1))
  on conflict on constraint login_throttle_pkey do update set
    failures = case when t.last_failed_at < clock_timestamp() - interval '1 day' then 1 else t.failures + 1 end,
    last_failed_at = clock_timestamp(),
    next_attempt_at = clock_timestamp()
      + app_private.login_delay(case when t.last_failed_at < clock_timestamp() - interval '1 day' then 1 else t.failures + 1 end)
  where t.next_attempt_at <= clock_timestamp();
  if not found then
    perform app_private.fail('TOO_MANY_ATTEMPTS', format(
      'Too many failed sign-ins for this account from your network address; try again in %s second(s), or reset the password.',
      greatest(app_private.login_retry_after(v_key), 1)));
  end if;
  select u.id, s.password_hash into v_user_id, v_hash
  from app_public.users u
  join app_private.user_secrets s on s.user_id = u.id
  where u.email = v_email;
  if v_hash is null then
    -- Same cost as a real check, so response time does not tell whether the email exists.
    perform public.crypt(coalesce(password, ''), public.gen_salt('bf', 10));
  end if;
  if v_hash is null or public.crypt(coalesce(password, ''), v_hash) is distinct from v_hash then
    -- The claim above stays as the failure. Forget a few failures older than a day.
    delete from app_private.login_throttle t
    where (t.email, t.client) in (
      select o.email, o.client from app_private.login_throttle o
      where o.last_failed_at < clock_timestamp() - interval '1 day'
      limit 10
      for update skip locked
    );
    return null;
  end if;
  delete from app_private.login_throttle t where t.email = v_key and t.client = v_client;
  return app_private.start_session(
    v_user_id,
    case when app_private.can_enter_organization(v_user_id, login.organization_id) then login.organization_id end
  );
end
$$;

-- Rotate a refresh token. Returns null (the API answers INVALID_REFRESH_TOKEN) when the token is
-- unknown, expired or revoked; when it was already used, also revokes its session, which must
-- survive: that is why this returns null instead of raising (an error would roll it back).
-- The organization carries over while the user may still enter it.
create or replace function app_private.refresh(refresh_token text) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_hash bytea := app_private.hash_token(refresh_token);
  v_token text := app_private.random_token();
  v_session app_private.sessions;
begin
  select * into v_session from app_private.sessions s where s.refresh_token_hash = v_hash for update;
  if v_session.id is null then
    update app_private.sessions s
    set revoked_at = now(), revoked_reason = 'refresh token reused'
    from app_private.used_refresh_tokens t
    where t.token_hash = v_hash and s.id = t.session_id and s.revoked_at is null;
    return null;
  end if;
  if v_session.revoked_at is not null or v_session.expires_at <= now() then
    return null;
  end if;
  insert into app_private.used_refresh_tokens (token_hash, session_id) values (v_hash, v_session.id);
  update app_private.sessions s
  set refresh_token_hash = app_private.hash_token(v_token),
      refreshed_at = now(),
      expires_at = now() + app_private.refresh_token_ttl(),
      organization_id = case
        when app_private.can_enter_organization(v_session.user_id, v_session.organization_id) then v_session.organization_id
      end
  where s.id = v_session.id
  returning * into v_session;
  return row(v_session.user_id, v_session.id, v_session.organization_id, v_token, v_session.expires_at)::app_private.auth_grant;
end
$$;

-- Sign out: revokes the current session (from the access token), which stops its access tokens
-- and refresh token at once. True if a live session was revoked.
create or replace function app_private.logout() returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  update app_private.sessions s
  set revoked_at = now(), revoked_reason = 'signed out'
  where s.id = app_private.setting_uuid('app.session_id')
    and s.user_id = app_public.current_user_id()
    and s.revoked_at is null;
  return found;
end
$$;

-- Scope the current session to another organization the user belongs to, as a member or a
-- client-portal user (NOT_FOUND otherwise:
-- an organization the user is not in is indistinguishable from one that does not exist).
-- Null switches to no organization. No new refresh token: the session's stays valid.
create or replace function app_private.switch_organization(organization_id uuid) returns app_private.auth_grant
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user_id uuid := app_public.current_user_id();
  v_session app_private.sessions;
begin
  if v_user_id is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in to choose an organization.');
  end if;
  if switch_organization.organization_id is not null
     and not app_private.can_enter_organization(v_user_id, switch_organization.organization_id) then
    perform app_private.fail('NOT_FOUND', 'No such organization among yours.');
  end if;
  update app_private.sessions s
  set organization_id = switch_organization.organization_id
  where s.id = app_private.setting_uuid('app.session_id')
  returning * into v_session;
  return row(v_session.user_id, v_session.id, v_session.organization_id, null, v_session.expires_at)::app_private.auth_grant;
end
$$;

-- Create an organization; the signed-in creator becomes its owner. Its slug is made by the
-- server from `slug` (or the name) and a random suffix (sql/functions/organization_slugs.sql),
-- so the answer never depends on the slugs of other tenants.
create or replace function app_public.create_organization(name text, slug text default null) returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user_id uuid := app_public.current_user_id();
  v_org app_public.organizations;
begin
  if v_user_id is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in to create an organization.');
  end if;
  insert into app_public.organizations (name, slug, created_by)
  values (btrim(create_organization.name), coalesce(nullif(btrim(create_organization.slug), ''), create_organization.name), v_user_id)
  returning * into v_org;
  insert into app_public.organization_members (organization_id, user_id, role, created_by) values (v_org.id, v_user_id, 'owner', v_user_id);
  return v_org;
end
$$;
comment on function app_public.create_organization(text, text) is 'Creates an organization with you as its owner. Its slug is made from `slug` (or the name) and a random suffix, e.g. northwind-k7m2qx. Call switchOrganization to work in it.';

-- The organizations you belong to (whatever organization the request is scoped to).
create or replace function app_public.my_organizations() returns setof app_public.organizations
language sql stable security definer
set search_path = pg_catalog
as $$
  select o.*
  from app_public.organizations o
  join app_public.organization_members m on m.organization_id = o.id
  where m.user_id = app_public.current_user_id()
  order by o.name, o.id
$$;
comment on function app_public.my_organizations() is 'The organizations you are a member of, to choose one with switchOrganization.';

-- Invite someone by email to the current organization (owners and admins; only owners invite
-- owners). Replaces a pending invitation to the same email. The token is returned once, here;
-- only its hash is stored. It is valid for 7 days, for the invited email only. The invitation
-- email (with the accept link) is enqueued in the same transaction.
create or replace function app_public.invite_member(email text, role app_public.member_role default 'member') returns app_public.invitation_token
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_email text := lower(btrim(invite_member.email));
  v_org uuid := app_public.current_org_id();
  v_token text := app_private.random_token();
  v_invitation app_public.invitations;
begin
  perform app_private.require_member_role('admin', 'invite members');
  if invite_member.role = 'owner' and app_public.current_member_role() <> 'owner' then
    perform app_private.fail('OWNER_REQUIRED', 'Only an owner may invite an owner.');
  end if;
  if v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' or length(v_email) > 320 then
    perform app_private.fail('INVALID_EMAIL', 'The email address is not valid.');
  end if;
  if exists (
    select 1 from app_public.organization_members m join app_public.users u on u.id = m.user_id
    where m.organization_id = v_org and u.email = v_email
  ) then
    perform app_private.fail('ALREADY_MEMBER', format('%s is already a member of this organization.', v_email));
  end if;
  delete from app_public.invitations i where i.organization_id = v_org and i.email = v_email and i.accepted_at is null;
  insert into app_public.invitations (organization_id, email, role, invited_by)
  values (v_org, v_email, invite_member.role, app_public.current_user_id())
  returning * into v_invitation;
  insert into app_private.invitation_secrets (organization_id, invitation_id, token_hash)
  values (v_org, v_invitation.id, app_private.hash_token(v_token));
  -- The invitation email, in this transaction (sql/functions/email.sql); its token waits for the
  -- worker in app_private.email_secrets until the invitation expires, never in the job.
  perform app_private.enqueue_email(
    'invitation',
    v_email,
    jsonb_build_object(
      'email', v_email,
      'organization_name', o.name,
      'inviter_name', coalesce(u.name, 'A member'),
      'role', invite_member.role,
      'expires_on', app_private.format_day((v_invitation.expires_at at time zone 'UTC')::date)
    ),
    format('invitation:%s', v_invitation.id),
    v_org,
    secrets => jsonb_build_object('token', v_token),
    secrets_expire_at => v_invitation.expires_at
  )
  from app_public.organizations o
  left join app_public.users u on u.id = v_invitation.invited_by
  where o.id = v_org;
  return row(v_invitation.id, v_token, v_invitation.expires_at)::app_public.invitation_token;
end
$$;
comment on function app_public.invite_member(text, app_public.member_role) is 'Invites an email address to the current organization (owners and admins). Returns the invitation token once; it expires after 7 days.';

-- Accept an invitation: the signed-in user, whose email must be the invited one, joins the
-- organization with the invited role. Then call switchOrganization to work in it.
create or replace function app_public.accept_invitation(token text) returns app_public.organization_members
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user_id uuid := app_public.current_user_id();
  v_invitation app_public.invitations;
  v_member app_public.organization_members;
begin
  if v_user_id is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in (or sign up with the invited email) to accept an invitation.');
  end if;
  select i.* into v_invitation
  from app_private.invitation_secrets s
  join app_public.invitations i on i.organization_id = s.organization_id and i.id = s.invitation_id
  join app_public.users u on u.id = v_user_id
  where s.token_hash = app_private.hash_token(accept_invitation.token)
    and i.accepted_at is null
    and i.expires_at > now()
    and i.email = u.email
  for update of i;
  if v_invitation.id is null then
    perform app_private.fail('INVITATION_INVALID', 'This invitation is unknown, expired, already used, or for another email address.');
  end if;
  if exists (select 1 from app_public.organization_members m where m.organization_id = v_invitation.organization_id and m.user_id = v_user_id) then
    perform app_private.fail('ALREADY_MEMBER', 'You are already a member of this organization.');
  end if;
  insert into app_public.organization_members (organization_id, user_id, role, created_by)
  values (v_invitation.organization_id, v_user_id, v_invitation.role, v_invitation.invited_by)
  returning * into v_member;
  update app_public.invitations i set accepted_at = now(), accepted_by = v_user_id
  where i.organization_id = v_invitation.organization_id and i.id = v_invitation.id;
  -- Used: an invitation email still waiting would carry a link that no longer works.
  perform app_private.cancel_email(format('invitation:%s', v_invitation.id));
  return v_member;
end
$$;
comment on function app_public.accept_invitation(text) is 'Joins the organization of an invitation sent to your email address.';

-- The signed-in user (GraphQL: `viewer`), or null.
create or replace function app_public.viewer() returns app_public.users
language sql stable
set search_path = pg_catalog
as $$
  select u.* from app_public.users u where u.id = app_public.current_user_id()
$$;
comment on function app_public.viewer() is 'You: the signed-in user, or null when signed out.';

-- The organization the request acts in (GraphQL: `currentOrganization`), or null.
create or replace function app_public.current_organization() returns app_public.organizations
language sql stable
set search_path = pg_catalog
as $$
  select o.* from app_public.organizations o where o.id = app_public.current_org_id()
$$;
comment on function app_public.current_organization() is 'The organization your access token is scoped to, or null.';
--! EndIncluded functions/auth.sql

-- No secret in a job (issue 11, point 4): the one-time tokens of invitation, password-reset and
-- sign-up emails wait for the worker in app_private.email_secrets instead of the send_email
-- job's payload (sql/functions/email.sql, included above). Sign-up by email (points 6 and 11):
-- register answers the same for every address and emails a confirmation link, or a note to an
-- existing account; confirmRegistration creates the account (sql/functions/registration.sql).
-- app_private.register becomes app_private.create_account, for the demo data and test fixtures
-- only (owner).
--! Included functions/password_reset.sql
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
--! EndIncluded functions/password_reset.sql
--! Included functions/registration.sql
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

-- Daily (task daily_maintenance): one-time secrets whose links have expired, and sign-up requests
-- a day past theirs, are deleted, even when no new email comes to clear them on the way (every
-- secret-bearing enqueue_email does, and every register). Worker only. Returns how many went.
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
--! EndIncluded functions/registration.sql

-- Logs carry no secret (point 4): the echo task logs its payload's keys, not their values.
--! Included functions/jobs.sql
-- The job queue seen from SQL: how producers queue work, how it is shared fairly between
-- organizations, and how operators see and retry what failed. The engine is graphile-worker
-- (schema graphile_worker, owned by the worker role); tasks are in src/worker/tasks/.
-- docs/DATA_FLOWS.md ("Producing jobs", "Fairness", "Failures") explains each with examples.
-- Idempotent; re-included by later migrations. (Functions that name the queue's own schema are
-- plpgsql: that schema is installed after the migrations run.)

-- Tasks other services may queue with app_private.enqueue_job (the rest are queued by Atrium's
-- own triggers and functions).
create table if not exists app_private.producer_tasks (
  task text primary key check (task ~ '^[a-z_]+$'),
  description text not null
);
alter table app_private.producer_tasks enable row level security;
alter table app_private.producer_tasks force row level security;
comment on table app_private.producer_tasks is 'Tasks other services may queue with app_private.enqueue_job().';

insert into app_private.producer_tasks (task, description) values
  ('echo', 'Diagnostics: logs that it ran, with its payload''s keys (checks the path from a producer to the worker; used to measure the queue).')
on conflict (task) do update set description = excluded.description;

-- Fairness: how many jobs each organization queued in the current minute. A job's priority is
-- that count (plus the previous minute's; graphile-worker runs lower numbers first), so each
-- organization's n-th recent job gets priority n: the worker takes the organizations' first jobs,
-- then their second ones, and so on (round robin between organizations, however deep the backlog).
-- An organization that queues 10,000 jobs at once sends them at priorities 0 to 9,999, while another
-- organization's single job still gets priority 0 and runs next. (Capped at 32,000: the column is
-- a smallint.)
create table if not exists app_private.job_enqueue_counts (
  organization_id uuid not null,
  minute timestamptz not null,
  jobs integer not null default 0,
  primary key (organization_id, minute)
);
alter table app_private.job_enqueue_counts enable row level security;
alter table app_private.job_enqueue_counts force row level security;
comment on table app_private.job_enqueue_counts is 'Jobs queued per organization per minute: the basis of fair priorities (app_private.fair_job_priority). Rows older than a day are removed by the same function.';

-- Counts `jobs` more jobs of the organization in the current minute and returns how many it had
-- queued before them, this minute and the previous one: the basis of their fair priorities.
create or replace function app_private.count_queued_jobs(organization_id uuid, jobs integer default 1) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_before integer;
  v_previous integer;
begin
  insert into app_private.job_enqueue_counts as c (organization_id, minute, jobs)
  values (count_queued_jobs.organization_id, date_trunc('minute', now()), count_queued_jobs.jobs)
  on conflict on constraint job_enqueue_counts_pkey do update set jobs = c.jobs + excluded.jobs
  returning c.jobs - count_queued_jobs.jobs into v_before;
  -- The previous minute counts too: a busy organization does not start again at priority 0 when
  -- the clock passes a minute (its backlog is still queued), while a quiet one stays at 0.
  select coalesce(sum(c.jobs), 0) into v_previous
  from app_private.job_enqueue_counts c
  where c.organization_id = count_queued_jobs.organization_id and c.minute = date_trunc('minute', now()) - interval '1 minute';
  if random() < 0.001 then
    delete from app_private.job_enqueue_counts c where c.minute < now() - interval '1 day';
  end if;
  return v_before + v_previous;
end
$$;
revoke all on function app_private.count_queued_jobs(uuid, integer) from public;
comment on function app_private.count_queued_jobs(uuid, integer) is 'Adds `jobs` to the organization''s count of queued jobs this minute; returns the jobs it queued before them (this minute and the previous one).';

-- The fair priority of the organization's next job(s) (the first of them, when several).
create or replace function app_private.fair_job_priority(organization_id uuid, jobs integer default 1) returns integer
language sql volatile security definer
set search_path = pg_catalog
as $$
  select least(app_private.count_queued_jobs(organization_id, jobs), 32000)
$$;
revoke all on function app_private.fair_job_priority(uuid, integer) from public;
comment on function app_private.fair_job_priority(uuid, integer) is 'The priority for the next job(s) of an organization: the number of jobs it queued this minute and the previous one (lower runs first; at most 32,000).';

-- The producers' API, for many jobs of one task and one organization in one call (one fair-priority
-- count and one insert for all of them: what a service queuing in bulk should use). Each payload
-- (a JSON object) gets the organization_id; job_keys, when given, has one key or null per payload
-- (graphile-worker's job_key, prefixed with task and organization so tenants never collide; keys
-- must differ within a call). The jobs' priorities rise through the batch exactly as if they had
-- been queued one by one. Returns the ids of the jobs (for keys already queued: the existing job's).
create or replace function app_private.enqueue_jobs(
  task text,
  organization_id uuid,
  payloads jsonb[],
  run_at timestamptz default null,
  job_keys text[] default null,
  max_attempts integer default 10
) returns setof bigint
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_count integer := coalesce(cardinality(payloads), 0);
  v_before integer;
begin
  if not exists (select from app_private.producer_tasks t where t.task = enqueue_jobs.task) then
    perform app_private.fail('UNKNOWN_TASK', format('Other services may not queue %L; see app_private.producer_tasks for the tasks they may.', task));
  end if;
  if not exists (select from app_public.organizations o where o.id = enqueue_jobs.organization_id) then
    raise exception 'no organization %', organization_id using errcode = '22023';
  end if;
  if max_attempts is null or max_attempts not between 1 and 25 then
    raise exception 'max_attempts must be from 1 to 25' using errcode = '22023';
  end if;
  if v_count > 10000 then
    raise exception 'at most 10,000 jobs per call (got %)', v_count using errcode = '22023';
  end if;
  if exists (select from unnest(payloads) p where p is null or jsonb_typeof(p) <> 'object') then
    raise exception 'payload must be a JSON object (every one of them)' using errcode = '22023';
  end if;
  if job_keys is not null then
    if cardinality(job_keys) <> v_count then
      raise exception 'job_keys has % entries for % payloads: give one key (or null) per payload', cardinality(job_keys), v_count using errcode = '22023';
    end if;
    if (select count(k) <> count(distinct k) from unnest(job_keys) k) then
      raise exception 'job_keys must differ within one call' using errcode = '22023';
    end if;
  end if;
  if v_count = 0 then
    return;
  end if;
  v_before := app_private.count_queued_jobs(organization_id, v_count);
  return query
  select j.id
  from graphile_worker.add_jobs(array(
    select row(
      task,
      (p.payload || jsonb_build_object('organization_id', organization_id))::json,
      null,
      run_at,
      max_attempts,
      case when job_keys[p.n] is null then null else format('%s:%s:%s', task, organization_id, job_keys[p.n]) end,
      least(v_before + p.n - 1, 32000),
      null
    )::graphile_worker.job_spec
    from unnest(payloads) with ordinality as p(payload, n)
    order by p.n
  )) j;
end
$$;
revoke all on function app_private.enqueue_jobs(text, uuid, jsonb[], timestamptz, text[], integer) from public;
grant execute on function app_private.enqueue_jobs(text, uuid, jsonb[], timestamptz, text[], integer) to :DATABASE_PRODUCER, :DATABASE_WORKER;
comment on function app_private.enqueue_jobs(text, uuid, jsonb[], timestamptz, text[], integer) is 'Queues many jobs of one task for one organization in one call (other services, role DATABASE_PRODUCER): fair priorities as if queued one by one, optional job keys. Returns the job ids.';

-- The producers' API for one job: queue `task` for `organization_id`. The payload (a JSON object)
-- gets the organization_id; `job_key` collapses duplicates (graphile-worker's job_key, prefixed
-- with the organization so tenants never collide). Returns the job id.
create or replace function app_private.enqueue_job(
  task text,
  organization_id uuid,
  payload jsonb default '{}',
  run_at timestamptz default null,
  job_key text default null,
  max_attempts integer default 10
) returns bigint
language sql volatile security definer
set search_path = pg_catalog
as $$
  select app_private.enqueue_jobs(task, organization_id, array[payload], run_at, case when job_key is null then null else array[job_key] end, max_attempts)
$$;
revoke all on function app_private.enqueue_job(text, uuid, jsonb, timestamptz, text, integer) from public;
grant execute on function app_private.enqueue_job(text, uuid, jsonb, timestamptz, text, integer) to :DATABASE_PRODUCER, :DATABASE_WORKER;
comment on function app_private.enqueue_job(text, uuid, jsonb, timestamptz, text, integer) is 'Queues a job for other services (role DATABASE_PRODUCER): a task from app_private.producer_tasks, for one organization, with a fair priority. Returns the job id. Many jobs at once: app_private.enqueue_jobs.';
grant usage on schema app_private to :DATABASE_PRODUCER;

-- Operators: the queue at a glance, and what failed for good --------------------------------------

-- Per task: jobs waiting (run_at passed), scheduled (run_at ahead), running (locked),
-- retrying (failed at least once, attempts left) and failed (no attempts left).
create or replace function app_private.job_queue_depth()
returns table (task text, waiting bigint, scheduled bigint, running bigint, retrying bigint, failed bigint)
language plpgsql stable
set search_path = pg_catalog
as $$
begin
  return query
    select t.identifier::text,
      count(*) filter (where j.locked_at is null and j.attempts < j.max_attempts and j.run_at <= now()),
      count(*) filter (where j.locked_at is null and j.attempts < j.max_attempts and j.run_at > now()),
      count(*) filter (where j.locked_at is not null),
      count(*) filter (where j.locked_at is null and j.attempts > 0 and j.attempts < j.max_attempts),
      count(*) filter (where j.locked_at is null and j.attempts >= j.max_attempts)
    from graphile_worker._private_jobs j
    join graphile_worker._private_tasks t on t.id = j.task_id
    group by t.identifier
    order by 1;
end
$$;
revoke all on function app_private.job_queue_depth() from public;
grant execute on function app_private.job_queue_depth() to :DATABASE_WORKER;

-- Jobs that used up their attempts, with their last error: they stay in the queue, visible here,
-- until retried (app_private.retry_failed_jobs) or removed.
create or replace function app_private.failed_jobs()
returns table (id bigint, task text, organization_id uuid, attempts integer, max_attempts integer, last_error text, created_at timestamptz, updated_at timestamptz, payload json)
language plpgsql stable
set search_path = pg_catalog
as $$
begin
  return query
    select j.id, t.identifier::text, (j.payload ->> 'organization_id')::uuid, j.attempts::integer, j.max_attempts::integer,
      j.last_error, j.created_at, j.updated_at, j.payload
    from graphile_worker._private_jobs j
    join graphile_worker._private_tasks t on t.id = j.task_id
    where j.attempts >= j.max_attempts and j.locked_at is null
    order by j.updated_at desc, j.id;
end
$$;
revoke all on function app_private.failed_jobs() from public;
grant execute on function app_private.failed_jobs() to :DATABASE_WORKER;

-- Runs failed jobs again now, with a fresh set of attempts: the given ids, or every failed job
-- when `ids` is null. Returns the ids retried.
create or replace function app_private.retry_failed_jobs(ids bigint[] default null) returns setof bigint
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_ids bigint[];
begin
  select array_agg(f.id) into v_ids from app_private.failed_jobs() f where ids is null or f.id = any (ids);
  if v_ids is null then
    return;
  end if;
  return query select r.id from graphile_worker.reschedule_jobs(v_ids, run_at => now(), attempts => 0) r order by r.id;
end
$$;
revoke all on function app_private.retry_failed_jobs(bigint[]) from public;
grant execute on function app_private.retry_failed_jobs(bigint[]) to :DATABASE_WORKER;
--! EndIncluded functions/jobs.sql

grant execute on function app_private.login_retry_after(text) to :DATABASE_VISITOR;

-- Untrusted input normalized and bounded once, in the database: money, quantities, percentages,
-- dates and email addresses get domains (sql/functions/value_domains.sql) and every column of
-- each kind is put into its domain here; values PostgreSQL refuses answer catalogued codes
-- (app_private.error_sqlstates, app_private.domain_rules in sql/errors.sql).
-- (errors.sql, functions/value_domains.sql and functions/tenant_tables.sql are included above.)

-- Money: every amount, price, total, balance, budget, value and rate per hour (numeric(14,2)
-- before, so nothing a column held is refused but NaN).
call app_private.set_column_domain('app_public.bills', 'app_public.money_amount', 'amount');
call app_private.set_column_domain('app_public.contracts', 'app_public.money_amount', 'value');
call app_private.set_column_domain('app_public.deals', 'app_public.money_amount', 'value');
call app_private.set_column_domain('app_public.engagements', 'app_public.money_amount', 'budget', 'hourly_rate');
call app_private.set_column_domain('app_public.invoice_line_items', 'app_public.money_amount', 'unit_price', 'amount');
call app_private.set_column_domain('app_public.invoice_schedules', 'app_public.money_amount', 'amount');
call app_private.set_column_domain('app_public.invoices', 'app_public.money_amount', 'subtotal', 'amount_paid', 'tax_amount', 'total', 'balance');
call app_private.set_column_domain('app_public.payments', 'app_public.money_amount', 'amount');
call app_private.set_column_domain('app_public.proposal_line_items', 'app_public.money_amount', 'unit_price', 'amount');
call app_private.set_column_domain('app_public.proposals', 'app_public.money_amount', 'subtotal', 'tax_amount', 'total');
call app_private.set_column_domain('app_public.time_entries', 'app_public.money_amount', 'rate', 'amount');

-- Quantities on lines (numeric(12,2) before) and tax rates in percent (numeric(5,2), 0 to 100).
call app_private.set_column_domain('app_public.invoice_line_items', 'app_public.quantity', 'quantity');
call app_private.set_column_domain('app_public.proposal_line_items', 'app_public.quantity', 'quantity');
call app_private.set_column_domain('app_public.invoice_schedules', 'app_public.percentage', 'tax_rate');
call app_private.set_column_domain('app_public.invoices', 'app_public.percentage', 'tax_rate');
call app_private.set_column_domain('app_public.proposals', 'app_public.percentage', 'tax_rate');

-- Calendar dates: due dates, start and end dates, issue and payment dates, periods.
call app_private.set_column_domain('app_public.bills', 'app_public.business_date', 'issued_on', 'due_on');
call app_private.set_column_domain('app_public.contracts', 'app_public.business_date', 'starts_on', 'ends_on');
call app_private.set_column_domain('app_public.deals', 'app_public.business_date', 'expected_close_on');
call app_private.set_column_domain('app_public.engagements', 'app_public.business_date', 'starts_on', 'ends_on');
call app_private.set_column_domain('app_public.invoice_schedules', 'app_public.business_date', 'anchor_on', 'next_run_on', 'ends_on');
call app_private.set_column_domain('app_public.invoices', 'app_public.business_date', 'issued_on', 'due_on', 'period_start', 'period_end');
call app_private.set_column_domain('app_public.milestones', 'app_public.business_date', 'due_on');
call app_private.set_column_domain('app_public.payments', 'app_public.business_date', 'received_on');
call app_private.set_column_domain('app_public.projects', 'app_public.business_date', 'starts_on', 'due_on');
call app_private.set_column_domain('app_public.proposals', 'app_public.business_date', 'valid_until');
call app_private.set_column_domain('app_public.tasks', 'app_public.business_date', 'due_on');
call app_private.set_column_domain('app_public.time_entries', 'app_public.business_date', 'work_date');

-- Email addresses: stored lower-cased and trimmed by one trigger (existing rows are normalized
-- by the call). The tables' own checks (lower case, format) are the domain's rule now.
call app_private.set_column_domain('app_public.users', 'app_public.email_address', 'email');
call app_private.set_column_domain('app_public.invitations', 'app_public.email_address', 'email');
call app_private.set_column_domain('app_public.contacts', 'app_public.email_address', 'email');
call app_private.set_column_domain('app_public.vendors', 'app_public.email_address', 'email');
alter table app_public.users drop constraint if exists users_email_check;
alter table app_public.invitations drop constraint if exists invitations_email_check;
alter table app_public.contacts drop constraint if exists contacts_email_check;
alter table app_public.vendors drop constraint if exists vendors_email_check;
