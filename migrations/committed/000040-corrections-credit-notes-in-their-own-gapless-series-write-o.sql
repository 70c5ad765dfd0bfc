--! Previous: sha1:fa159fe4bc75624ca53408e76a300bc024f634e3
--! Hash: sha1:ae7e06a1bab4a2221675589ee6be3b34828f570d
--! Message: Corrections: credit notes in their own gapless series, write-offs and refunds; an invoice's balance = total - payments (less refunds) - credits, kept by trigger and checked

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '60s';

-- Corrections (issue: the firm's money): credit notes in their own gapless series, write-offs and
-- refunds; an invoice's balance = total − payments (less refunds) − credits, kept by trigger and
-- checked (its generated expression dropped: no rewrite). The new checks are validated by the
-- next migration.
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
--! Included functions/billing.sql
-- Billing and payables lifecycle: invoices from time, sending (numbering), viewing, cancelling,
-- payments, and bills. SECURITY DEFINER functions check organization and permission first.
-- Lock order (sql/functions/lock_order.sql): each function locks its document (the invoice, the
-- bill, the engagement it invoices) FOR UPDATE before it checks its status or touches its parts.

-- The next invoice number of an organization: 1, 2, 3, ... Takes the counter row's lock until
-- the calling transaction ends, so concurrent senders queue and a rolled-back send returns its
-- number: no gaps, no duplicates (tests/billing.test.ts proves it with parallel connections).
create or replace function app_private.next_invoice_number(organization_id uuid) returns integer
language sql volatile
set search_path = pg_catalog
as $$
  insert into app_private.invoice_counters as c (organization_id, last_number)
  values (next_invoice_number.organization_id, 1)
  on conflict on constraint invoice_counters_pkey do update set last_number = c.last_number + 1
  returning c.last_number
$$;

-- A draft invoice for an engagement's billable time not yet invoiced (invoices.write): one line
-- per task and rate (hours × rate), and the time entries point at it until it is cancelled.
create or replace function app_public.create_invoice_from_time(engagement_id uuid, tax_rate numeric default 0) returns app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_engagement app_public.engagements;
  v_invoice app_public.invoices;
  v_ids uuid[];
begin
  perform app_private.require_permission('invoices.write', 'invoice time');
  -- The engagement first: two invoicings of its time queue, and the second finds none left.
  select e.* into v_engagement from app_public.engagements e
  where e.organization_id = v_org and e.id = create_invoice_from_time.engagement_id and e.deleted_at is null
  for update;
  if v_engagement.id is null then
    perform app_private.fail('NOT_FOUND', 'No such engagement in this organization.');
  end if;
  select array_agg(t.id) into v_ids
  from (
    select t.id from app_public.time_entries t
    where t.organization_id = v_org and t.engagement_id = v_engagement.id
      and t.billable and t.invoice_id is null and t.deleted_at is null and t.rate > 0
    order by t.id
    for update
  ) t;
  if v_ids is null then
    perform app_private.fail('EMPTY_DOCUMENT', 'This engagement has no billable time that is not invoiced yet.');
  end if;
  insert into app_public.invoices (organization_id, client_company_id, engagement_id, tax_rate)
  values (v_org, v_engagement.client_company_id, v_engagement.id, coalesce(create_invoice_from_time.tax_rate, 0))
  returning * into v_invoice;
  insert into app_public.invoice_line_items (organization_id, invoice_id, position, description, quantity, unit_price)
  select v_org, v_invoice.id, row_number() over (order by min(t.work_date), coalesce(k.title, '')),
    format('%s: %s h, %s – %s', coalesce(k.title, 'Time'), round(sum(t.minutes) / 60.0, 2), min(t.work_date), max(t.work_date)),
    round(sum(t.minutes) / 60.0, 2), t.rate
  from app_public.time_entries t
  left join app_public.tasks k on k.organization_id = t.organization_id and k.id = t.task_id
  where t.organization_id = v_org and t.id = any (v_ids)
  group by k.id, k.title, t.rate;
  update app_public.time_entries t set invoice_id = v_invoice.id
  where t.organization_id = v_org and t.id = any (v_ids);
  select i.* into v_invoice from app_public.invoices i where i.organization_id = v_org and i.id = v_invoice.id;
  return v_invoice;
end
$$;
comment on function app_public.create_invoice_from_time(uuid, numeric) is 'Creates a draft invoice of an engagement''s billable, not yet invoiced time (invoices.write): a line per task and rate.';

-- Send a draft invoice (invoices.write): allocates its number, sets the issue date (today unless
-- set) and the due date (issue date + the organization''s payment terms unless set).
create or replace function app_public.send_invoice(invoice_id uuid) returns app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  perform app_private.require_permission('invoices.write', 'send an invoice');
  select i.* into v from app_public.invoices i
  where i.organization_id = app_public.current_org_id() and i.id = send_invoice.invoice_id and i.deleted_at is null
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such invoice in this organization.');
  elsif v.status <> 'draft' then
    perform app_private.fail('INVALID_TRANSITION', format('An invoice cannot go from %s to sent.', v.status));
  elsif v.total <= 0 then
    perform app_private.fail('EMPTY_DOCUMENT', 'Add at least one line with a price before sending the invoice.');
  end if;
  update app_public.invoices i
  set status = 'sent',
      number = app_private.next_invoice_number(i.organization_id),
      issued_on = coalesce(i.issued_on, current_date),
      due_on = coalesce(i.due_on, coalesce(i.issued_on, current_date) + o.payment_terms_days)
  from app_public.organizations o
  where o.id = i.organization_id and i.organization_id = v.organization_id and i.id = v.id
  returning i.* into v;
  return v;
end
$$;
comment on function app_public.send_invoice(uuid) is 'Sends a draft invoice (invoices.write): gives it the organization''s next number, its issue and due dates; it is frozen from now on.';

-- Record that the client opened a sent invoice (its portal user, or a member with invoices.write).
create or replace function app_public.mark_invoice_viewed(invoice_id uuid) returns app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  select i.* into v from app_public.invoices i
  where i.organization_id = app_private.acting_org_id() and i.id = mark_invoice_viewed.invoice_id and i.deleted_at is null
    and (app_public.has_permission('invoices.write')
      or (i.status in ('sent', 'viewed', 'paid', 'overdue') and app_private.is_portal_user_of(i.engagement_id)))
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such invoice for you.');
  end if;
  if v.status in ('draft', 'sent') then -- a draft is refused by the status machine
    update app_public.invoices i set status = 'viewed'
    where i.organization_id = v.organization_id and i.id = v.id
    returning i.* into v;
  end if;
  return v;
end
$$;
comment on function app_public.mark_invoice_viewed(uuid) is 'Records that the client has seen a sent invoice (stamps viewed_at once; later calls change nothing).';

-- Cancel an invoice without payments (invoices.write); its time entries can be invoiced again.
create or replace function app_public.cancel_invoice(invoice_id uuid) returns app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  perform app_private.require_permission('invoices.write', 'cancel an invoice');
  select i.* into v from app_public.invoices i
  where i.organization_id = app_public.current_org_id() and i.id = cancel_invoice.invoice_id and i.deleted_at is null
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such invoice in this organization.');
  elsif v.amount_paid > 0 then
    perform app_private.fail('INVALID_TRANSITION', 'An invoice with payments cannot be cancelled.');
  elsif v.amount_credited > 0 then
    perform app_private.fail('INVALID_TRANSITION', 'An invoice with credit notes cannot be cancelled.');
  end if;
  update app_public.invoices i set status = 'cancelled'
  where i.organization_id = v.organization_id and i.id = v.id
  returning i.* into v;
  update app_public.time_entries t set invoice_id = null
  where t.organization_id = v.organization_id and t.invoice_id = v.id;
  return v;
end
$$;
comment on function app_public.cancel_invoice(uuid) is 'Cancels an invoice that has no payments and no credit notes (invoices.write); its number stays taken and its time entries become invoiceable again.';

-- Payments, AFTER INSERT per row (whether through recordPayment or a direct insert): the invoice
-- must take payments (sent, viewed or overdue: NOT_PAYABLE), the amount must not exceed its
-- balance (OVERPAYMENT); amount_paid grows, and clearing the balance marks the invoice paid.
-- The invoice row is locked before the payment is inserted (by record_payment, or for any insert
-- by tg_payments__lock_parent: sql/functions/lock_order.sql), so concurrent payments of one
-- invoice queue on it and are applied in turn; the lock taken here is then already held.
create or replace function app_private.tg__payment_applied() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  select i.* into v from app_public.invoices i
  where i.organization_id = new.organization_id and i.id = new.invoice_id
  for update;
  if v.status not in ('sent', 'viewed', 'overdue') or v.deleted_at is not null then
    perform app_private.fail('NOT_PAYABLE', format('An invoice that is %s takes no payments.', case when v.deleted_at is null then v.status::text else 'deleted' end));
  end if;
  if new.amount > v.balance then
    perform app_private.fail('OVERPAYMENT', format('The payment of %s is more than the balance of %s.', new.amount, v.balance));
  end if;
  update app_public.invoices i
  set amount_paid = i.amount_paid + new.amount,
      status = case when new.amount = v.balance then 'paid' else i.status end
  where i.organization_id = v.organization_id and i.id = v.id;
  return null;
end
$$;

drop trigger if exists tg_payments__applied on app_public.payments;
create trigger tg_payments__applied after insert on app_public.payments
  for each row execute function app_private.tg__payment_applied();

create or replace function app_public.record_payment(invoice_id uuid, amount numeric, received_on date default current_date, method app_public.payment_method default 'bank_transfer', reference text default null) returns app_public.payments
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v app_public.payments;
begin
  perform app_private.require_permission('invoices.write', 'record a payment');
  -- The invoice first (lock order): concurrent payments queue here; the trigger checks its status
  -- and balance as the previous payment left them.
  perform from app_public.invoices i where i.organization_id = v_org and i.id = record_payment.invoice_id for update;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such invoice in this organization.');
  end if;
  insert into app_public.payments (organization_id, invoice_id, amount, received_on, method, reference)
  values (v_org, record_payment.invoice_id, record_payment.amount,
          coalesce(record_payment.received_on, current_date), coalesce(record_payment.method, 'bank_transfer'), record_payment.reference)
  returning * into v;
  return v;
end
$$;
comment on function app_public.record_payment(uuid, numeric, date, app_public.payment_method, text) is 'Records money received for a sent, viewed or overdue invoice (invoices.write). Partial payments add up; more than the balance is refused (OVERPAYMENT); clearing the balance marks the invoice paid.';

-- Move a bill of the current organization to `status`; approving, rejecting and paying are for
-- owners and admins only (approve_bill records who approved), cancelling needs bills.write.
-- The bill is locked before its status is read: of two concurrent approvals, the second finds
-- it approved (INVALID_TRANSITION) instead of approving it again.
create or replace function app_private.set_bill_status(bill_id uuid, status app_public.bill_status, action text) returns app_public.bills
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.bills;
begin
  if status = 'cancelled' then
    perform app_private.require_permission('bills.write', action);
  else
    perform app_private.require_member_role('admin', action);
  end if;
  select b.* into v from app_public.bills b
  where b.organization_id = app_public.current_org_id() and b.id = set_bill_status.bill_id
  for update;
  if v.status = set_bill_status.status then
    perform app_private.fail('INVALID_TRANSITION', format('The bill is already %s.', status));
  elsif v.id is null or v.deleted_at is not null then
    perform app_private.fail('NOT_FOUND', 'No such bill in this organization.');
  end if;
  update app_public.bills b
  set status = set_bill_status.status,
      approved_by = case when set_bill_status.status = 'approved' then app_public.current_user_id() else b.approved_by end
  where b.organization_id = v.organization_id and b.id = v.id
  returning b.* into v;
  return v;
end
$$;

create or replace function app_public.approve_bill(bill_id uuid) returns app_public.bills
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_bill_status(bill_id, 'approved', 'approve a bill')
$$;
comment on function app_public.approve_bill(uuid) is 'Approves a pending bill for payment (owners and admins); records who approved it.';

create or replace function app_public.reject_bill(bill_id uuid) returns app_public.bills
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_bill_status(bill_id, 'rejected', 'reject a bill')
$$;
comment on function app_public.reject_bill(uuid) is 'Rejects a pending bill (owners and admins).';

create or replace function app_public.pay_bill(bill_id uuid) returns app_public.bills
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_bill_status(bill_id, 'paid', 'mark a bill paid')
$$;
comment on function app_public.pay_bill(uuid) is 'Marks an approved bill paid (owners and admins).';

create or replace function app_public.cancel_bill(bill_id uuid) returns app_public.bills
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_bill_status(bill_id, 'cancelled', 'cancel a bill')
$$;
comment on function app_public.cancel_bill(uuid) is 'Cancels a pending or approved bill (bills.write).';
--! EndIncluded functions/billing.sql
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
--   * the invoice and credit note counters continue after the highest imported numbers;
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
  insert into app_private.credit_note_counters as c (organization_id, last_number)
  select n.organization_id, max(n.number) from app_public.credit_notes n
  where n.organization_id = finish_organization_import.organization_id and n.number is not null
  group by n.organization_id
  on conflict on constraint credit_note_counters_pkey do update set last_number = greatest(c.last_number, excluded.last_number);
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
