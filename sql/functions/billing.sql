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
  update app_public.bills b set invoice_line_item_id = null
  from app_public.invoice_line_items l
  where l.organization_id = v.organization_id and l.invoice_id = v.id
    and b.organization_id = l.organization_id and b.invoice_line_item_id = l.id;
  return v;
end
$$;
comment on function app_public.cancel_invoice(uuid) is 'Cancels an invoice that has no payments and no credit notes (invoices.write); its number stays taken and its time entries, expenses and re-billed vendor bills become invoiceable again.';

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
