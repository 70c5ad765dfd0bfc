--! Previous: sha1:ca6c67c7ab8c2ea1dfc12c38f7e322a99086af44
--! Hash: sha1:320fbda9dbc4f5d4c72af61d1d639840fce9a2d8
--! Message: Currencies: optional in the API (the trigger fills it), classified; invoices refuse a null balance; the books report null-safe

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '60s';

-- Currencies: the API takes a document's currency as optional (@hasDefault: the trigger fills
-- it); currency columns classified; the organization's currency described as the base currency.
-- Invoices: a null balance refused on its own (validated by the next migration); the books report
-- null-safe.
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
--! EndIncluded functions/currencies.sql
--! Included functions/corrections.sql
-- Corrections of issued invoices: credit notes, write-offs and refunds (docs/ENTITIES.md,
-- "Corrections"). Nothing issued is ever edited or deleted: a correction is a new document.
--
--   credit_notes  kind 'credit': a credit note sent to the client, numbered 1, 2, 3, … per
--                 organization in its own series (gapless, as invoices: the counter row is locked
--                 until the issuing transaction ends); kind 'write_off': the open balance given
--                 up (bad debt), internal, not numbered. Net amount, tax at the invoice's rate,
--                 total. Insert only, through issue_credit_note / write_off_invoice.
--   refunds       money paid back to the client when credits leave the invoice overpaid
--                 (a negative balance). Insert only, through record_refund.
--
-- On the invoice, kept by the triggers here and checked by constraints:
--   amount_credited = Σ credit_notes.total (credits and write-offs), never above the total;
--   amount_paid     = Σ payments − Σ refunds (sql/functions/billing.sql);
--   balance         = total − amount_paid − amount_credited (negative: the firm owes the client).
-- A credit or write-off that clears the balance of a sent, viewed or overdue invoice marks it paid
-- (settled); an invoice with credits cannot be cancelled. Each function locks the invoice first
-- (lock order: sql/functions/lock_order.sql), so concurrent corrections and payments of one
-- invoice apply one at a time against what the previous one left.
-- Idempotent; re-included by later migrations.

-- The invoice's credited amount and its balance, kept by triggers. (amount_credited is a plain
-- numeric(14,2) bounded by the table's check, not the money_amount domain: adding a column of a
-- domain with rules rewrites the whole table, a plain one with a constant default does not;
-- sql/checks/value_columns_use_domains.sql lists it.)
alter table app_public.invoices add column if not exists amount_credited numeric(14,2) not null default 0;
do $$
begin
  -- balance was a generated column (total − amount_paid): now kept by tg_invoices__balance and
  -- checked by invoices_balance_adds_up. Dropping the expression keeps the stored values and
  -- rewrites nothing.
  if (select a.attgenerated from pg_attribute a where a.attrelid = 'app_public.invoices'::regclass and a.attname = 'balance') = 's' then
    alter table app_public.invoices alter column balance drop expression;
  end if;
  if not exists (select from pg_constraint where conrelid = 'app_public.invoices'::regclass and conname = 'invoices_amount_credited_range') then
    alter table app_public.invoices add constraint invoices_amount_credited_range
      check (amount_credited >= 0 and amount_credited <= total and abs(amount_credited) < 1000000000000) not valid;
  end if;
  -- (A null balance would pass the check above: refused on its own. Validated by migration 000049.)
  if not exists (select from pg_constraint where conrelid = 'app_public.invoices'::regclass and conname = 'invoices_balance_present') then
    alter table app_public.invoices add constraint invoices_balance_present check (balance is not null) not valid;
  end if;
  if not exists (select from pg_constraint where conrelid = 'app_public.invoices'::regclass and conname = 'invoices_balance_adds_up') then
    alter table app_public.invoices add constraint invoices_balance_adds_up
      check (balance = total - amount_paid - amount_credited) not valid;
  end if;
end
$$;
comment on column app_public.invoices.amount_credited is 'Sum of its credit notes and write-offs (kept by trigger); never above the total.';
comment on column app_public.invoices.amount_paid is 'Sum of its payments less its refunds (kept by trigger).';
comment on column app_public.invoices.balance is 'total − amount_paid − amount_credited (kept by trigger, checked): what the client still owes; negative when credits leave the invoice overpaid (refund it with recordRefund).';

create or replace function app_private.tg__invoice_balance() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
  new.balance := new.subtotal + round(new.subtotal * new.tax_rate / 100, 2) - new.amount_paid - new.amount_credited;
  return new;
end
$$;
drop trigger if exists tg_invoices__balance on app_public.invoices;
create trigger tg_invoices__balance before insert or update on app_public.invoices
  for each row execute function app_private.tg__invoice_balance();

-- Credit notes and write-offs.
create table if not exists app_private.credit_note_counters (
  organization_id uuid primary key references app_public.organizations on delete cascade,
  last_number integer not null check (last_number >= 0)
);
call app_private.force_rls('app_private.credit_note_counters');
comment on table app_private.credit_note_counters is 'Last credit note number per organization (app_private.next_credit_note_number).';

create or replace function app_private.next_credit_note_number(organization_id uuid) returns integer
language sql volatile
set search_path = pg_catalog
as $$
  insert into app_private.credit_note_counters as c (organization_id, last_number)
  values (next_credit_note_number.organization_id, 1)
  on conflict on constraint credit_note_counters_pkey do update set last_number = c.last_number + 1
  returning c.last_number
$$;
revoke all on function app_private.next_credit_note_number(uuid) from public;
comment on function app_private.next_credit_note_number(uuid) is 'The next credit note number of an organization (1, 2, 3, …): the counter row stays locked until the transaction ends, so numbers have neither gaps nor duplicates.';

create table if not exists app_public.credit_notes (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  invoice_id uuid not null,
  kind text not null default 'credit' check (kind in ('credit', 'write_off')),
  number integer check (number > 0),
  issued_on app_public.business_date not null default current_date,
  subtotal app_public.money_amount not null check (subtotal >= 0),
  tax_amount app_public.money_amount not null check (tax_amount >= 0),
  total app_public.money_amount generated always as (subtotal + tax_amount) stored,
  reason text check (length(reason) <= 2000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  unique (organization_id, number),
  constraint credit_notes_numbered_credits check ((kind = 'credit') = (number is not null)),
  constraint credit_notes_not_empty check (subtotal + tax_amount > 0),
  foreign key (organization_id, invoice_id) references app_public.invoices
);
create index if not exists credit_notes_organization_id_invoice_id_idx on app_public.credit_notes (organization_id, invoice_id);
comment on table app_public.credit_notes is E'@behavior -insert -update -delete\nCorrections of an issued invoice, never edited or deleted: credit notes (kind credit, numbered in their own series, sent to the client) and write-offs (kind write_off: the open balance given up, internal). Issued by issueCreditNote and writeOffInvoice; their totals add up to the invoice''s amount_credited.';
comment on column app_public.credit_notes.number is 'Credit notes only: 1, 2, 3, … per organization, without gaps or duplicates (a series of its own, apart from invoices).';
comment on column app_public.credit_notes.subtotal is 'The net amount credited (before tax).';
comment on column app_public.credit_notes.tax_amount is 'Tax credited, at the invoice''s rate; the credit that uses up the invoice credits exactly the tax left, so crediting an invoice in full nets it to zero.';

create table if not exists app_public.refunds (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  invoice_id uuid not null,
  amount app_public.money_amount not null check (amount > 0),
  refunded_on app_public.business_date not null default current_date,
  method app_public.payment_method not null default 'bank_transfer',
  reference text check (length(reference) <= 200),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, invoice_id) references app_public.invoices
);
create index if not exists refunds_organization_id_invoice_id_idx on app_public.refunds (organization_id, invoice_id);
comment on table app_public.refunds is E'@behavior -insert -update -delete\nMoney paid back to a client for an invoice that credits left overpaid (negative balance); never edited or deleted. Recorded by recordRefund; the invoice''s amount_paid is its payments less its refunds.';

call app_private.make_tenant_table('app_public.credit_notes', 'invoices', insertable => false, updatable => false,
  portal_read => $p$kind = 'credit' and exists (select from app_public.invoices i where i.organization_id = credit_notes.organization_id and i.id = credit_notes.invoice_id)$p$);
call app_private.make_tenant_table('app_public.refunds', 'invoices', insertable => false, updatable => false,
  portal_read => $p$exists (select from app_public.invoices i where i.organization_id = refunds.organization_id and i.id = refunds.invoice_id)$p$);
call app_private.classify_columns('app_public.credit_notes', '{"kind": "none", "reason": "free_text"}');
call app_private.classify_columns('app_public.refunds', '{"reference": "free_text"}');
call app_private.set_audit_parent('app_public.credit_notes', 'invoice_id', 'app_public.invoices');
call app_private.set_audit_parent('app_public.refunds', 'invoice_id', 'app_public.invoices');
call app_private.declare_record_retention('app_public.credit_notes', true, 'corrections of issued invoices: the books');
call app_private.declare_record_retention('app_public.refunds', true, 'money paid back to clients');
-- A credit note or refund however inserted locks its invoice first (lock order).
call app_private.attach_parent_lock('app_public.credit_notes', 'app_public.invoices', 'invoice_id');
call app_private.attach_parent_lock('app_public.refunds', 'app_public.invoices', 'invoice_id');

-- AFTER INSERT on credit_notes: the invoice must be issued (sent, viewed, overdue or paid:
-- NOT_CREDITABLE); credits never exceed what was invoiced, net or tax (CREDIT_EXCEEDS_INVOICE),
-- nor a write-off the open balance; amount_credited grows, and clearing the balance of an open
-- invoice marks it paid.
create or replace function app_private.tg__credit_note_applied() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
  v_credited_net numeric;
  v_credited_tax numeric;
  v_balance numeric;
begin
  select i.* into v from app_public.invoices i
  where i.organization_id = new.organization_id and i.id = new.invoice_id
  for update;
  if v.status not in ('sent', 'viewed', 'overdue', 'paid') or v.deleted_at is not null then
    perform app_private.fail('NOT_CREDITABLE', format('An invoice that is %s cannot be credited.', case when v.deleted_at is null then v.status::text else 'deleted' end));
  end if;
  select coalesce(sum(c.subtotal), 0), coalesce(sum(c.tax_amount), 0) into v_credited_net, v_credited_tax
  from app_public.credit_notes c where c.organization_id = new.organization_id and c.invoice_id = new.invoice_id;
  if v_credited_net > v.subtotal or v_credited_tax > v.tax_amount then
    perform app_private.fail('CREDIT_EXCEEDS_INVOICE', format('Credits of %s (tax %s) would exceed the invoice''s %s (tax %s).', v_credited_net, v_credited_tax, v.subtotal, v.tax_amount));
  end if;
  if new.kind = 'write_off' and new.subtotal + new.tax_amount > v.balance then
    perform app_private.fail('CREDIT_EXCEEDS_INVOICE', format('A write-off of %s is more than the open balance of %s.', new.subtotal + new.tax_amount, v.balance));
  end if;
  v_balance := v.balance - (new.subtotal + new.tax_amount);
  update app_public.invoices i
  set amount_credited = i.amount_credited + new.subtotal + new.tax_amount,
      status = case when v_balance <= 0 and i.status in ('sent', 'viewed', 'overdue') then 'paid' else i.status end
  where i.organization_id = v.organization_id and i.id = v.id;
  return null;
end
$$;
drop trigger if exists tg_credit_notes__applied on app_public.credit_notes;
create trigger tg_credit_notes__applied after insert on app_public.credit_notes
  for each row execute function app_private.tg__credit_note_applied();

-- AFTER INSERT on refunds: only what credits left overpaid is paid back (REFUND_EXCEEDS_CREDIT);
-- amount_paid shrinks.
create or replace function app_private.tg__refund_applied() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  select i.* into v from app_public.invoices i
  where i.organization_id = new.organization_id and i.id = new.invoice_id
  for update;
  if new.amount > -v.balance then
    perform app_private.fail('REFUND_EXCEEDS_CREDIT', format('A refund of %s is more than the %s the client is owed on this invoice.', new.amount, greatest(-v.balance, 0)));
  end if;
  update app_public.invoices i set amount_paid = i.amount_paid - new.amount
  where i.organization_id = v.organization_id and i.id = v.id;
  return null;
end
$$;
drop trigger if exists tg_refunds__applied on app_public.refunds;
create trigger tg_refunds__applied after insert on app_public.refunds
  for each row execute function app_private.tg__refund_applied();

-- The invoice of the current organization, locked (lock order), or NOT_FOUND.
create or replace function app_private.lock_invoice(invoice_id uuid) returns app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  select i.* into v from app_public.invoices i
  where i.organization_id = app_public.current_org_id() and i.id = lock_invoice.invoice_id
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such invoice in this organization.');
  end if;
  return v;
end
$$;
revoke all on function app_private.lock_invoice(uuid) from public;

-- Issue a credit note against an invoice (invoices.write): `amount` is the net amount credited,
-- tax added at the invoice's rate; none credits everything not yet credited.
create or replace function app_public.issue_credit_note(invoice_id uuid, amount numeric default null, reason text default null, issued_on date default current_date) returns app_public.credit_notes
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
  v_net_left numeric;
  v_tax_left numeric;
  v_net numeric;
  v_tax numeric;
  v_note app_public.credit_notes;
begin
  perform app_private.require_permission('invoices.write', 'issue a credit note');
  v := app_private.lock_invoice(issue_credit_note.invoice_id);
  select v.subtotal - coalesce(sum(c.subtotal), 0), v.tax_amount - coalesce(sum(c.tax_amount), 0) into v_net_left, v_tax_left
  from app_public.credit_notes c where c.organization_id = v.organization_id and c.invoice_id = v.id;
  v_net := coalesce(issue_credit_note.amount, v_net_left);
  if v_net <= 0 then
    perform app_private.fail('INVALID_VALUE', 'A credit note credits an amount above zero.');
  end if;
  -- The last credit takes exactly the tax left, so a fully credited invoice nets to zero.
  v_tax := case when v_net = v_net_left then v_tax_left else least(round(v_net * v.tax_rate / 100, 2), greatest(v_tax_left, 0)) end;
  insert into app_public.credit_notes (organization_id, invoice_id, kind, number, issued_on, subtotal, tax_amount, reason)
  -- (A refused credit note gives its number back: the counter's update rolls back with it.)
  values (v.organization_id, v.id, 'credit', app_private.next_credit_note_number(v.organization_id),
    coalesce(issue_credit_note.issued_on, current_date), v_net, v_tax, nullif(btrim(issue_credit_note.reason), ''))
  returning * into v_note;
  return v_note;
end
$$;
revoke all on function app_public.issue_credit_note(uuid, numeric, text, date) from public;
grant execute on function app_public.issue_credit_note(uuid, numeric, text, date) to :DATABASE_VISITOR;
comment on function app_public.issue_credit_note(uuid, numeric, text, date) is 'Issues a credit note against a sent, viewed, overdue or paid invoice (invoices.write): amount is the net amount credited (tax added at the invoice''s rate); without it, everything not yet credited. Numbered in the credit notes'' own series. Credits never exceed the invoice (CREDIT_EXCEEDS_INVOICE); clearing the balance marks an open invoice paid; a negative balance is refunded with recordRefund.';

-- Write off an invoice's open balance (invoices.write): bad debt, given up.
create or replace function app_public.write_off_invoice(invoice_id uuid, reason text default null) returns app_public.credit_notes
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
  v_net_left numeric;
  v_tax_left numeric;
  v_net numeric;
  v_note app_public.credit_notes;
begin
  perform app_private.require_permission('invoices.write', 'write off an invoice');
  v := app_private.lock_invoice(write_off_invoice.invoice_id);
  if v.balance <= 0 then
    perform app_private.fail('INVALID_VALUE', 'The invoice has no open balance to write off.');
  end if;
  select v.subtotal - coalesce(sum(c.subtotal), 0), v.tax_amount - coalesce(sum(c.tax_amount), 0) into v_net_left, v_tax_left
  from app_public.credit_notes c where c.organization_id = v.organization_id and c.invoice_id = v.id;
  -- The balance split into net and tax at the invoice's rate, within what is left of each.
  v_net := least(round(v.balance * 100 / (100 + v.tax_rate), 2), v_net_left);
  insert into app_public.credit_notes (organization_id, invoice_id, kind, issued_on, subtotal, tax_amount, reason)
  values (v.organization_id, v.id, 'write_off', current_date, v_net, least(v.balance - v_net, greatest(v_tax_left, 0)), nullif(btrim(write_off_invoice.reason), ''))
  returning * into v_note;
  return v_note;
end
$$;
revoke all on function app_public.write_off_invoice(uuid, text) from public;
grant execute on function app_public.write_off_invoice(uuid, text) to :DATABASE_VISITOR;
comment on function app_public.write_off_invoice(uuid, text) is 'Writes off the open balance of a sent, viewed or overdue invoice (invoices.write): bad debt, recorded as a credit of kind write_off (not numbered, not shown in the client portal); the invoice is then settled (paid).';

-- Pay money back to the client (invoices.write): at most what credits left overpaid.
create or replace function app_public.record_refund(invoice_id uuid, amount numeric, refunded_on date default current_date, method app_public.payment_method default 'bank_transfer', reference text default null) returns app_public.refunds
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
  v_refund app_public.refunds;
begin
  perform app_private.require_permission('invoices.write', 'record a refund');
  v := app_private.lock_invoice(record_refund.invoice_id);
  insert into app_public.refunds (organization_id, invoice_id, amount, refunded_on, method, reference)
  values (v.organization_id, v.id, record_refund.amount, coalesce(record_refund.refunded_on, current_date),
    coalesce(record_refund.method, 'bank_transfer'), nullif(btrim(record_refund.reference), ''))
  returning * into v_refund;
  return v_refund;
end
$$;
revoke all on function app_public.record_refund(uuid, numeric, date, app_public.payment_method, text) from public;
grant execute on function app_public.record_refund(uuid, numeric, date, app_public.payment_method, text) to :DATABASE_VISITOR;
comment on function app_public.record_refund(uuid, numeric, date, app_public.payment_method, text) is 'Records money paid back to the client for an invoice that credits left overpaid (invoices.write); at most what the client is owed (REFUND_EXCEEDS_CREDIT). The invoice''s amount_paid shrinks by it.';
--! EndIncluded functions/corrections.sql
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
      ('invoice_subtotal', s.subtotal is distinct from s.lines, format('subtotal %s, lines add up to %s', s.subtotal, s.lines)),
      ('invoice_total', s.total is distinct from s.subtotal + s.tax_amount, format('total %s, subtotal %s + tax %s', s.total, s.subtotal, s.tax_amount)),
      ('invoice_amount_paid', s.amount_paid is distinct from s.paid - s.refunded, format('amount_paid %s, payments %s less refunds %s', s.amount_paid, s.paid, s.refunded)),
      ('invoice_amount_credited', s.amount_credited is distinct from s.credited, format('amount_credited %s, credit notes add up to %s', s.amount_credited, s.credited)),
      ('invoice_balance', s.balance is distinct from s.total - s.amount_paid - s.amount_credited, format('balance %s, total %s − paid %s − credited %s', s.balance, s.total, s.amount_paid, s.amount_credited)),
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
    where p.subtotal is distinct from l.lines and ((select id from org) is null or p.organization_id = (select id from org))
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
