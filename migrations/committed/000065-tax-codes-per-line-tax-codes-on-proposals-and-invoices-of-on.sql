--! Previous: sha1:a1aba1cee31b21fdb139aefa505e4506c09f5f95
--! Hash: sha1:afd03ba9868411e184a9443fc41628afcf2530cc
--! Message: Tax codes: per-line tax codes on proposals and invoices, of one or more taxes (compound or not), a client's code and the organization's default for lines given none; the document's tax per code rounded on each code's lines, its tax and total kept by trigger; a code a sent document uses cannot change (TAX_CODE_IN_USE); credit notes at the effective rate and shown per code; documents created whole take a code per line

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
set local statement_timeout = '60s';
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
  ('CREDIT_EXCEEDS_INVOICE', 'AT465', 422, 'Credits cannot exceed what the invoice charged (net or tax), nor a write-off its open balance.'),
  ('REFUND_EXCEEDS_CREDIT', 'AT466', 422, 'A refund cannot be more than credits left the client overpaid on the invoice (its negative balance).'),
  ('BUDGET_CAP_EXCEEDED', 'AT468', 422, 'Sending the invoice would bill more than a capped budget of its engagement allows (sent invoices net of credit notes); lower the invoice or raise the cap.'),
  ('TAX_CODE_IN_USE', 'AT469', 409, 'A sent invoice uses this tax code, so its code, name and taxes cannot change; create a new code and archive this one.'),
  ('NOT_CREDITABLE', 'AT467', 409, 'Only a sent, viewed, overdue or paid invoice can be credited.'),
  ('RATE_MISSING', 'AT464', 422, 'No bill rate applies to this billable time: set the engagement''s hourly rate or a rate card for it, its client or the organization, or log the time as non-billable.'),
  ('INVALID_EVENT_TYPE', 'AT470', 422, 'A webhook endpoint names an event type that does not exist (see webhookEventTypes).'),
  ('NOT_RETRYABLE', 'AT471', 409, 'Only failed or cancelled deliveries of an enabled endpoint, whose payload is still kept, can be sent again.'),
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
--! EndIncluded functions/corrections.sql
--! Included functions/taxes.sql
-- Tax codes: per-line tax on proposals and invoices, several taxes on one line where a country
-- needs it (compound or not), and the document's tax totals per code.
--
--   tax_codes             a firm's codes ("VAT20", "GST+QST", "EXEMPT"): a code and a name;
--                         archived codes stay on the documents that used them and cannot be
--                         chosen again.
--   tax_code_components   a code's taxes, applied in `position` order: a rate (up to 4 decimals:
--                         9.975%) on the line amounts of the code, or, when `compound`, on those
--                         amounts plus the taxes before it (e.g. a provincial tax on the federal
--                         one). A code without components is a 0% code (exempt, zero-rated,
--                         reverse charge).
--   <lines>.tax_code_id   the line's code (proposal_line_items, invoice_line_items). A line
--                         given none takes its client's code (client_companies.tax_code_id) or
--                         the organization's default (tax_codes.is_default), unless its document
--                         has a tax rate of its own; a line without a code is taxed at its
--                         document's `tax_rate`, as before tax codes existed.
--
-- A document's tax (app_private.document_tax_parts): per code, its lines' amounts summed
-- (taxable), each component rounded to cents on that sum (the tax of one code is computed once
-- per document, not per line, so it never drifts from the rate by a rounding cent per line); the
-- rest of the subtotal (the lines without a code) at the document's rate, likewise. Its
-- tax_amount is their sum and its total subtotal + tax_amount, both kept by the BEFORE trigger
-- tg_<documents>__amounts (for invoices before tg_invoices__balance, which reads the total:
-- triggers fire in name order), and <Document>.taxTotals lists them per code for the document.
--
-- A sent document never changes: its lines are frozen (NOT_EDITABLE, sql/functions/line_items.sql),
-- and so are the code, name and components of a code that a sent proposal or invoice uses
-- (TAX_CODE_IN_USE: create a new code and archive the old one). Changing a code that drafts use
-- recomputes them.
-- Idempotent; re-included by later migrations.

do $$
begin
  if to_regtype('app_public.tax_percentage') is null then
    create domain app_public.tax_percentage as numeric(7,4)
      constraint tax_percentage_range check (value <> 'NaN'::numeric and value between 0 and 100);
  end if;
end
$$;
comment on domain app_public.tax_percentage is 'A tax rate in percent, from 0 to 100, with up to four decimals (9.975).';
insert into app_private.domain_rules (domain_name, constraint_name, code, message) values
  ('app_public.tax_percentage', 'tax_percentage_range', 'INVALID_VALUE', 'A tax rate must be a percentage from 0 to 100 (with at most four decimals).')
on conflict (domain_name, constraint_name) do update set code = excluded.code, message = excluded.message;

create table if not exists app_public.tax_codes (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  code text not null constraint tax_codes_code_format check (code ~ '^[A-Za-z0-9][A-Za-z0-9 ._+/-]{0,31}$'),
  name text not null check (length(btrim(name)) between 1 and 200),
  is_default boolean not null default false,
  archived_at app_public.business_timestamp,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  constraint tax_codes_code_key unique (organization_id, code),
  constraint tax_codes_default_not_archived check (not (is_default and archived_at is not null))
);
create unique index if not exists tax_codes_one_default on app_public.tax_codes (organization_id) where is_default;
comment on table app_public.tax_codes is 'The firm''s tax codes: each a set of taxes (components) applied to the proposal and invoice lines that name it. Archived codes stay on the documents that used them.';
comment on column app_public.tax_codes.code is 'Short and unique in the organization, e.g. VAT20, GST+QST, EXEMPT.';
comment on column app_public.tax_codes.is_default is 'The organization''s default code (one at most): a line given no code takes it, unless its client has a code of its own or its document a tax rate.';
comment on column app_public.tax_codes.archived_at is 'Set: no longer offered; lines that have it keep it, no line may be given it again.';

create table if not exists app_public.tax_code_components (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  tax_code_id uuid not null,
  position integer not null default 1 check (position between 1 and 10),
  name text not null check (length(btrim(name)) between 1 and 100),
  rate app_public.tax_percentage not null,
  compound boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  constraint tax_code_components_position_key unique (organization_id, tax_code_id, position),
  constraint tax_code_components_first_not_compound check (position > 1 or not compound),
  foreign key (organization_id, tax_code_id) references app_public.tax_codes on delete cascade
);
comment on table app_public.tax_code_components is 'One tax of a tax code, applied in position order.';
comment on column app_public.tax_code_components.rate is 'Percent, up to 4 decimals (9.975 = 9.975%).';
comment on column app_public.tax_code_components.compound is 'Applied to the amount plus the taxes of the earlier components of the code (not allowed on the first).';

-- The lines' code (a plain uuid: no table rewrite; the foreign keys come NOT VALID and their
-- indexes concurrently, validated and built by the next migrations).
do $$
declare
  v_lines text;
begin
  foreach v_lines in array array['proposal_line_items', 'invoice_line_items'] loop
    execute format('alter table app_public.%I add column if not exists tax_code_id uuid', v_lines);
    execute format('grant insert (tax_code_id), update (tax_code_id) on app_public.%I to :DATABASE_VISITOR', v_lines);
    execute format('comment on column app_public.%I.tax_code_id is %L', v_lines, 'The tax code of the line; none: taxed at its document''s tax_rate.');
    if not exists (select from pg_constraint where conname = v_lines || '_tax_code_fkey' and conrelid = ('app_public.' || v_lines)::regclass) then
      execute format('alter table app_public.%I add constraint %I foreign key (organization_id, tax_code_id) references app_public.tax_codes (organization_id, id) not valid',
        v_lines, v_lines || '_tax_code_fkey');
    end if;
  end loop;
end
$$;

-- A client's own code (e.g. reverse charge for a client abroad): its documents' lines given no
-- code take it (before the organization's default).
alter table app_public.client_companies add column if not exists tax_code_id uuid;
grant insert (tax_code_id), update (tax_code_id) on app_public.client_companies to :DATABASE_VISITOR;
comment on column app_public.client_companies.tax_code_id is 'The client''s tax code: lines of its proposals and invoices given no code take it (unless the document has a tax rate of its own).';
do $$
begin
  if not exists (select from pg_constraint where conname = 'client_companies_tax_code_fkey' and conrelid = 'app_public.client_companies'::regclass) then
    alter table app_public.client_companies add constraint client_companies_tax_code_fkey
      foreign key (organization_id, tax_code_id) references app_public.tax_codes (organization_id, id) not valid;
  end if;
end
$$;

call app_private.make_tenant_table('app_public.tax_codes', 'invoices',
  portal_read => $p$exists (select from app_public.invoice_line_items l where l.organization_id = tax_codes.organization_id and l.tax_code_id = tax_codes.id)
    or exists (select from app_public.proposal_line_items l where l.organization_id = tax_codes.organization_id and l.tax_code_id = tax_codes.id)$p$);
call app_private.make_tenant_table('app_public.tax_code_components', 'invoices',
  portal_read => $p$exists (select from app_public.tax_codes t where t.organization_id = tax_code_components.organization_id and t.id = tax_code_components.tax_code_id)$p$);
call app_private.classify_columns('app_public.tax_codes', '{"code": "none", "name": "none"}');
call app_private.classify_columns('app_public.tax_code_components', '{"name": "none"}');
call app_private.set_audit_parent('app_public.tax_code_components', 'tax_code_id', 'app_public.tax_codes');
call app_private.declare_record_retention('app_public.tax_codes', true, 'the taxes the invoices were charged at: the books');
call app_private.declare_record_retention('app_public.tax_code_components', true, 'the taxes the invoices were charged at: the books');

------------------------------------------------------------------------------------------------
-- The computation

do $$
begin
  if to_regtype('app_public.tax_total_component') is null then
    create type app_public.tax_total_component as (name text, rate numeric, compound boolean, base numeric, amount numeric);
  end if;
  if to_regtype('app_public.tax_total') is null then
    create type app_public.tax_total as (tax_code_id uuid, code text, name text, taxable_amount numeric, tax_amount numeric,
      components app_public.tax_total_component[]);
  end if;
end
$$;
comment on type app_public.tax_total_component is 'One tax of a code on a document: its rate, whether compound, the amount it was applied to (base) and the tax.';
comment on type app_public.tax_total is 'A document''s tax for one tax code (none: the lines without a code, at the document''s rate): the lines'' amounts (taxable), the tax, and each component.';

-- Each tax of a document: per code of its lines a row per component (a code without components:
-- one row at 0%), and the rest of the subtotal (the lines without a code, or a subtotal written
-- without lines) at `tax_rate`. `lines`: the lines' table; `document_column`: its column naming
-- the document. SECURITY INVOKER: the caller's row-level security applies (the triggers run it
-- as the owner; <Document>.taxTotals as the visitor, who reads what they may).
create or replace function app_private.document_tax_parts(lines regclass, document_column text, organization_id uuid, document_id uuid, subtotal numeric, tax_rate numeric)
returns table (tax_code_id uuid, taxable numeric, step int, component text, rate numeric, compound boolean, base numeric, amount numeric)
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_code record;
  v_component record;
  v_earlier numeric;
  v_coded numeric := 0;
begin
  if lines not in ('app_public.invoice_line_items'::regclass, 'app_public.proposal_line_items'::regclass) then
    raise exception 'document_tax_parts: % holds no document lines', lines;
  end if;
  for v_code in execute format(
    'select l.tax_code_id, sum(l.amount)::numeric as taxable from %s l
     where l.organization_id = $1 and l.%I = $2 and l.tax_code_id is not null group by l.tax_code_id', lines, document_column)
    using document_tax_parts.organization_id, document_tax_parts.document_id
  loop
    v_coded := v_coded + v_code.taxable;
    tax_code_id := v_code.tax_code_id;
    taxable := v_code.taxable;
    v_earlier := 0;
    step := null; component := null; rate := 0; compound := false; base := v_code.taxable; amount := 0;
    for v_component in
      select c.position, c.name, c.rate, c.compound from app_public.tax_code_components c
      where c.organization_id = document_tax_parts.organization_id and c.tax_code_id = v_code.tax_code_id
      order by c.position
    loop
      step := v_component.position; component := v_component.name; rate := v_component.rate; compound := v_component.compound;
      base := v_code.taxable + case when v_component.compound then v_earlier else 0 end;
      amount := round(base * v_component.rate / 100, 2);
      v_earlier := v_earlier + amount;
      return next;
    end loop;
    if step is null then
      return next; -- a code without components: its lines, at 0%
    end if;
  end loop;
  if document_tax_parts.subtotal <> v_coded or v_coded = 0 then
    tax_code_id := null; taxable := document_tax_parts.subtotal - v_coded;
    step := 1; component := null; rate := document_tax_parts.tax_rate; compound := false; base := taxable;
    amount := round(taxable * document_tax_parts.tax_rate / 100, 2);
    return next;
  end if;
end
$$;
revoke all on function app_private.document_tax_parts(regclass, text, uuid, uuid, numeric, numeric) from public;
grant execute on function app_private.document_tax_parts(regclass, text, uuid, uuid, numeric, numeric) to :DATABASE_VISITOR;
comment on function app_private.document_tax_parts(regclass, text, uuid, uuid, numeric, numeric) is 'A proposal''s or an invoice''s taxes: per tax code of its lines a row per component, rounded to cents on the code''s summed amounts; the rest of the subtotal at the document''s rate.';

-- Tax and total of a document, before any other BEFORE trigger reads them. Lines change the
-- subtotal (sql/functions/line_items.sql), which brings every line change here. Once sent, a
-- document keeps the tax and total it was sent with, whatever is updated on it later (a payment,
-- a status): they are not computed again.
-- TG_ARGV[0]: the lines' table; TG_ARGV[1]: their column naming the document.
create or replace function app_private.tg__document_amounts() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if tg_op = 'UPDATE' and old.status::text <> 'draft' then
    new.tax_amount := old.tax_amount;
    new.total := old.total;
    return new;
  end if;
  if tg_op = 'INSERT' then
    new.tax_amount := round(new.subtotal * new.tax_rate / 100, 2); -- no lines yet
  else
    select coalesce(sum(p.amount), 0) into new.tax_amount
    from app_private.document_tax_parts(tg_argv[0]::regclass, tg_argv[1], new.organization_id, new.id, new.subtotal, new.tax_rate) p;
  end if;
  new.total := new.subtotal + new.tax_amount;
  return new;
end
$$;

-- Each document: its trigger, its tax and total the trigger's (from generated columns, which a
-- per-line tax cannot be: dropping an expression keeps the stored values and rewrites nothing),
-- and a check that they are there and add up (NOT VALID here, validated by the next migration).
do $$
declare
  v_doc record;
  v_column text;
begin
  for v_doc in select * from (values ('invoices', 'invoice_line_items', 'invoice_id'), ('proposals', 'proposal_line_items', 'proposal_id')) as d(tbl, lines, fk) loop
    execute format('drop trigger if exists %I on app_public.%I', 'tg_' || v_doc.tbl || '__amounts', v_doc.tbl);
    execute format('create trigger %I before insert or update on app_public.%I for each row execute function app_private.tg__document_amounts(%L, %L)',
      'tg_' || v_doc.tbl || '__amounts', v_doc.tbl, 'app_public.' || v_doc.lines, v_doc.fk);
    foreach v_column in array array['tax_amount', 'total'] loop
      if (select a.attgenerated from pg_attribute a where a.attrelid = ('app_public.' || v_doc.tbl)::regclass and a.attname = v_column) = 's' then
        execute format('alter table app_public.%I alter column %I drop expression', v_doc.tbl, v_column);
      end if;
    end loop;
    execute format('revoke insert (tax_amount, total), update (tax_amount, total) on app_public.%I from :DATABASE_VISITOR', v_doc.tbl);
    if not exists (select from pg_constraint where conname = v_doc.tbl || '_amounts_present' and conrelid = ('app_public.' || v_doc.tbl)::regclass) then
      execute format('alter table app_public.%I add constraint %I check (tax_amount is not null and total is not null and total = subtotal + tax_amount) not valid',
        v_doc.tbl, v_doc.tbl || '_amounts_present');
    end if;
    execute format('comment on column app_public.%I.tax_amount is %L', v_doc.tbl, 'Tax: per tax code of its lines, and on the lines without one at tax_rate (taxTotals lists them).');
    execute format('comment on column app_public.%I.total is %L', v_doc.tbl, 'subtotal + tax_amount.');
    execute format('comment on column app_public.%I.tax_rate is %L', v_doc.tbl, 'Percent applied to the lines without a tax code.');
  end loop;
end
$$;
-- Payments stay within the invoice's total (the check this replaces repeated the generated
-- expression).
alter table app_public.invoices drop constraint if exists invoices_check1;
do $$
begin
  if not exists (select from pg_constraint where conname = 'invoices_paid_within_total' and conrelid = 'app_public.invoices'::regclass) then
    alter table app_public.invoices add constraint invoices_paid_within_total check (amount_paid <= total) not valid;
  end if;
end
$$;

-- <Document>.taxTotals: the tax per code, for the document (the lines without a code first).
create or replace function app_private.document_tax_totals(lines regclass, document_column text, organization_id uuid, document_id uuid, subtotal numeric, tax_rate numeric)
returns setof app_public.tax_total
language sql stable
set search_path = pg_catalog
as $$
  select p.tax_code_id, t.code, t.name, min(p.taxable), sum(p.amount),
    coalesce(array_agg(row(p.component, p.rate, p.compound, p.base, p.amount)::app_public.tax_total_component order by p.step)
      filter (where p.tax_code_id is null or p.component is not null), '{}')
  from app_private.document_tax_parts(lines, document_column, organization_id, document_id, subtotal, tax_rate) p
  left join app_public.tax_codes t on t.organization_id = document_tax_totals.organization_id and t.id = p.tax_code_id
  group by p.tax_code_id, t.code, t.name
  order by p.tax_code_id is not null, t.code
$$;
revoke all on function app_private.document_tax_totals(regclass, text, uuid, uuid, numeric, numeric) from public;
grant execute on function app_private.document_tax_totals(regclass, text, uuid, uuid, numeric, numeric) to :DATABASE_VISITOR;

create or replace function app_public.invoices_tax_totals(i app_public.invoices) returns setof app_public.tax_total
language sql stable
set search_path = pg_catalog
as $$
  select * from app_private.document_tax_totals('app_public.invoice_line_items', 'invoice_id', i.organization_id, i.id, i.subtotal, i.tax_rate)
$$;
grant execute on function app_public.invoices_tax_totals(app_public.invoices) to :DATABASE_VISITOR;
comment on function app_public.invoices_tax_totals(app_public.invoices) is 'The invoice''s tax per tax code (none: its lines without a code, at the invoice''s tax rate), each with its components; they add up to taxAmount.';

create or replace function app_public.proposals_tax_totals(p app_public.proposals) returns setof app_public.tax_total
language sql stable
set search_path = pg_catalog
as $$
  select * from app_private.document_tax_totals('app_public.proposal_line_items', 'proposal_id', p.organization_id, p.id, p.subtotal, p.tax_rate)
$$;
grant execute on function app_public.proposals_tax_totals(app_public.proposals) to :DATABASE_VISITOR;
comment on function app_public.proposals_tax_totals(app_public.proposals) is 'The proposal''s tax per tax code (none: its lines without a code, at the proposal''s tax rate), each with its components; they add up to taxAmount.';

-- CreditNote.taxTotals: a credit note (or write-off) per tax code of its invoice. Its net and its
-- tax are spread over the invoice's codes in proportion to what each code charged (largest
-- remainder: the cents add up to the credit note's subtotal and tax exactly); components are not
-- split (the code's share is what a credit note shows per rate).
create or replace function app_public.credit_notes_tax_totals(n app_public.credit_notes) returns setof app_public.tax_total
language sql stable
set search_path = pg_catalog
as $$
  with invoice as (
    select i.* from app_public.invoices i where i.organization_id = n.organization_id and i.id = n.invoice_id
  ),
  parts as (
    select t.*, row_number() over (order by t.tax_code_id is not null, t.code) as k,
      case when i.subtotal > 0 then n.subtotal * t.taxable_amount / i.subtotal else 0 end as exact_net,
      case when i.tax_amount > 0 then n.tax_amount * t.tax_amount / i.tax_amount else 0 end as exact_tax
    from invoice i, app_private.document_tax_totals('app_public.invoice_line_items', 'invoice_id', i.organization_id, i.id, i.subtotal, i.tax_rate) t
  ),
  floored as (
    select p.*, trunc(p.exact_net, 2) as net, trunc(p.exact_tax, 2) as tax,
      round((n.subtotal - sum(trunc(p.exact_net, 2)) over ()) * 100)::int as net_cents_left,
      round((n.tax_amount - sum(trunc(p.exact_tax, 2)) over ()) * 100)::int as tax_cents_left,
      row_number() over (order by p.exact_net - trunc(p.exact_net, 2) desc, p.k) as net_rank,
      row_number() over (order by p.exact_tax - trunc(p.exact_tax, 2) desc, p.k) as tax_rank
    from parts p
  )
  select f.tax_code_id, f.code, f.name,
    f.net + case when f.net_rank <= f.net_cents_left then 0.01 else 0 end,
    f.tax + case when f.tax_rank <= f.tax_cents_left then 0.01 else 0 end,
    '{}'::app_public.tax_total_component[]
  from floored f
  order by f.k
$$;
grant execute on function app_public.credit_notes_tax_totals(app_public.credit_notes) to :DATABASE_VISITOR;
comment on function app_public.credit_notes_tax_totals(app_public.credit_notes) is 'The credit note''s net and tax per tax code of its invoice, in proportion to what each code charged; they add up to its subtotal and taxAmount.';

------------------------------------------------------------------------------------------------
-- The rules

-- A line may not be given an archived code.
create or replace function app_private.tg__line_tax_code() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if new.tax_code_id is not null and (tg_op = 'INSERT' or new.tax_code_id is distinct from old.tax_code_id)
     and exists (select from app_public.tax_codes t where t.organization_id = new.organization_id and t.id = new.tax_code_id and t.archived_at is not null) then
    perform app_private.fail('INVALID_VALUE', 'This tax code is archived: choose another.');
  end if;
  return new;
end
$$;
drop trigger if exists tg_client_companies__tax_code on app_public.client_companies;
create trigger tg_client_companies__tax_code before insert or update of tax_code_id on app_public.client_companies
  for each row execute function app_private.tg__line_tax_code();
drop trigger if exists tg_invoice_line_items__tax_code on app_public.invoice_line_items;
create trigger tg_invoice_line_items__tax_code before insert or update of tax_code_id on app_public.invoice_line_items
  for each row execute function app_private.tg__line_tax_code();
drop trigger if exists tg_proposal_line_items__tax_code on app_public.proposal_line_items;
create trigger tg_proposal_line_items__tax_code before insert or update of tax_code_id on app_public.proposal_line_items
  for each row execute function app_private.tg__line_tax_code();

-- A line given no code takes its client's code, else the organization's default (neither
-- archived), when its document has no tax rate of its own (a document with one keeps taxing its
-- uncoded lines at that rate, as before tax codes). TG_ARGV[0]: the documents' table;
-- TG_ARGV[1]: the line's column naming its document. Named to run after tg_<lines>__tax_code
-- and tg_<lines>__require_organization (BEFORE triggers fire in name order).
create or replace function app_private.tg__line_tax_code_default() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_rate numeric;
  v_client uuid;
begin
  if new.tax_code_id is not null then
    return new;
  end if;
  execute format('select d.tax_rate, d.client_company_id from %s d where d.organization_id = $1 and d.id = $2', tg_argv[0]::regclass)
    into v_rate, v_client using new.organization_id, (to_jsonb(new) ->> tg_argv[1])::uuid;
  if v_rate is distinct from 0 then
    return new; -- a rate of its own (or no such document: its foreign key says so)
  end if;
  new.tax_code_id := coalesce(
    (select t.id from app_public.client_companies c
     join app_public.tax_codes t on t.organization_id = c.organization_id and t.id = c.tax_code_id
     where c.organization_id = new.organization_id and c.id = v_client and t.archived_at is null),
    (select t.id from app_public.tax_codes t where t.organization_id = new.organization_id and t.is_default and t.archived_at is null));
  return new;
end
$$;
drop trigger if exists tg_invoice_line_items__tax_code_default on app_public.invoice_line_items;
create trigger tg_invoice_line_items__tax_code_default before insert on app_public.invoice_line_items
  for each row execute function app_private.tg__line_tax_code_default('app_public.invoices', 'invoice_id');
drop trigger if exists tg_proposal_line_items__tax_code_default on app_public.proposal_line_items;
create trigger tg_proposal_line_items__tax_code_default before insert on app_public.proposal_line_items
  for each row execute function app_private.tg__line_tax_code_default('app_public.proposals', 'proposal_id');

-- A code a sent proposal or invoice uses keeps its code, name and components (TAX_CODE_IN_USE);
-- drafts that use a code that changes are recomputed (their subtotal written again brings them
-- through tg_<documents>__amounts).
create or replace function app_private.tax_code_changed(organization_id uuid, tax_code_id uuid) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_document text;
begin
  if app_private.erasing(tax_code_changed.organization_id) then
    return; -- the purge of a deleted organization
  end if;
  select format('Invoice %s', i.number) into v_document
  from app_public.invoice_line_items l
  join app_public.invoices i on i.organization_id = l.organization_id and i.id = l.invoice_id
  where l.organization_id = tax_code_changed.organization_id and l.tax_code_id = tax_code_changed.tax_code_id and i.status <> 'draft'
  limit 1;
  if v_document is null then
    select format('The proposal "%s"', p.title) into v_document
    from app_public.proposal_line_items l
    join app_public.proposals p on p.organization_id = l.organization_id and p.id = l.proposal_id
    where l.organization_id = tax_code_changed.organization_id and l.tax_code_id = tax_code_changed.tax_code_id and p.status <> 'draft'
    limit 1;
  end if;
  if v_document is not null then
    perform app_private.fail('TAX_CODE_IN_USE', format('%s was sent with this tax code, so its code, name and taxes stay as they are: create a new code (and archive this one).', v_document));
  end if;
  update app_public.invoices i set subtotal = i.subtotal
  where i.organization_id = tax_code_changed.organization_id and i.status = 'draft'
    and exists (select from app_public.invoice_line_items l where l.organization_id = i.organization_id and l.invoice_id = i.id and l.tax_code_id = tax_code_changed.tax_code_id);
  update app_public.proposals p set subtotal = p.subtotal
  where p.organization_id = tax_code_changed.organization_id and p.status = 'draft'
    and exists (select from app_public.proposal_line_items l where l.organization_id = p.organization_id and l.proposal_id = p.id and l.tax_code_id = tax_code_changed.tax_code_id);
end
$$;
revoke all on function app_private.tax_code_changed(uuid, uuid) from public;

create or replace function app_private.tg_tax_codes__changed() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if tg_table_name = 'tax_codes' then
    if tg_op = 'UPDATE' and (new.code, new.name) is not distinct from (old.code, old.name) then
      return null; -- archived or restored only
    end if;
    perform app_private.tax_code_changed(coalesce(new.organization_id, old.organization_id), coalesce(new.id, old.id));
  else
    if tg_op = 'UPDATE' and (new.position, new.name, new.rate, new.compound, new.tax_code_id) is not distinct from (old.position, old.name, old.rate, old.compound, old.tax_code_id) then
      return null;
    end if;
    perform app_private.tax_code_changed(coalesce(new.organization_id, old.organization_id), coalesce(new.tax_code_id, old.tax_code_id));
    if tg_op = 'UPDATE' and new.tax_code_id is distinct from old.tax_code_id then
      perform app_private.tax_code_changed(old.organization_id, old.tax_code_id);
    end if;
  end if;
  return null;
end
$$;
drop trigger if exists tg_tax_codes__changed on app_public.tax_codes;
create trigger tg_tax_codes__changed after update on app_public.tax_codes
  for each row execute function app_private.tg_tax_codes__changed();
drop trigger if exists tg_tax_code_components__changed on app_public.tax_code_components;
create trigger tg_tax_code_components__changed after insert or update or delete on app_public.tax_code_components
  for each row execute function app_private.tg_tax_codes__changed();
--! EndIncluded functions/taxes.sql
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
      (select coalesce(sum(t.amount), 0) from app_private.document_tax_parts('app_public.invoice_line_items', 'invoice_id', i.organization_id, i.id, i.subtotal, i.tax_rate) t) as taxed,
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
      ('invoice_tax', s.tax_amount is distinct from s.taxed, format('tax %s, its lines'' tax codes and the invoice''s rate give %s', s.tax_amount, s.taxed)),
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
    select p.organization_id, v.rule, p.id, v.detail
    from app_public.proposals p
    cross join lateral (select coalesce(sum(l.amount), 0) as lines from app_public.proposal_line_items l where l.organization_id = p.organization_id and l.proposal_id = p.id) l
    cross join lateral (select coalesce(sum(t.amount), 0) as taxed from app_private.document_tax_parts('app_public.proposal_line_items', 'proposal_id', p.organization_id, p.id, p.subtotal, p.tax_rate) t) t
    cross join lateral (values
      ('proposal_subtotal', p.subtotal is distinct from l.lines, format('subtotal %s, lines add up to %s', p.subtotal, l.lines)),
      ('proposal_tax', p.tax_amount is distinct from t.taxed, format('tax %s, its lines'' tax codes and the proposal''s rate give %s', p.tax_amount, t.taxed)),
      ('proposal_total', p.total is distinct from p.subtotal + p.tax_amount, format('total %s, subtotal %s + tax %s', p.total, p.subtotal, p.tax_amount))
    ) as v(rule, broken, detail)
    where v.broken and ((select id from org) is null or p.organization_id = (select id from org))
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
--! Included functions/documents.sql
-- Documents created whole (docs/ENTITIES.md, "Documents in one request"): a proposal or an invoice
-- with its lines in one mutation, all or nothing — instead of one request for the document and
-- one per line. SECURITY INVOKER: the caller's grants, row-level security and every trigger
-- apply exactly as to the inserts a client would send one by one (proposals.write /
-- invoices.write, status machines, totals, currencies).
-- Idempotent; re-included by later migrations.

do $$
begin
  if to_regtype('app_public.document_line') is null then
    create type app_public.document_line as (description text, quantity numeric, unit_price numeric);
  end if;
  -- Its tax code (sql/functions/taxes.sql), added after.
  if not exists (select from pg_attribute where attrelid = (select typrelid from pg_type where oid = 'app_public.document_line'::regtype) and attname = 'tax_code_id' and not attisdropped) then
    alter type app_public.document_line add attribute tax_code_id uuid;
  end if;
end
$$;
comment on type app_public.document_line is 'A line of a proposal or an invoice given with it: description, quantity (default 1), unit price, tax code (none: taxed at the document''s tax rate).';

-- The lines, checked: at least one, each with a description and a price.
create or replace function app_private.check_document_lines(lines app_public.document_line[], what text) returns void
language plpgsql immutable
set search_path = pg_catalog
as $$
begin
  if coalesce(cardinality(lines), 0) = 0 then
    perform app_private.fail('EMPTY_DOCUMENT', format('Give the %s at least one line.', what));
  end if;
  if exists (select from unnest(lines) l where l is null or l.description is null or l.unit_price is null) then
    perform app_private.fail('INVALID_VALUE', 'Every line needs a description and a unit price (its quantity defaults to 1).');
  end if;
end
$$;
revoke all on function app_private.check_document_lines(app_public.document_line[], text) from public;
grant execute on function app_private.check_document_lines(app_public.document_line[], text) to :DATABASE_VISITOR;

-- (No `id` argument: an id a caller passes is read as a reference to a record, everywhere; the
-- first versions of these functions took one: dropped.)
drop function if exists app_public.create_proposal_with_lines(uuid, text, app_public.document_line[], uuid, uuid, numeric, date, text, text, uuid);
drop function if exists app_public.create_invoice_with_lines(uuid, app_public.document_line[], uuid, numeric, date, text, text, uuid);
drop function if exists app_public.create_project_template_with_tasks(text, app_public.template_task_line[], text, app_public.template_milestone_line[], uuid);

create or replace function app_public.create_proposal_with_lines(
  client_company_id uuid, title text, lines app_public.document_line[],
  deal_id uuid default null, engagement_id uuid default null, tax_rate numeric default null,
  valid_until date default null, notes text default null, currency text default null
) returns app_public.proposals
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
begin
  perform app_private.check_document_lines(lines, 'proposal');
  insert into app_public.proposals (client_company_id, title, deal_id, engagement_id, tax_rate, valid_until, notes, currency)
  values (create_proposal_with_lines.client_company_id, create_proposal_with_lines.title,
    create_proposal_with_lines.deal_id, create_proposal_with_lines.engagement_id, coalesce(create_proposal_with_lines.tax_rate, 0),
    create_proposal_with_lines.valid_until, create_proposal_with_lines.notes, create_proposal_with_lines.currency)
  returning * into v;
  insert into app_public.proposal_line_items (proposal_id, position, description, quantity, unit_price, tax_code_id)
  select v.id, l.position, l.description, coalesce(l.quantity, 1), l.unit_price, l.tax_code_id
  from unnest(create_proposal_with_lines.lines) with ordinality as l(description, quantity, unit_price, tax_code_id, position);
  select p.* into v from app_public.proposals p where p.organization_id = v.organization_id and p.id = v.id;
  return v;
end
$$;
revoke all on function app_public.create_proposal_with_lines(uuid, text, app_public.document_line[], uuid, uuid, numeric, date, text, text) from public;
grant execute on function app_public.create_proposal_with_lines(uuid, text, app_public.document_line[], uuid, uuid, numeric, date, text, text) to :DATABASE_VISITOR;
comment on function app_public.create_proposal_with_lines(uuid, text, app_public.document_line[], uuid, uuid, numeric, date, text, text) is 'Creates a draft proposal with its lines in one step, all or nothing (proposals.write): as inserting the proposal and each line would.';

create or replace function app_public.create_invoice_with_lines(
  client_company_id uuid, lines app_public.document_line[],
  engagement_id uuid default null, tax_rate numeric default null, due_on date default null,
  notes text default null, currency text default null
) returns app_public.invoices
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  perform app_private.check_document_lines(lines, 'invoice');
  insert into app_public.invoices (client_company_id, engagement_id, tax_rate, due_on, notes, currency)
  values (create_invoice_with_lines.client_company_id, create_invoice_with_lines.engagement_id,
    coalesce(create_invoice_with_lines.tax_rate, 0), create_invoice_with_lines.due_on, create_invoice_with_lines.notes, create_invoice_with_lines.currency)
  returning * into v;
  insert into app_public.invoice_line_items (invoice_id, position, description, quantity, unit_price, tax_code_id)
  select v.id, l.position, l.description, coalesce(l.quantity, 1), l.unit_price, l.tax_code_id
  from unnest(create_invoice_with_lines.lines) with ordinality as l(description, quantity, unit_price, tax_code_id, position);
  select i.* into v from app_public.invoices i where i.organization_id = v.organization_id and i.id = v.id;
  return v;
end
$$;
revoke all on function app_public.create_invoice_with_lines(uuid, app_public.document_line[], uuid, numeric, date, text, text) from public;
grant execute on function app_public.create_invoice_with_lines(uuid, app_public.document_line[], uuid, numeric, date, text, text) to :DATABASE_VISITOR;
comment on function app_public.create_invoice_with_lines(uuid, app_public.document_line[], uuid, numeric, date, text, text) is 'Creates a draft invoice with its lines in one step, all or nothing (invoices.write): as inserting the invoice and each line would.';

-- A project template with its milestones and tasks (projects.write). A task names its milestone
-- by name (one of `milestones`), or none.
do $$
begin
  if to_regtype('app_public.template_milestone_line') is null then
    create type app_public.template_milestone_line as (name text, offset_days integer);
  end if;
  if to_regtype('app_public.template_task_line') is null then
    create type app_public.template_task_line as (
      title text, milestone text, offset_days integer, estimate_minutes integer, priority app_public.task_priority, description text);
  end if;
  if to_regtype('app_public.time_entry_line') is null then
    create type app_public.time_entry_line as (
      engagement_id uuid, task_id uuid, work_date date, minutes integer, billable boolean, description text);
  end if;
end
$$;
comment on type app_public.template_milestone_line is 'A milestone of a template given with it: name, days after the project''s start.';
comment on type app_public.template_task_line is 'A task of a template given with it: title, its milestone''s name (or none), days after the start, estimate in minutes, priority (default normal), description.';
comment on type app_public.time_entry_line is 'A time entry given with its week: engagement, task (optional), day, minutes, billable (default: yes), description.';

create or replace function app_public.create_project_template_with_tasks(
  name text, tasks app_public.template_task_line[], description text default null,
  milestones app_public.template_milestone_line[] default null
) returns app_public.project_templates
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.project_templates;
  v_unknown text;
begin
  if coalesce(cardinality(tasks), 0) = 0 then
    perform app_private.fail('EMPTY_DOCUMENT', 'Give the template at least one task.');
  end if;
  select string_agg(distinct t.milestone, ', ') into v_unknown
  from unnest(tasks) t
  where t.milestone is not null and not exists (select from unnest(milestones) m where m.name = t.milestone);
  if v_unknown is not null then
    perform app_private.fail('INVALID_VALUE', format('Tasks name milestones the template does not have: %s.', v_unknown));
  end if;
  insert into app_public.project_templates (name, description)
  values (create_project_template_with_tasks.name, create_project_template_with_tasks.description)
  returning * into v;
  with milestones as (
    insert into app_public.project_template_milestones as pm (template_id, name, position, offset_days)
    select v.id, m.name, m.position, coalesce(m.offset_days, 0)
    from unnest(create_project_template_with_tasks.milestones) with ordinality as m(name, offset_days, position)
    returning pm.id, pm.name
  )
  insert into app_public.project_template_tasks (template_id, template_milestone_id, title, position, offset_days, estimate_minutes, priority, description)
  select v.id, (select ms.id from milestones ms where ms.name = t.milestone limit 1), t.title, t.position, coalesce(t.offset_days, 0),
    t.estimate_minutes, coalesce(t.priority, 'normal'), t.description
  from unnest(create_project_template_with_tasks.tasks) with ordinality as t(title, milestone, offset_days, estimate_minutes, priority, description, position);
  return v;
end
$$;
revoke all on function app_public.create_project_template_with_tasks(text, app_public.template_task_line[], text, app_public.template_milestone_line[]) from public;
grant execute on function app_public.create_project_template_with_tasks(text, app_public.template_task_line[], text, app_public.template_milestone_line[]) to :DATABASE_VISITOR;
comment on function app_public.create_project_template_with_tasks(text, app_public.template_task_line[], text, app_public.template_milestone_line[]) is 'Creates a project template with its milestones and tasks in one step, all or nothing (projects.write); a task names its milestone by name.';

-- A member's week in one step: its time entries, then the week submitted (time.write; one's own
-- week). Every entry must fall in the week.
create or replace function app_public.submit_timesheet_with_entries(week_starts_on date, entries app_public.time_entry_line[]) returns app_public.timesheets
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_week date := date_trunc('week', submit_timesheet_with_entries.week_starts_on)::date;
  v_member uuid := (select m.id from app_public.organization_members m where m.organization_id = app_public.current_org_id() and m.user_id = app_public.current_user_id());
begin
  if v_member is null then
    perform app_private.fail('NO_ORGANIZATION', 'Choose an organization you belong to first.');
  elsif submit_timesheet_with_entries.week_starts_on is null then
    perform app_private.fail('INVALID_VALUE', 'Name the week (any day of it; its Monday is taken).');
  elsif exists (select from unnest(entries) e where e.work_date is null or e.work_date < v_week or e.work_date >= v_week + 7) then
    perform app_private.fail('INVALID_VALUE', format('Every entry must be dated in the week of %s to %s.', v_week, v_week + 6));
  end if;
  insert into app_public.time_entries (engagement_id, task_id, member_id, work_date, minutes, billable, description)
  select e.engagement_id, e.task_id, v_member, e.work_date, e.minutes, coalesce(e.billable, true), e.description
  from unnest(submit_timesheet_with_entries.entries) e;
  return app_public.submit_timesheet(v_week, null);
end
$$;
revoke all on function app_public.submit_timesheet_with_entries(date, app_public.time_entry_line[]) from public;
grant execute on function app_public.submit_timesheet_with_entries(date, app_public.time_entry_line[]) to :DATABASE_VISITOR;
comment on function app_public.submit_timesheet_with_entries(date, app_public.time_entry_line[]) is 'Logs a week of your time and submits it in one step, all or nothing (time.write): each entry priced and checked as if logged one by one; every entry must fall in the week.';
--! EndIncluded functions/documents.sql
