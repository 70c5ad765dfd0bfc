--! Previous: sha1:8f7ed614196bb18cad012f25f41ed98c05a6464a
--! Hash: sha1:161bbfe1eddd9160c07eac330894849d4e538148
--! Message: Currencies: every monetary document records its currency, fixed when it is created; clients' billing currency; rate cards of the engagement's currency only; exchange rates into the base currency

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '60s';

-- Currencies (issue: the firm's money): every monetary document records its currency, fixed when
-- it is created (given, or copied along the chain it comes from); clients' billing currency; rate
-- cards price only engagements of their currency; exchange rates into the base currency. Rows
-- written before are filled by the next migration.
--! Included functions/currencies.sql
-- Currencies (docs/ENTITIES.md, "Currencies"): every monetary document records its currency,
-- fixed when it is created, so changing the organization's currency (or a client's) never
-- relabels a past amount.
--
--   organizations.currency    the base currency: reports convert into it; new documents default
--                             to it.
--   client_companies.currency the client's billing currency (none: the organization's).
--   a document's currency     given when it is created, or copied along the chain it comes from:
--     proposals                given, or the client's, or the organization's
--     contracts                the proposal's (acceptProposal)
--     engagements              the contract's (signContract); its time is priced in it
--     invoice_schedules        the engagement's
--     invoices                 given, or the engagement's, or the client's, or the organization's
--     payments, credit_notes,  the invoice's (given: it must be the invoice's, INVALID_VALUE)
--     refunds
--     bills                    given, or the organization's
--     bill_rates               the scope's (engagement, client, organization): a rate card prices
--                              only engagements of its currency
--   Once created, a document's currency never changes (IMMUTABLE), whoever writes.
--
--   exchange_rates            per organization: how much of the base currency one unit of another
--                             currency is worth from a date on (entered, or imported); reports
--                             convert with app_public.to_base_currency(amount, currency, on).
--
-- The column is added without rewriting the tables (no default, nullable), set by the trigger for
-- new rows; rows written before are filled by app_private.fill_document_currencies (migration
-- 000045, in batches), then the column is made not null (migration 000046).
-- Idempotent; re-included by later migrations.

-- Which tables carry a currency, and where a new row's comes from. (A table of this file only:
-- the trigger function reads it.)
create table if not exists app_private.currency_sources (
  table_name text primary key,
  source text not null check (source in ('given_client_organization', 'proposal', 'contract', 'engagement', 'given_engagement_client_organization', 'invoice', 'given_organization', 'scope'))
);
alter table app_private.currency_sources enable row level security;
alter table app_private.currency_sources force row level security;
comment on table app_private.currency_sources is 'Tables whose rows record a currency, and where a new row''s currency comes from (sql/functions/currencies.sql).';
insert into app_private.currency_sources (table_name, source) values
  ('proposals', 'given_client_organization'),
  ('contracts', 'proposal'),
  ('engagements', 'contract'),
  ('invoice_schedules', 'engagement'),
  ('invoices', 'given_engagement_client_organization'),
  ('payments', 'invoice'),
  ('credit_notes', 'invoice'),
  ('refunds', 'invoice'),
  ('bills', 'given_organization'),
  ('bill_rates', 'scope')
on conflict (table_name) do update set source = excluded.source;

-- BEFORE INSERT OR UPDATE OF currency on each table of currency_sources: a new row's currency,
-- given or copied (see the top of this file); never changed after.
create or replace function app_private.tg__document_currency() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_source text := (select s.source from app_private.currency_sources s where s.table_name = tg_table_name);
  v_org text := (select o.currency from app_public.organizations o where o.id = new.organization_id);
  v_copied text;
  j jsonb := to_jsonb(new);
begin
  if tg_op = 'UPDATE' then
    if new.currency is distinct from old.currency and old.currency is not null then
      perform app_private.fail('IMMUTABLE', 'A document''s currency is fixed when it is created.');
    end if;
    return new;
  end if;
  v_copied := case v_source
    when 'proposal' then (select p.currency from app_public.proposals p where p.organization_id = new.organization_id and p.id = (j ->> 'proposal_id')::uuid)
    when 'contract' then (select c.currency from app_public.contracts c where c.organization_id = new.organization_id and c.id = (j ->> 'contract_id')::uuid)
    when 'engagement' then (select e.currency from app_public.engagements e where e.organization_id = new.organization_id and e.id = (j ->> 'engagement_id')::uuid)
    when 'invoice' then (select i.currency from app_public.invoices i where i.organization_id = new.organization_id and i.id = (j ->> 'invoice_id')::uuid)
    when 'given_engagement_client_organization' then coalesce(
      (select e.currency from app_public.engagements e where e.organization_id = new.organization_id and e.id = (j ->> 'engagement_id')::uuid),
      (select c.currency from app_public.client_companies c where c.organization_id = new.organization_id and c.id = (j ->> 'client_company_id')::uuid))
    when 'given_client_organization' then
      (select c.currency from app_public.client_companies c where c.organization_id = new.organization_id and c.id = (j ->> 'client_company_id')::uuid)
    when 'scope' then coalesce(
      (select e.currency from app_public.engagements e where e.organization_id = new.organization_id and e.id = (j ->> 'engagement_id')::uuid),
      (select c.currency from app_public.client_companies c where c.organization_id = new.organization_id and c.id = (j ->> 'client_company_id')::uuid))
  end;
  if v_source like 'given%' then
    new.currency := coalesce(new.currency, v_copied, v_org);
  else
    if new.currency is not null and new.currency is distinct from coalesce(v_copied, v_org) then
      perform app_private.fail('INVALID_VALUE', format('Its currency is the %s''s (%s), not %s.', replace(v_source, '_', ' '), coalesce(v_copied, v_org), new.currency));
    end if;
    new.currency := coalesce(v_copied, v_org);
  end if;
  return new;
end
$$;

-- The client's billing currency.
alter table app_public.client_companies add column if not exists currency text;
comment on column app_public.client_companies.currency is 'The client''s billing currency (ISO 4217): new proposals and invoices for the client are in it. None: the organization''s.';
grant insert (currency), update (currency) on app_public.client_companies to :DATABASE_VISITOR;

do $$
declare
  v_table text;
  v_given boolean;
begin
  if not exists (select from pg_constraint where conrelid = 'app_public.client_companies'::regclass and conname = 'client_companies_currency_format') then
    alter table app_public.client_companies add constraint client_companies_currency_format check (currency ~ '^[A-Z]{3}$') not valid;
  end if;
  for v_table, v_given in select s.table_name, s.source like 'given%' from app_private.currency_sources s loop
    execute format('alter table app_public.%I add column if not exists currency text', v_table);
    if not exists (select from pg_constraint where conrelid = format('app_public.%I', v_table)::regclass and conname = v_table || '_currency_format') then
      -- (Not null once every row has one: migration 000046.)
      execute format('alter table app_public.%I add constraint %I check (currency is not null and currency ~ ''^[A-Z]{3}$'') not valid', v_table, v_table || '_currency_format');
    end if;
    execute format('comment on column app_public.%I.currency is %L', v_table,
      'ISO 4217 code of its amounts, fixed when it is created (sql/functions/currencies.sql).');
    execute format('revoke update (currency) on app_public.%I from :DATABASE_VISITOR', v_table);
    if v_given then
      execute format('grant insert (currency) on app_public.%I to :DATABASE_VISITOR', v_table);
    end if;
    execute format('drop trigger if exists %I on app_public.%I', 'tg_' || v_table || '__currency', v_table);
    execute format('create trigger %I before insert or update of currency on app_public.%I for each row execute function app_private.tg__document_currency()',
      'tg_' || v_table || '__currency', v_table);
  end loop;
end
$$;

-- Exchange rates into the organization's base currency.
do $$
begin
  if to_regtype('app_public.exchange_rate') is null then
    create domain app_public.exchange_rate as numeric(20,10)
      constraint exchange_rate_positive check (value > 0 and value < 1000000000);
  end if;
end
$$;
comment on domain app_public.exchange_rate is 'How much of one currency a unit of another is worth: above 0, below 10^9, ten decimals.';
insert into app_private.domain_rules (domain_name, constraint_name, code, message) values
  ('app_public.exchange_rate', 'exchange_rate_positive', 'INVALID_VALUE', 'An exchange rate must be a number above 0 and below 1,000,000,000 (with at most ten decimals).')
on conflict (domain_name, constraint_name) do update set code = excluded.code, message = excluded.message;

create table if not exists app_public.exchange_rates (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  currency text not null check (currency ~ '^[A-Z]{3}$'),
  rate app_public.exchange_rate not null,
  effective_on app_public.business_date not null default current_date,
  source text not null default 'entered' check (source in ('entered', 'imported')),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  unique (organization_id, currency, effective_on)
);
comment on table app_public.exchange_rates is 'How much of the organization''s base currency (organizations.currency) one unit of `currency` is worth, from effective_on until the next rate of that currency. Reports convert with toBaseCurrency.';
comment on column app_public.exchange_rates.source is 'entered (by hand) or imported (from a feed, through the API).';
call app_private.make_tenant_table('app_public.exchange_rates', 'rates');
call app_private.classify_columns('app_public.exchange_rates', '{"currency": "none", "source": "none"}');

-- `amount` of `currency` in the organization's base currency on `on_date` (null: no rate known).
create or replace function app_public.to_base_currency(amount numeric, currency text, on_date date default current_date) returns numeric
language sql stable
set search_path = pg_catalog
as $$
  select case
    when to_base_currency.amount is null then null
    when upper(to_base_currency.currency) = (select o.currency from app_public.organizations o where o.id = app_public.current_org_id()) then to_base_currency.amount
    else round(to_base_currency.amount * (
      select r.rate from app_public.exchange_rates r
      where r.organization_id = app_public.current_org_id() and r.currency = upper(to_base_currency.currency)
        and r.effective_on <= coalesce(to_base_currency.on_date, current_date)
      order by r.effective_on desc limit 1), 2)
  end
$$;
revoke all on function app_public.to_base_currency(numeric, text, date) from public;
grant execute on function app_public.to_base_currency(numeric, text, date) to :DATABASE_VISITOR;
comment on function app_public.to_base_currency(numeric, text, date) is 'An amount of a currency in the organization''s base currency on a date, with the latest exchange rate in force then (exchange_rates, as your permissions let you read them); null when none is known.';

-- Rows written before currencies were recorded: the organization's currency, in batches of
-- `batch` rows, each committed (called outside a transaction: migration 000045). Each filled row
-- is an audited change, like any other (its event says when its currency was recorded).
create or replace procedure app_private.fill_document_currencies(batch integer default 5000)
language plpgsql
-- (No SET clause: a procedure with one cannot commit. Every name here is schema-qualified.)
as $$
declare
  v_table text;
  v_done integer;
begin
  for v_table in select s.table_name from app_private.currency_sources s order by s.table_name loop
    loop
      execute format(
        'update app_public.%1$I t set currency = o.currency from app_public.organizations o
         where o.id = t.organization_id and (t.organization_id, t.id) in (select organization_id, id from app_public.%1$I where currency is null limit %2$s)',
        v_table, batch);
      get diagnostics v_done = row_count;
      exit when v_done = 0;
      commit;
    end loop;
  end loop;
end
$$;
revoke all on procedure app_private.fill_document_currencies(integer) from public;
--! EndIncluded functions/currencies.sql
--! Included functions/rates.sql
-- Rates and cost: what an hour is billed at and what it costs, resolved by SQL when time is
-- logged and frozen on the entry (docs/ENTITIES.md, "Rates and cost").
--
--   job_roles          the firm's roles (Designer, Senior developer): a member has one
--                      (organization_members.job_role_id), a time entry is logged under one.
--   bill_rates         the rate cards: one hourly rate for a scope (the organization, a client or
--                      an engagement) and a subject (everyone, a job role or a member), from a date
--                      (effective_from; none: since always). A later row of the same scope and
--                      subject supersedes an earlier one from its date; past entries keep theirs.
--   member_cost_rates  what an hour of a member costs the firm, from a date. Cost is confidential:
--                      its own permission area (costs.read, special: admins by default).
--   time_entry_costs   the cost rate frozen on each time entry (one row per entry, written by the
--                      entry's trigger; readable with costs.read only, so a member who reads time
--                      never reads what colleagues cost).
--
-- Resolution (app_private.resolve_bill_rate): the most specific rate in force on the entry's date
-- wins, in this order —
--   engagement: member, job role, everyone; then the engagement's own hourly_rate;
--   client:     member, job role, everyone;
--   organization: member, job role, everyone.
-- A billable entry for which none applies is refused (RATE_MISSING): time never bills at 0 by
-- omission. An explicit rate on the entry overrides the cards and needs rates.write.
-- Idempotent; re-included by later migrations.

-- The firm's job roles.
create table if not exists app_public.job_roles (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 100),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create unique index if not exists job_roles_organization_id_name_key on app_public.job_roles (organization_id, lower(btrim(name))) where deleted_at is null;
comment on table app_public.job_roles is 'The firm''s job roles (e.g. Designer, Senior developer): members hold one, time is logged under one, and rate cards may price one.';
comment on column app_public.job_roles.name is 'Unique in the organization (case and surrounding spaces ignored) among live roles.';

alter table app_public.organization_members add column if not exists job_role_id uuid;
do $$
begin
  if not exists (select from pg_constraint where conrelid = 'app_public.organization_members'::regclass and conname = 'organization_members_job_role_fkey') then
    alter table app_public.organization_members add constraint organization_members_job_role_fkey
      foreign key (organization_id, job_role_id) references app_public.job_roles (organization_id, id) not valid;
  end if;
end
$$;
-- (Its index: migration 000037, built concurrently.)
comment on column app_public.organization_members.job_role_id is 'The member''s job role: the role their time is logged under unless an entry names another (rate cards may price it).';
grant update (job_role_id) on app_public.organization_members to :DATABASE_VISITOR;

-- Rate cards.
create table if not exists app_public.bill_rates (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  client_company_id uuid,
  engagement_id uuid,
  job_role_id uuid,
  member_id uuid,
  hourly_rate app_public.money_amount not null check (hourly_rate >= 0),
  effective_from app_public.business_date,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  constraint bill_rates_one_scope check (num_nonnulls(client_company_id, engagement_id) <= 1),
  constraint bill_rates_one_subject check (num_nonnulls(job_role_id, member_id) <= 1),
  foreign key (organization_id, client_company_id) references app_public.client_companies,
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, job_role_id) references app_public.job_roles,
  foreign key (organization_id, member_id) references app_public.organization_members
);
-- One rate per scope, subject and start date among live rows; it also serves the client lookup.
create unique index if not exists bill_rates_scope_subject_from_key on app_public.bill_rates
  (organization_id, client_company_id, engagement_id, job_role_id, member_id, effective_from) nulls not distinct where deleted_at is null;
create index if not exists bill_rates_organization_id_client_company_id_idx on app_public.bill_rates (organization_id, client_company_id);
create index if not exists bill_rates_organization_id_engagement_id_idx on app_public.bill_rates (organization_id, engagement_id);
create index if not exists bill_rates_organization_id_job_role_id_idx on app_public.bill_rates (organization_id, job_role_id);
create index if not exists bill_rates_organization_id_member_id_idx on app_public.bill_rates (organization_id, member_id);
comment on table app_public.bill_rates is 'Rate cards: the hourly rate billed for a scope (the organization; a client; an engagement) and a subject (everyone; a job role; a member), from effective_from on. The most specific rate in force on a time entry''s date is frozen on it (app_private.resolve_bill_rate).';
comment on column app_public.bill_rates.client_company_id is 'The client the rate is for (with no engagement); none with no engagement either: the whole organization.';
comment on column app_public.bill_rates.engagement_id is 'The engagement the rate is for.';
comment on column app_public.bill_rates.job_role_id is 'The job role the rate prices (none with no member either: everyone).';
comment on column app_public.bill_rates.member_id is 'The member the rate prices.';
comment on column app_public.bill_rates.effective_from is 'The first day the rate applies to (none: since always); it applies until a later rate of the same scope and subject starts.';

-- Members' cost.
create table if not exists app_public.member_cost_rates (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  member_id uuid not null,
  hourly_cost app_public.money_amount not null check (hourly_cost >= 0),
  effective_from app_public.business_date,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, member_id) references app_public.organization_members
);
create unique index if not exists member_cost_rates_member_from_key on app_public.member_cost_rates
  (organization_id, member_id, effective_from) nulls not distinct where deleted_at is null;
create index if not exists member_cost_rates_organization_id_member_id_idx on app_public.member_cost_rates (organization_id, member_id);
comment on table app_public.member_cost_rates is 'What an hour of a member costs the firm (salary and overhead), from effective_from on. Confidential: costs.read (admins by default).';
comment on column app_public.member_cost_rates.effective_from is 'The first day the cost applies to (none: since always); it applies until a later one of the member starts.';

-- The cost frozen on each time entry.
create table if not exists app_public.time_entry_costs (
  organization_id uuid not null references app_public.organizations,
  id uuid not null,
  member_cost_rate_id uuid,
  hourly_cost app_public.money_amount check (hourly_cost >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, id) references app_public.time_entries on delete cascade,
  foreign key (organization_id, member_cost_rate_id) references app_public.member_cost_rates on delete set null (member_cost_rate_id)
);
create index if not exists time_entry_costs_organization_id_member_cost_rate_id_idx on app_public.time_entry_costs (organization_id, member_cost_rate_id);
comment on table app_public.time_entry_costs is E'@behavior -insert -update -delete\nThe cost of each time entry (same id as the entry): the member''s hourly cost in force on its date, frozen when it is logged (or when its member or date change). Written by the entry''s trigger; confidential (costs.read).';
comment on column app_public.time_entry_costs.hourly_cost is 'The member''s hourly cost on the entry''s date; none when no cost rate was set for them then (cost unknown, reported as such).';
comment on column app_public.time_entry_costs.member_cost_rate_id is 'The cost rate it came from.';

-- Time entries: the role worked under and where the rate came from.
alter table app_public.time_entries
  add column if not exists job_role_id uuid,
  add column if not exists rate_source text;
do $$
begin
  if not exists (select from pg_constraint where conrelid = 'app_public.time_entries'::regclass and conname = 'time_entries_job_role_fkey') then
    alter table app_public.time_entries add constraint time_entries_job_role_fkey
      foreign key (organization_id, job_role_id) references app_public.job_roles (organization_id, id) not valid;
  end if;
  if not exists (select from pg_constraint where conrelid = 'app_public.time_entries'::regclass and conname = 'time_entries_rate_source_check') then
    alter table app_public.time_entries add constraint time_entries_rate_source_check check (rate_source in (
      'engagement_member', 'engagement_role', 'engagement', 'engagement_default',
      'client_member', 'client_role', 'client',
      'organization_member', 'organization_role', 'organization',
      'entry', 'non_billable')) not valid;
  end if;
end
$$;
-- (The job role's index: migration 000036, built concurrently; the constraints above are validated
-- by migration 000038.)
comment on column app_public.time_entries.rate is 'Hourly bill rate, frozen when the entry is logged: the rate card in force on work_date (rate_source says which), or the rate given (needs rates.write). 0 for non-billable time.';
comment on column app_public.time_entries.job_role_id is 'The job role the time was worked under (by default the member''s).';
comment on column app_public.time_entries.rate_source is 'Where the rate came from: a rate card''s scope and subject (engagement_member … organization), engagement_default (the engagement''s hourly_rate), entry (given on the entry), non_billable. None for time logged before rates were resolved (migration 000035).';

call app_private.make_tenant_table('app_public.job_roles', 'rates', soft_delete_as => 'job_role');
call app_private.make_tenant_table('app_public.bill_rates', 'rates', soft_delete_as => 'bill_rate');
call app_private.make_tenant_table('app_public.member_cost_rates', 'costs', soft_delete_as => 'member_cost_rate');
call app_private.make_tenant_table('app_public.time_entry_costs', 'costs', insertable => false, updatable => false);
-- The job role is the member's to choose; rate_source is the trigger's alone.
grant insert (job_role_id), update (job_role_id) on app_public.time_entries to :DATABASE_VISITOR;

call app_private.classify_columns('app_public.job_roles', '{"name": "free_text"}');
call app_private.classify_columns('app_public.time_entries', '{"rate_source": "none"}');
call app_private.set_audit_parent('app_public.time_entry_costs', 'id', 'app_public.time_entries');
call app_private.set_audit_parent('app_public.member_cost_rates', 'member_id', 'app_public.organization_members');
call app_private.declare_record_retention('app_public.bill_rates', false, 'a price list; what was billed is on the invoices');
call app_private.declare_record_retention('app_public.member_cost_rates', false, 'internal cost, not a booking');
call app_private.declare_record_retention('app_public.time_entry_costs', false, 'internal cost of time worked, not a booking');

-- The bill rate for an hour of `member_id` (under `job_role_id`) on `engagement_id` on `on_date`:
-- the most specific rate card in force (see the top of this file), or no row.
create or replace function app_private.resolve_bill_rate(organization_id uuid, engagement_id uuid, member_id uuid, job_role_id uuid, on_date date)
returns table (hourly_rate numeric, source text, bill_rate_id uuid)
language sql stable security definer
set search_path = pg_catalog
as $$
  with e as (
    select e.client_company_id, e.hourly_rate, e.currency from app_public.engagements e
    where e.organization_id = resolve_bill_rate.organization_id and e.id = resolve_bill_rate.engagement_id
  ), candidates as (
    select r.hourly_rate, r.id, r.effective_from,
      case when r.engagement_id is not null then 'engagement' when r.client_company_id is not null then 'client' else 'organization' end
        || case when r.member_id is not null then '_member' when r.job_role_id is not null then '_role' else '' end as source,
      case when r.engagement_id is not null then 0 when r.client_company_id is not null then 4 else 8 end
        + case when r.member_id is not null then 0 when r.job_role_id is not null then 1 else 2 end as rank
    from app_public.bill_rates r
    where r.organization_id = resolve_bill_rate.organization_id and r.deleted_at is null
      -- Only cards of the engagement's currency (sql/functions/currencies.sql).
      and r.currency is not distinct from (select e.currency from e)
      and (r.effective_from is null or r.effective_from <= resolve_bill_rate.on_date)
      and (r.engagement_id = resolve_bill_rate.engagement_id
        or (r.engagement_id is null and (r.client_company_id is null or r.client_company_id = (select e.client_company_id from e))))
      and (r.member_id = resolve_bill_rate.member_id
        or (r.member_id is null and (r.job_role_id is null or r.job_role_id = resolve_bill_rate.job_role_id)))
    union all
    select e.hourly_rate, null, null, 'engagement_default', 3 from e where e.hourly_rate is not null
  )
  select c.hourly_rate, c.source, c.id from candidates c
  order by c.rank, c.effective_from desc nulls last
  limit 1
$$;
revoke all on function app_private.resolve_bill_rate(uuid, uuid, uuid, uuid, date) from public;
comment on function app_private.resolve_bill_rate(uuid, uuid, uuid, uuid, date) is 'The bill rate in force for an hour of a member (under a job role) on an engagement on a date: the most specific rate card (engagement, then client, then organization; member, then job role, then everyone; the engagement''s hourly_rate after its own cards), the latest started. No row when none applies.';

-- The member's hourly cost on a date, or no row.
create or replace function app_private.resolve_cost_rate(organization_id uuid, member_id uuid, on_date date)
returns table (hourly_cost numeric, member_cost_rate_id uuid)
language sql stable security definer
set search_path = pg_catalog
as $$
  select c.hourly_cost, c.id from app_public.member_cost_rates c
  where c.organization_id = resolve_cost_rate.organization_id and c.member_id = resolve_cost_rate.member_id and c.deleted_at is null
    and (c.effective_from is null or c.effective_from <= resolve_cost_rate.on_date)
  order by c.effective_from desc nulls last
  limit 1
$$;
revoke all on function app_private.resolve_cost_rate(uuid, uuid, date) from public;
comment on function app_private.resolve_cost_rate(uuid, uuid, date) is 'A member''s hourly cost in force on a date (the latest started cost rate); no row when none.';

-- For a form: the rate an entry would get (rates.read).
create or replace function app_public.applicable_bill_rate(engagement_id uuid, member_id uuid, work_date date default current_date, job_role_id uuid default null)
returns numeric
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_role uuid := applicable_bill_rate.job_role_id;
begin
  perform app_private.require_permission('rates.read', 'read rates');
  if not exists (select from app_public.engagements e where e.organization_id = v_org and e.id = applicable_bill_rate.engagement_id and e.deleted_at is null) then
    perform app_private.fail('NOT_FOUND', 'No such engagement in this organization.');
  end if;
  if not exists (select from app_public.organization_members m where m.organization_id = v_org and m.id = applicable_bill_rate.member_id) then
    perform app_private.fail('NOT_FOUND', 'No such member in this organization.');
  end if;
  if v_role is not null and not exists (select from app_public.job_roles r where r.organization_id = v_org and r.id = v_role and r.deleted_at is null) then
    perform app_private.fail('NOT_FOUND', 'No such job role in this organization.');
  end if;
  if v_role is null then
    select m.job_role_id into v_role from app_public.organization_members m where m.organization_id = v_org and m.id = applicable_bill_rate.member_id;
  end if;
  return (select r.hourly_rate from app_private.resolve_bill_rate(v_org, applicable_bill_rate.engagement_id, applicable_bill_rate.member_id, v_role, coalesce(applicable_bill_rate.work_date, current_date)) r);
end
$$;
revoke all on function app_public.applicable_bill_rate(uuid, uuid, date, uuid) from public;
grant execute on function app_public.applicable_bill_rate(uuid, uuid, date, uuid) to :DATABASE_VISITOR;
comment on function app_public.applicable_bill_rate(uuid, uuid, date, uuid) is 'The hourly rate a time entry of the member on the engagement on that date (under that job role; by default the member''s) would be billed at, from the rate cards; null when none applies (a billable entry would be refused). Needs rates.read; NOT_FOUND for an engagement, member or job role not in this organization.';

-- Time entries. BEFORE INSERT OR UPDATE: the job role (the member's by default) and the bill rate,
-- resolved on insert and again when what decides it changes (engagement, member, job role, date,
-- billable), unless the entry carries a rate given by hand. SECURITY DEFINER: reads rate cards and
-- engagements whatever the caller may read.
create or replace function app_private.tg__time_entry_rate() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_given boolean;
  v_rate record;
begin
  if tg_op = 'UPDATE' then
    new.rate_source := old.rate_source;
  end if;
  if tg_op = 'UPDATE' and old.invoice_id is not null then
    return new; -- invoiced: frozen (tg__time_entry_rules refuses a change)
  end if;
  if new.job_role_id is null and (tg_op = 'INSERT' or new.member_id is distinct from old.member_id) then
    new.job_role_id := (select m.job_role_id from app_public.organization_members m where m.organization_id = new.organization_id and m.id = new.member_id);
  end if;
  v_given := case when tg_op = 'INSERT' then new.rate <> 0 else new.rate is distinct from old.rate end;
  if v_given then
    new.rate_source := 'entry'; -- (rates.write: checked by tg__time_entry_rate_rules, after RLS)
    return new;
  end if;
  if tg_op = 'UPDATE' and (old.rate_source = 'entry'
      or (new.engagement_id, new.member_id, new.job_role_id, new.work_date, new.billable)
         is not distinct from (old.engagement_id, old.member_id, old.job_role_id, old.work_date, old.billable)) then
    return new;
  end if;
  if not new.billable then
    new.rate := 0;
    new.rate_source := 'non_billable';
    return new;
  end if;
  -- None applies: no source, which tg__time_entry_rate_rules refuses (RATE_MISSING) once row-level
  -- security has admitted the row (so the answer says nothing about another organization).
  select * into v_rate from app_private.resolve_bill_rate(new.organization_id, new.engagement_id, new.member_id, new.job_role_id, new.work_date);
  new.rate := coalesce(v_rate.hourly_rate, 0);
  new.rate_source := v_rate.source;
  return new;
end
$$;
drop trigger if exists tg_time_entries__rate on app_public.time_entries;
create trigger tg_time_entries__rate before insert or update on app_public.time_entries
  for each row execute function app_private.tg__time_entry_rate();

-- AFTER INSERT OR UPDATE (row-level security has admitted the row): a billable entry the cards do
-- not price is refused (RATE_MISSING) when it is logged or what decides its rate changes; a rate
-- by hand needs rates.write (the worker and the database owner's own sessions, without a user,
-- may: imports, jobs).
create or replace function app_private.tg__time_entry_rate_rules() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
  if new.rate_source = 'entry' and (tg_op = 'INSERT' or new.rate is distinct from old.rate)
     and app_public.current_user_id() is not null and not app_public.has_permission('rates.write') then
    perform app_private.fail('NOT_PERMITTED', 'Setting a time entry''s rate by hand needs rates.write; leave it out to bill the rate card''s.');
  end if;
  if new.billable and new.rate_source is null
     and (tg_op = 'INSERT' or (new.engagement_id, new.member_id, new.job_role_id, new.work_date, new.billable)
                               is distinct from (old.engagement_id, old.member_id, old.job_role_id, old.work_date, old.billable)) then
    perform app_private.fail('RATE_MISSING', format(
      'No bill rate applies to this billable time on %s: set the engagement''s hourly rate or a rate card (billRates) for the engagement, its client or the organization, or log the time as non-billable.',
      to_char(new.work_date, 'YYYY-MM-DD')));
  end if;
  return null;
end
$$;
drop trigger if exists tg_time_entries__rate_rules on app_public.time_entries;
create trigger tg_time_entries__rate_rules after insert or update on app_public.time_entries
  for each row execute function app_private.tg__time_entry_rate_rules();

-- AFTER INSERT OR UPDATE OF member_id, work_date: the entry's cost, frozen (see time_entry_costs).
create or replace function app_private.tg__time_entry_cost() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_cost record;
begin
  if tg_op = 'UPDATE' and (new.member_id, new.work_date) is not distinct from (old.member_id, old.work_date) then
    return null;
  end if;
  select * into v_cost from app_private.resolve_cost_rate(new.organization_id, new.member_id, new.work_date);
  insert into app_public.time_entry_costs as c (organization_id, id, member_cost_rate_id, hourly_cost)
  values (new.organization_id, new.id, v_cost.member_cost_rate_id, v_cost.hourly_cost)
  on conflict (organization_id, id) do update
    set member_cost_rate_id = excluded.member_cost_rate_id, hourly_cost = excluded.hourly_cost
    where (c.member_cost_rate_id, c.hourly_cost) is distinct from (excluded.member_cost_rate_id, excluded.hourly_cost);
  return null;
end
$$;
drop trigger if exists tg_time_entries__cost on app_public.time_entries;
create trigger tg_time_entries__cost after insert or update of member_id, work_date on app_public.time_entries
  for each row execute function app_private.tg__time_entry_cost();

-- In the API: TimeEntry.cost and TimeEntryCost.timeEntry.
comment on constraint time_entry_costs_organization_id_id_fkey on app_public.time_entry_costs is E'@foreignSingleFieldName cost\n@fieldName timeEntry';
--! EndIncluded functions/rates.sql
--! Included functions/books.sql
-- The books add up: every monetary invariant of the documents, re-checked over the stored rows
-- (of one organization, or all). The triggers and constraints enforce each as it is written;
-- this report proves the stored books still satisfy them all — after a restore, an import, a
-- hand-made repair — and names each violation. `npm run doctor` (group books) fails on any row;
-- tests/books.test.ts runs it after random concurrent invoicing, payments, credits, refunds,
-- write-offs and cancellations. Run by hand as the owner:
--   select * from app_private.books_violations();
-- It reads every invoice, line, payment, refund and credit note of its scope (sequential scans
-- on a whole database: a report, not a request).
-- Idempotent; re-included by later migrations.

create or replace function app_private.books_violations(organization_id uuid default null)
returns table (organization_id uuid, rule text, document text, document_id uuid, detail text)
language sql stable
set search_path = pg_catalog
as $$
  with org as (select books_violations.organization_id as id),
  invoice_sums as (
    select i.organization_id, i.id, i.status, i.number, i.subtotal, i.tax_amount, i.total, i.amount_paid, i.amount_credited, i.balance,
      (select coalesce(sum(l.amount), 0) from app_public.invoice_line_items l where l.organization_id = i.organization_id and l.invoice_id = i.id) as lines,
      (select coalesce(sum(p.amount), 0) from app_public.payments p where p.organization_id = i.organization_id and p.invoice_id = i.id) as paid,
      (select coalesce(sum(r.amount), 0) from app_public.refunds r where r.organization_id = i.organization_id and r.invoice_id = i.id) as refunded,
      (select coalesce(sum(c.total), 0) from app_public.credit_notes c where c.organization_id = i.organization_id and c.invoice_id = i.id) as credited,
      (select coalesce(sum(c.subtotal), 0) from app_public.credit_notes c where c.organization_id = i.organization_id and c.invoice_id = i.id) as credited_net,
      (select coalesce(sum(c.tax_amount), 0) from app_public.credit_notes c where c.organization_id = i.organization_id and c.invoice_id = i.id) as credited_tax
    from app_public.invoices i
    where (select id from org) is null or i.organization_id = (select id from org)
  ),
  invoice_rules as (
    select s.organization_id, v.rule, s.id, v.detail
    from invoice_sums s
    cross join lateral (values
      ('invoice_subtotal', s.subtotal <> s.lines, format('subtotal %s, lines add up to %s', s.subtotal, s.lines)),
      ('invoice_total', s.total <> s.subtotal + s.tax_amount, format('total %s, subtotal %s + tax %s', s.total, s.subtotal, s.tax_amount)),
      ('invoice_amount_paid', s.amount_paid <> s.paid - s.refunded, format('amount_paid %s, payments %s less refunds %s', s.amount_paid, s.paid, s.refunded)),
      ('invoice_amount_credited', s.amount_credited <> s.credited, format('amount_credited %s, credit notes add up to %s', s.amount_credited, s.credited)),
      ('invoice_balance', s.balance <> s.total - s.amount_paid - s.amount_credited, format('balance %s, total %s − paid %s − credited %s', s.balance, s.total, s.amount_paid, s.amount_credited)),
      ('invoice_paid_within_total', s.amount_paid < 0 or s.amount_paid > s.total, format('amount_paid %s of total %s', s.amount_paid, s.total)),
      ('invoice_credited_within_charged', s.credited_net > s.subtotal or s.credited_tax > s.tax_amount, format('credited %s net and %s tax of %s and %s', s.credited_net, s.credited_tax, s.subtotal, s.tax_amount)),
      ('invoice_status_matches_balance',
        (s.status = 'paid' and s.balance > 0) or (s.status in ('sent', 'viewed', 'overdue') and s.balance <= 0),
        format('%s with balance %s', s.status, s.balance)),
      ('invoice_money_only_when_issued',
        s.status in ('draft', 'cancelled') and (s.paid > 0 or s.credited > 0 or s.refunded > 0),
        format('%s with payments %s, credits %s, refunds %s', s.status, s.paid, s.credited, s.refunded)),
      ('invoice_numbered_when_issued',
        (s.status = 'draft' and s.number is not null) or (s.status not in ('draft', 'cancelled') and s.number is null),
        format('%s numbered %s', s.status, coalesce(s.number::text, 'none')))
    ) as v(rule, broken, detail)
    where v.broken
  ),
  -- Gapless series: 1 … n, each once, and the counter not behind the highest number.
  series as (
    select i.organization_id, 'invoice_numbers_gapless' as rule, count(i.number) as n, count(distinct i.number) as distinct_n, max(i.number) as top,
      (select c.last_number from app_private.invoice_counters c where c.organization_id = i.organization_id) as counter
    from app_public.invoices i
    where i.number is not null and ((select id from org) is null or i.organization_id = (select id from org))
    group by i.organization_id
    union all
    select n.organization_id, 'credit_note_numbers_gapless', count(n.number), count(distinct n.number), max(n.number),
      (select c.last_number from app_private.credit_note_counters c where c.organization_id = n.organization_id)
    from app_public.credit_notes n
    where n.number is not null and ((select id from org) is null or n.organization_id = (select id from org))
    group by n.organization_id
  ),
  series_rules as (
    select s.organization_id, s.rule, null::uuid as id,
      format('%s numbers, %s distinct, highest %s, counter %s', s.n, s.distinct_n, s.top, coalesce(s.counter::text, 'none')) as detail
    from series s
    where s.n <> s.top or s.distinct_n <> s.n or coalesce(s.counter, 0) < s.top
  ),
  proposal_rules as (
    select p.organization_id, 'proposal_subtotal' as rule, p.id, format('subtotal %s, lines add up to %s', p.subtotal, l.lines) as detail
    from app_public.proposals p
    cross join lateral (select coalesce(sum(l.amount), 0) as lines from app_public.proposal_line_items l where l.organization_id = p.organization_id and l.proposal_id = p.id) l
    where p.subtotal <> l.lines and ((select id from org) is null or p.organization_id = (select id from org))
  ),
  -- A document's parts are in its currency.
  currency_rules as (
    select x.organization_id, 'currency_matches_invoice' as rule, x.id, format('%s in %s, its invoice in %s', x.kind, x.currency, i.currency) as detail
    from (
      select p.organization_id, p.id, p.invoice_id, p.currency, 'payment' as kind from app_public.payments p
      union all
      select c.organization_id, c.id, c.invoice_id, c.currency, 'credit note' from app_public.credit_notes c
      union all
      select r.organization_id, r.id, r.invoice_id, r.currency, 'refund' from app_public.refunds r
    ) x
    join app_public.invoices i on i.organization_id = x.organization_id and i.id = x.invoice_id
    where x.currency is distinct from i.currency and ((select id from org) is null or x.organization_id = (select id from org))
  ),
  time_rules as (
    select t.organization_id, 'time_on_cancelled_invoice' as rule, t.id, format('time entry on cancelled invoice %s', t.invoice_id) as detail
    from app_public.time_entries t
    join app_public.invoices i on i.organization_id = t.organization_id and i.id = t.invoice_id
    where i.status = 'cancelled' and ((select id from org) is null or t.organization_id = (select id from org))
  )
  select r.organization_id, r.rule, 'invoices', r.id, r.detail from invoice_rules r
  union all
  select r.organization_id, r.rule, case when r.rule like 'invoice%' then 'invoices' else 'credit_notes' end, r.id, r.detail from series_rules r
  union all
  select r.organization_id, r.rule, 'proposals', r.id, r.detail from proposal_rules r
  union all
  select r.organization_id, r.rule, 'invoices', r.id, r.detail from currency_rules r
  union all
  select r.organization_id, r.rule, 'time_entries', r.id, r.detail from time_rules r
  order by 1, 2, 4
$$;
revoke all on function app_private.books_violations(uuid) from public;
comment on function app_private.books_violations(uuid) is 'Every monetary invariant broken in the stored books (of one organization, or all): subtotals (invoices and proposals), totals, amount paid, amount credited, balance, statuses, gapless invoice and credit note numbers, payments, credits and refunds in their invoice''s currency, time on cancelled invoices. No rows: the books add up. For the owner (doctor, tests).';
--! EndIncluded functions/books.sql
