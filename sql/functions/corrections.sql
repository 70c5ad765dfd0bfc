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
  new.balance := new.total - new.amount_paid - new.amount_credited; -- total: tg_invoices__amounts (sql/functions/taxes.sql), which runs first
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

-- The rate a credit's tax is figured at: the invoice's tax_rate, or, when its lines carry tax
-- codes (sql/functions/taxes.sql), its tax over its subtotal.
create or replace function app_private.invoice_effective_tax_rate(v app_public.invoices) returns numeric
language sql immutable
set search_path = pg_catalog
as $$
  select case
    when v.tax_amount = round(v.subtotal * v.tax_rate / 100, 2) or v.subtotal <= 0 then v.tax_rate::numeric
    else v.tax_amount * 100 / v.subtotal
  end
$$;
revoke all on function app_private.invoice_effective_tax_rate(app_public.invoices) from public;

-- Issue a credit note against an invoice (invoices.write): `amount` is the net amount credited,
-- tax added at the invoice's (effective) rate; none credits everything not yet credited.
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
  v_tax := case when v_net = v_net_left then v_tax_left else least(round(v_net * app_private.invoice_effective_tax_rate(v) / 100, 2), greatest(v_tax_left, 0)) end;
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
  -- The balance split into net and tax at the invoice's (effective) rate, within what is left of each.
  v_net := least(round(v.balance * 100 / (100 + app_private.invoice_effective_tax_rate(v)), 2), v_net_left);
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
