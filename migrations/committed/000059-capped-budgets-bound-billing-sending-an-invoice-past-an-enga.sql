--! Previous: sha1:32b34af2fa91b7aed3bcf95fe980ee6add2da59d
--! Hash: sha1:aad8d4096b41c82988e4df8a9a8b7e565aa64b67
--! Message: Capped budgets bound billing: sending an invoice past an engagement's cap is refused (BUDGET_CAP_EXCEEDED); an auto-sent scheduled invoice over it stays a draft

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
set local statement_timeout = '60s';
-- Capped budgets bound billing: sending an invoice past the cap is refused (BUDGET_CAP_EXCEEDED);
-- a scheduled invoice that would be leaves the job as a draft.
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
  v_approval boolean := coalesce((select o.time_approval_required from app_public.organizations o where o.id = v_org), true);
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
      -- Only approved weeks, where the organization requires approval (sql/functions/timesheets.sql).
      and (not v_approval or exists (
        select from app_public.timesheets s
        where s.organization_id = t.organization_id and s.member_id = t.member_id
          and s.week_starts_on = date_trunc('week', t.work_date)::date and s.status = 'approved'))
    order by t.id
    for update of t
  ) t;
  if v_ids is null then
    perform app_private.fail('EMPTY_DOCUMENT', case when v_approval
      then 'This engagement has no billable time of approved timesheets that is not invoiced yet.'
      else 'This engagement has no billable time that is not invoiced yet.' end);
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
comment on function app_public.create_invoice_from_time(uuid, numeric) is 'Creates a draft invoice of an engagement''s billable, not yet invoiced time (invoices.write) — of approved timesheets only, unless the organization does not require approval: a line per task and rate.';

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
  perform app_private.check_budget_cap(v);
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
comment on function app_public.send_invoice(uuid) is 'Sends a draft invoice (invoices.write): gives it the organization''s next number, its issue and due dates; it is frozen from now on. Refused when it would bill past a capped budget of its engagement (BUDGET_CAP_EXCEEDED).';

-- A capped budget of the invoice's engagement (sql/functions/budgets.sql; the whole engagement,
-- in the invoice's currency) bounds what is billed: the net of its sent, viewed, paid and overdue
-- invoices, less credit notes (write-offs give up money billed; they do not unbill it), plus
-- this invoice, stays within the cap (BUDGET_CAP_EXCEEDED). Called by send_invoice, the
-- engagement's invoices queued on the invoice's lock and, for two invoices of one engagement
-- sent at once, on the budget's (locked here).
create or replace function app_private.check_budget_cap(v app_public.invoices) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_budget app_public.budgets;
  v_billed numeric;
begin
  if v.engagement_id is null then
    return;
  end if;
  select b.* into v_budget from app_public.budgets b
  where b.organization_id = v.organization_id and b.engagement_id = v.engagement_id and b.kind = 'capped'
    and b.project_id is null and b.deleted_at is null and b.currency = v.currency
  order by b.amount, b.id
  limit 1
  for update;
  if v_budget.id is null then
    return;
  end if;
  select coalesce(sum(i.subtotal), 0) - coalesce(sum((
      select sum(n.subtotal) from app_public.credit_notes n
      where n.organization_id = i.organization_id and n.invoice_id = i.id and n.kind = 'credit')), 0)
  into v_billed
  from app_public.invoices i
  where i.organization_id = v.organization_id and i.engagement_id = v.engagement_id and i.currency = v.currency
    and i.status in ('sent', 'viewed', 'paid', 'overdue') and i.deleted_at is null and i.id <> v.id;
  if v_billed + v.subtotal > v_budget.amount then
    perform app_private.fail('BUDGET_CAP_EXCEEDED', format(
      'Sending this invoice would bill %s in all against the budget "%s", whose cap is %s: %s billed before, %s net on this invoice. Lower the invoice or raise the cap.',
      round(v_billed + v.subtotal, 2), v_budget.name, v_budget.amount, round(v_billed, 2), v.subtotal));
  end if;
end
$$;
revoke all on function app_private.check_budget_cap(app_public.invoices) from public;

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

-- Cancel an invoice without payments (invoices.write); its time entries and expenses can be
-- invoiced again.
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
  update app_public.expenses e set invoice_line_item_id = null
  from app_public.invoice_line_items l
  where l.organization_id = v.organization_id and l.invoice_id = v.id
    and e.organization_id = l.organization_id and e.invoice_line_item_id = l.id;
  return v;
end
$$;
comment on function app_public.cancel_invoice(uuid) is 'Cancels an invoice that has no payments and no credit notes (invoices.write); its number stays taken and its time entries and expenses become invoiceable again.';

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
--! Included functions/invoice_schedules.sql
-- Scheduled invoicing: invoices generated from app_public.invoice_schedules by the job worker
-- (src/worker/tasks/scheduled_invoicing.ts fans out, tenant_invoicing.ts runs one organization):
--
--   recurring  one invoice per period: the period starting on next_run_on, then every week,
--              month, quarter or year after it, up to and including `day`; a run that comes late
--              (the worker was down) bills every missed period, each on its own invoice. Periods
--              are counted from the schedule's anchor (anchor_on), so month ends do not drift:
--              Jan 31, Feb 28, Mar 31. A period starting after ends_on is not billed: the
--              schedule then becomes inactive.
--   fixed      one invoice on next_run_on, then the schedule becomes inactive.
--   milestone  one invoice once its milestone is reached, then the schedule becomes inactive.
--
-- Exactly once per period: each invoice carries its schedule and period_start, and the unique
-- constraint invoices_organization_id_schedule_id_period_start_key admits one invoice per
-- schedule and period, whatever runs concurrently. The generator also locks each due schedule
-- (FOR UPDATE) before billing it, so a second run waits, then finds the schedule advanced and
-- bills nothing (tests/invoice-schedules.test.ts, two parallel connections).
--
-- An invoice is a draft with one line (the schedule's description and amount, for the period)
-- and the schedule's tax rate. With auto_send the generator sends it at once through
-- app_public.send_invoice, in the same transaction: the gapless number, issue and due dates
-- (issue date + the organization's payment_terms_days), status stamps, audit event and outbox job
-- are exactly those of a person sending it. One that would bill past a capped budget of the
-- engagement (BUDGET_CAP_EXCEEDED) stays a draft for someone to review.
-- Only schedules of live engagements (active or on hold, not deleted) bill; soft-deleted or
-- inactive schedules never do. Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- Columns

alter table app_public.invoice_schedules
  add column if not exists auto_send boolean not null default false,
  add column if not exists tax_rate numeric(5,2) not null default 0 check (tax_rate between 0 and 100),
  add column if not exists anchor_on date;
comment on column app_public.invoice_schedules.auto_send is 'Send each generated invoice at once (numbered, dated, due after the organization''s payment terms); otherwise it stays a draft to review and send.';
comment on column app_public.invoice_schedules.tax_rate is 'Tax rate (percent) of the invoices it generates.';
comment on column app_public.invoice_schedules.anchor_on is 'Recurring schedules: the date periods are counted from (kept by the database: the first next_run_on, and any next_run_on moved off its rhythm).';
comment on column app_public.invoice_schedules.next_run_on is 'Recurring: the start of the next period to bill; fixed: the billing date. Advanced by the invoicing job.';
comment on column app_public.invoice_schedules.active is 'Inactive schedules bill nothing; a fixed or milestone schedule, or a recurring one past ends_on, becomes inactive once it has billed.';
-- The visitor sets auto_send and tax_rate like the other schedule fields; anchor_on is the
-- database's (no privilege, like last_invoiced_at).
grant insert (auto_send, tax_rate), update (auto_send, tax_rate) on app_public.invoice_schedules to :DATABASE_VISITOR;

alter table app_public.invoices
  add column if not exists period_start date,
  add column if not exists period_end date;
comment on column app_public.invoices.period_start is 'Invoices generated by a schedule: the start of the period billed (recurring), the billing date (fixed) or the day the milestone was reached. One invoice per schedule and period.';
comment on column app_public.invoices.period_end is 'Recurring schedules: the last day of the period billed.';
-- Exactly once per period: the one rule every concurrent or repeated run meets. (Each constraint
-- is added once: adding it checks every invoice.)
do $$
begin
  if not exists (select from pg_constraint where conname = 'invoices_schedule_period_check' and conrelid = 'app_public.invoices'::regclass) then
    alter table app_public.invoices add constraint invoices_schedule_period_check
      check ((schedule_id is null) = (period_start is null) and period_end >= period_start);
  end if;
  if not exists (select from pg_constraint where conname = 'invoices_organization_id_schedule_id_period_start_key' and conrelid = 'app_public.invoices'::regclass) then
    alter table app_public.invoices
      add constraint invoices_organization_id_schedule_id_period_start_key unique (organization_id, schedule_id, period_start);
  end if;
end
$$;
-- period_start and period_end get no visitor privilege: only the generator writes them (like
-- schedule_id, a read-only column of invoices).

------------------------------------------------------------------------------------------------
-- Periods

-- The length of one period of a recurring schedule.
create or replace function app_private.schedule_step(frequency app_public.schedule_frequency) returns interval
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select case frequency
    when 'weekly' then interval '7 days'
    when 'monthly' then interval '1 month'
    when 'quarterly' then interval '3 months'
    when 'yearly' then interval '1 year'
  end
$$;

-- The first period start after `after` of a schedule anchored on `anchor`: anchor + n steps for
-- the smallest such n, each counted from the anchor (never from the previous, possibly clamped,
-- start), so a schedule anchored on the 31st bills on the 31st of every month that has one.
create or replace function app_private.schedule_next_start(anchor date, frequency app_public.schedule_frequency, after date) returns date
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
declare
  v_step interval := app_private.schedule_step(frequency);
  -- A lower bound for n: no period is longer than this many days.
  v_n integer := greatest(0, (after - anchor) / case frequency when 'weekly' then 7 when 'monthly' then 31 when 'quarterly' then 92 else 366 end - 1);
begin
  while (anchor + v_n * v_step)::date <= after loop
    v_n := v_n + 1;
  end loop;
  return (anchor + v_n * v_step)::date;
end
$$;

-- BEFORE INSERT OR UPDATE OF next_run_on, frequency, kind: keeps anchor_on. A new recurring
-- schedule is anchored on its next_run_on; moving next_run_on to a date off the anchor's rhythm
-- (or changing the frequency so that it is) re-anchors it there. The generator only moves
-- next_run_on along the rhythm, which keeps the anchor. SECURITY DEFINER so that the visitor
-- needs no privilege on the period helpers.
create or replace function app_private.tg__invoice_schedule_anchor() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if new.kind <> 'recurring' or new.next_run_on is null then
    new.anchor_on := null;
  elsif tg_op = 'INSERT' or new.anchor_on is null or new.anchor_on > new.next_run_on
     or app_private.schedule_next_start(new.anchor_on, new.frequency, new.next_run_on - 1) <> new.next_run_on then
    new.anchor_on := new.next_run_on;
  end if;
  return new;
end
$$;

drop trigger if exists tg_invoice_schedules__anchor on app_public.invoice_schedules;
create trigger tg_invoice_schedules__anchor before insert or update of next_run_on, frequency, kind on app_public.invoice_schedules
  for each row execute function app_private.tg__invoice_schedule_anchor();
-- Schedules made before the column existed.
update app_public.invoice_schedules s set anchor_on = s.next_run_on
where s.kind = 'recurring' and s.anchor_on is null and s.next_run_on is not null;

------------------------------------------------------------------------------------------------
-- Generating

-- Is schedule `s` due on `day`? Active, not deleted, its engagement live (active or on hold, not
-- deleted), and: a date schedule's next_run_on has come; a milestone schedule's milestone is
-- reached. One definition for the fan-out and the generator.
create or replace function app_private.invoice_schedule_is_due(s app_public.invoice_schedules, day date) returns boolean
language sql stable
set search_path = pg_catalog
as $$
  select s.active and s.deleted_at is null
    and exists (
      select from app_public.engagements e
      where e.organization_id = s.organization_id and e.id = s.engagement_id
        and e.deleted_at is null and e.status in ('active', 'on_hold')
    )
    and case
      when s.kind = 'milestone' then exists (
        select from app_public.milestones m
        where m.organization_id = s.organization_id and m.id = s.milestone_id and m.status = 'reached'
      )
      else s.next_run_on <= day
    end
$$;

-- One invoice of schedule `s` for the period [period_start, period_end]: a draft with one line,
-- sent at once when the schedule says so. Returns its id, or null when that period already has
-- its invoice (the unique constraint decides, so concurrent runs cannot both create it).
create or replace function app_private.create_scheduled_invoice(s app_public.invoice_schedules, period_start date, period_end date, label text) returns uuid
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_id uuid;
begin
  insert into app_public.invoices (organization_id, client_company_id, engagement_id, schedule_id, period_start, period_end, tax_rate)
  select s.organization_id, e.client_company_id, e.id, s.id, create_scheduled_invoice.period_start, create_scheduled_invoice.period_end, s.tax_rate
  from app_public.engagements e
  where e.organization_id = s.organization_id and e.id = s.engagement_id
  on conflict on constraint invoices_organization_id_schedule_id_period_start_key do nothing
  returning id into v_id;
  if v_id is null then
    return null;
  end if;
  insert into app_public.invoice_line_items (organization_id, invoice_id, position, description, quantity, unit_price)
  values (s.organization_id, v_id, 1, left(s.description || coalesce(', ' || label, ''), 1000), 1, s.amount);
  if s.auto_send then
    begin
      perform app_public.send_invoice(v_id);
    exception when sqlstate 'AT468' then
      null; -- past a capped budget (BUDGET_CAP_EXCEEDED): left a draft for someone to review
    end;
  end if;
  return v_id;
end
$$;

-- Bills schedule `s` (locked by the caller, and due) for every due period up to `day`, advances
-- or ends it, and returns how many invoices it created.
create or replace function app_private.bill_schedule(s app_public.invoice_schedules, day date) returns integer
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_start date;
  v_next date;
  v_last date;
  v_created integer := 0;
begin
  if s.kind = 'recurring' then
    v_start := s.next_run_on;
    v_last := s.next_run_on;
    while v_start <= day and (s.ends_on is null or v_start <= s.ends_on) loop
      v_next := app_private.schedule_next_start(coalesce(s.anchor_on, s.next_run_on), s.frequency, v_start);
      if app_private.create_scheduled_invoice(s, v_start, v_next - 1, format('%s – %s', v_start, v_next - 1)) is not null then
        v_created := v_created + 1;
      end if;
      v_last := v_start;
      v_start := v_next;
    end loop;
    if s.ends_on is not null and v_start > s.ends_on then
      -- The last period is billed: next_run_on stays on it (it may not pass ends_on).
      update app_public.invoice_schedules t set active = false, next_run_on = v_last,
        last_invoiced_at = case when v_created > 0 then now() else t.last_invoiced_at end
      where t.organization_id = s.organization_id and t.id = s.id;
    else
      update app_public.invoice_schedules t set next_run_on = v_start,
        last_invoiced_at = case when v_created > 0 then now() else t.last_invoiced_at end
      where t.organization_id = s.organization_id and t.id = s.id;
    end if;
  else
    if app_private.create_scheduled_invoice(
      s,
      case when s.kind = 'fixed' then s.next_run_on else (
        select (m.reached_at at time zone 'UTC')::date from app_public.milestones m
        where m.organization_id = s.organization_id and m.id = s.milestone_id
      ) end,
      null,
      null
    ) is not null then
      v_created := v_created + 1;
    end if;
    update app_public.invoice_schedules t set active = false,
      last_invoiced_at = case when v_created > 0 then now() else t.last_invoiced_at end
    where t.organization_id = s.organization_id and t.id = s.id;
  end if;
  return v_created;
end
$$;
revoke all on function app_private.bill_schedule(app_public.invoice_schedules, date) from public;

-- Bills every due period of the current organization's schedules up to `day` (see the top of
-- this file) and returns how many invoices it created. Only the worker's session, inside one
-- organization; a second run for the same day creates nothing.
create or replace function app_private.generate_scheduled_invoices(day date) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  s app_public.invoice_schedules;
  v_created integer := 0;
begin
  -- Locked in id order (two runs never deadlock); a row changed by a concurrent run is re-read
  -- and re-checked after its lock is granted, so a schedule that run advanced is no longer due.
  for s in
    select t.* from app_public.invoice_schedules t
    where t.organization_id = v_org and t.active and t.deleted_at is null
      and (t.kind = 'milestone' or t.next_run_on <= day)
      and app_private.invoice_schedule_is_due(t, day)
    order by t.id
    for update of t
  loop
    v_created := v_created + app_private.bill_schedule(s, day);
  end loop;
  return v_created;
end
$$;

-- "Invoice this schedule now" (invoices.write): what the nightly job would bill for it today, at
-- once — every due period, the schedule advanced or ended as the job leaves it. Not due: refused.
create or replace function app_public.invoice_schedule_now(schedule_id uuid) returns setof app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  s app_public.invoice_schedules;
begin
  perform app_private.require_permission('invoices.write', 'invoice a schedule');
  -- The schedule first, as the job locks it: a concurrent run of the job waits, then finds it
  -- advanced (nothing due) instead of billing the period again.
  select t.* into s from app_public.invoice_schedules t
  where t.organization_id = v_org and t.id = invoice_schedule_now.schedule_id and t.deleted_at is null
  for update;
  if s.id is null then
    perform app_private.fail('NOT_FOUND', 'No such invoice schedule in this organization.');
  end if;
  if not app_private.invoice_schedule_is_due(s, current_date) then
    perform app_private.fail('INVALID_TRANSITION', case
      when not s.active then 'This schedule is not active.'
      when s.kind = 'milestone' then 'This schedule bills when its milestone is reached.'
      else format('This schedule has nothing due before %s.', s.next_run_on) end);
  end if;
  perform app_private.bill_schedule(s, current_date);
  -- The invoices this transaction made for it.
  return query select i.* from app_public.invoices i
    where i.organization_id = v_org and i.schedule_id = s.id and i.created_at = now()
    order by i.period_start nulls first, i.id;
end
$$;
revoke all on function app_public.invoice_schedule_now(uuid) from public;
grant execute on function app_public.invoice_schedule_now(uuid) to :DATABASE_VISITOR;
comment on function app_public.invoice_schedule_now(uuid) is 'Bills a due schedule now (invoices.write), as the nightly job would today: every due period on its own invoice (sent at once with auto_send); the schedule advances or ends. Returns the invoices it made. A schedule with nothing due is refused (INVALID_TRANSITION).';

-- One tenant_invoicing job per organization that has a schedule due on `day` (job key
-- tenant_invoicing:<organization>:<day>: one per organization and day, however often the crontab
-- fires or backfills). Returns how many organizations.
create or replace function app_private.enqueue_scheduled_invoicing(day date) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_count integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker runs scheduled invoicing.');
  end if;
  select count(*) into v_count
  from (
    select distinct s.organization_id
    from app_public.invoice_schedules s
    where s.active and s.deleted_at is null
      and (s.kind = 'milestone' or s.next_run_on <= day)
      and app_private.invoice_schedule_is_due(s, day)
  ) o,
    lateral graphile_worker.add_job(
      'tenant_invoicing',
      json_build_object('organization_id', o.organization_id, 'day', day),
      job_key => format('tenant_invoicing:%s:%s', o.organization_id, day),
      max_attempts => 10
    ) j;
  return v_count;
end
$$;

revoke all on function
  app_private.schedule_step(app_public.schedule_frequency),
  app_private.schedule_next_start(date, app_public.schedule_frequency, date),
  app_private.tg__invoice_schedule_anchor(),
  app_private.invoice_schedule_is_due(app_public.invoice_schedules, date),
  app_private.create_scheduled_invoice(app_public.invoice_schedules, date, date, text),
  app_private.generate_scheduled_invoices(date),
  app_private.enqueue_scheduled_invoicing(date)
from public;
-- The worker's grants are at the end of the migration that includes this file.
--! EndIncluded functions/invoice_schedules.sql
