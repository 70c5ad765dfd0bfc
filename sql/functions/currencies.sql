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
--     expenses                 given, or the engagement's, or the organization's (registered by
--                              sql/functions/expenses.sql)
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
comment on column app_public.organizations.currency is 'The base currency (ISO 4217): new documents default to it, reports convert into it. Changing it relabels no document: each keeps its own currency.';
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
    -- (@hasDefault: the API takes it as optional; the trigger fills it.)
    execute format('comment on column app_public.%I.currency is %L', v_table,
      E'@hasDefault\nISO 4217 code of its amounts, fixed when it is created' || case when v_given then ' (given, or as documented in sql/functions/currencies.sql).' else ' (copied, see sql/functions/currencies.sql).' end);
    call app_private.classify_columns(format('app_public.%I', v_table)::regclass, '{"currency": "none"}');
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

call app_private.classify_columns('app_public.client_companies', '{"currency": "none"}');

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
