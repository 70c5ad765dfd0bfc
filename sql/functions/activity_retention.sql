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
