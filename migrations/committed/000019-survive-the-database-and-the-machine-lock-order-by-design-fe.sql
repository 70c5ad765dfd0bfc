--! Previous: sha1:e8eba9d4d7ba1f5843d9f2167234706e773417df
--! Hash: sha1:0ac0f920ec7638bedb95cbb9cb6e71d0170e170e
--! Message: Survive the database and the machine: lock order by design, fencing heartbeats

-- Lock order by design (sql/functions/lock_order.sql): lifecycle functions lock their document
-- FOR UPDATE before they read its status or touch its parts, and a payment or line locks its
-- document before its foreign key's share lock, so concurrent payments of a busy invoice queue
-- instead of deadlocking.
--! Included functions/lock_order.sql
-- Lock order: a document before its parts.
--
-- A document (an invoice, a proposal, a contract, a bill, an engagement, a contact's portal
-- access) is locked FOR UPDATE, by (organization_id, id), before anything changes it or its parts
-- (an invoice's lines and payments, a proposal's lines, an engagement's time entries), and
-- before its status is checked. Concurrent callers then queue on the document's row, and the
-- second one reads what the first one committed: no deadlock, no step taken twice.
--
-- Why the parts cannot go first: inserting a part takes a share lock on its document through
-- the foreign key (FOR KEY SHARE), and the part's trigger then updates the document (an invoice's
-- amount_paid or subtotal), which needs a stronger lock. Several transactions each holding the
-- share lock and each waiting for the stronger one deadlock (two of three payments queued behind
-- a busy invoice used to fail with DEADLOCK). So:
--
--   * lifecycle functions select the document FOR UPDATE first, then check its status and write
--     (record_payment, send_invoice, cancel_invoice, create_invoice_from_time for its
--     engagement, the proposal, contract and bill steps, grant_portal_access for its contact);
--   * a part inserted or moved by any path (recordPayment, a plain insert through the API, the
--     invoicing job) locks its document in a BEFORE trigger, ahead of the foreign key's share
--     lock: app_private.attach_parent_lock below. A part moved between two documents locks both
--     in id order;
--   * a step that ends in another document (an accepted proposal's contract and the deal it
--     wins, a signed contract's engagement) writes that one after its own;
--   * a step that only adds new rows under a document whose status it checked takes FOR SHARE
--     (create_project_from_template: the engagement stays live, time entries may still come);
--   * a function locking several rows of one kind locks them in id order (the scheduled
--     invoicing job's due schedules, the time entries create_invoice_from_time invoices);
--   * a plain update or delete of one existing part locks that part, then its document
--     (PostgreSQL locks the row before any trigger runs); no function locks a document and then
--     an existing part of it, so that order never meets its reverse.
--
-- Rows a function creates (a new invoice and its lines, a contract, an engagement) are nobody
-- else's yet and need no lock. The lock is only ever taken inside the caller's organization:
-- another tenant's id matches no row, is never locked or waited for, and answers exactly like a
-- random id. tests/lock-order.test.ts queues concurrent callers behind a held document.
-- Idempotent; re-included by later migrations.

-- BEFORE INSERT, and BEFORE UPDATE OF the document column, per row of a part: locks its document
-- (both, in id order, when the part moves) FOR UPDATE. TG_ARGV[0]: the document table;
-- TG_ARGV[1]: the part's column naming it. SECURITY DEFINER to lock a document the visitor may
-- read but not update; only rows of the caller's own organization (app_public.current_org_id())
-- are locked: a row for another organization is left to row-level security, which refuses it.
create or replace function app_private.tg__lock_parent() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_new jsonb := to_jsonb(new);
  v_ids uuid[];
begin
  if v_org is null or (v_new ->> 'organization_id')::uuid is distinct from v_org then
    return new;
  end if;
  v_ids := array[(v_new ->> tg_argv[1])::uuid];
  if tg_op = 'UPDATE' and (to_jsonb(old) ->> 'organization_id')::uuid = v_org then
    v_ids := v_ids || (to_jsonb(old) ->> tg_argv[1])::uuid;
  end if;
  execute format('select from %s d where d.organization_id = $1 and d.id = any ($2) order by d.id for update', tg_argv[0]::regclass)
    using v_org, v_ids;
  return new;
end
$$;
revoke all on function app_private.tg__lock_parent() from public;

-- Attaches tg__lock_parent to the parts table `tbl`, whose column `parent_column` names a row
-- of `parent`: trigger tg_<table>__lock_parent.
create or replace procedure app_private.attach_parent_lock(tbl regclass, parent regclass, parent_column text)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_name text := format('tg_%s__lock_parent', (select relname from pg_class where oid = tbl));
begin
  execute format('drop trigger if exists %I on %s', v_name, tbl);
  execute format('create trigger %I before insert or update of %I on %s for each row execute function app_private.tg__lock_parent(%L, %L)',
    v_name, parent_column, tbl, parent::text, parent_column);
end
$$;

-- The parts whose triggers write their document: payments (amount_paid, status:
-- sql/functions/billing.sql) and lines (subtotal: sql/functions/line_items.sql, whose
-- attach_line_item_totals also attaches this lock to any future table of lines).
call app_private.attach_parent_lock('app_public.payments', 'app_public.invoices', 'invoice_id');
call app_private.attach_parent_lock('app_public.invoice_line_items', 'app_public.invoices', 'invoice_id');
call app_private.attach_parent_lock('app_public.proposal_line_items', 'app_public.proposals', 'proposal_id');
--! EndIncluded functions/lock_order.sql
--! Included functions/line_items.sql
-- Line items (proposal_line_items, invoice_line_items) and the totals of their documents.
--
-- A line's amount is a generated column (quantity × unit price, rounded to cents). The
-- document's subtotal is kept by this trigger: after every insert, update or delete of a line
-- it is recomputed from the lines, so it can never drift and is never typed in (the visitor
-- has no privilege on it). Tax, total and balance are generated columns of the document.
-- Lines may only change while their document is a draft (NOT_EDITABLE otherwise).
-- Lock order (sql/functions/lock_order.sql): a line inserted or moved has already locked its
-- document (tg_<lines>__lock_parent, attached with the totals), so the lock taken here is held.
--
-- TG_ARGV[0]: the document table (e.g. app_public.invoices); TG_ARGV[1]: the line's column
-- naming it (e.g. invoice_id). SECURITY DEFINER: the visitor may not write subtotal itself.
create or replace function app_private.tg__line_item_totals() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_parent regclass := tg_argv[0]::regclass;
  v_fk text := tg_argv[1];
  v_row jsonb;
  v_status text;
  v_org uuid;
  v_doc uuid;
begin
  if tg_op = 'UPDATE' and (to_jsonb(old) - 'updated_at') = (to_jsonb(new) - 'updated_at') then
    return null; -- nothing changed
  end if;
  foreach v_row in array array_remove(array[
    case when tg_op in ('INSERT', 'UPDATE') then to_jsonb(new) end,
    case when tg_op = 'DELETE' or (tg_op = 'UPDATE' and (to_jsonb(old) ->> v_fk) is distinct from (to_jsonb(new) ->> v_fk)) then to_jsonb(old) end
  ], null) loop
    v_org := (v_row ->> 'organization_id')::uuid;
    v_doc := (v_row ->> v_fk)::uuid;
    -- Lock the document: concurrent line changes of one document are applied one at a time.
    execute format('select status::text from %s where organization_id = $1 and id = $2 for update', v_parent)
      into v_status using v_org, v_doc;
    continue when v_status is null; -- the document itself is being deleted
    if v_status <> 'draft' then
      perform app_private.fail('NOT_EDITABLE', format('The lines of a %s that is %s can no longer be changed.',
        app_private.singular_label((select relname from pg_class where oid = v_parent)), v_status));
    end if;
    execute format(
      'update %1$s d set subtotal = (select coalesce(sum(l.amount), 0) from %2$s l where l.organization_id = $1 and l.%3$I = $2)
       where d.organization_id = $1 and d.id = $2',
      v_parent, format('%I.%I', tg_table_schema, tg_table_name), v_fk)
      using v_org, v_doc;
  end loop;
  return null;
end
$$;

create or replace procedure app_private.attach_line_item_totals(tbl regclass, document regclass, document_column text)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
begin
  execute format('drop trigger if exists %I on %s', format('tg_%s__totals', v_rel), tbl);
  execute format('create trigger %I after insert or update or delete on %s for each row execute function app_private.tg__line_item_totals(%L, %L)',
    format('tg_%s__totals', v_rel), tbl, document::text, document_column);
  call app_private.attach_parent_lock(tbl, document, document_column);
end
$$;
--! EndIncluded functions/line_items.sql
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
  end if;
  update app_public.invoices i set status = 'cancelled'
  where i.organization_id = v.organization_id and i.id = v.id
  returning i.* into v;
  update app_public.time_entries t set invoice_id = null
  where t.organization_id = v.organization_id and t.invoice_id = v.id;
  return v;
end
$$;
comment on function app_public.cancel_invoice(uuid) is 'Cancels an invoice that has no payments (invoices.write); its number stays taken and its time entries become invoiceable again.';

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
--! Included functions/sales.sql
-- Sales lifecycle: proposals and contracts. Each step is one function (a GraphQL mutation),
-- SECURITY DEFINER so it can write the columns the visitor may not (status, stamps) — which is
-- why each one checks the organization and the permission itself first. Status changes still
-- pass through the status machine (INVALID_TRANSITION) and the edit locks.
-- Lock order (sql/functions/lock_order.sql): each step locks its proposal or contract FOR UPDATE
-- before it reads its status; what the step then creates or changes (the contract of an accepted
-- proposal, the deal it wins, the engagement of a signed contract) comes after.

-- The organization of the request, for steps members and client-portal users both take.
create or replace function app_private.acting_org_id() returns uuid
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(app_public.current_org_id(), app_public.current_portal_org_id())
$$;

-- May the caller act on a proposal (or invoice) of `engagement_id` as a client? True for a
-- portal user of that engagement, in the organization of the request.
create or replace function app_private.is_portal_user_of(engagement_id uuid) returns boolean
language sql stable
set search_path = pg_catalog
as $$
  select app_public.current_org_id() is null
    and app_public.current_portal_org_id() is not null
    and is_portal_user_of.engagement_id = any (app_public.current_portal_engagement_ids())
$$;

-- Send a draft proposal to the client (proposals.write). It needs lines and a total above zero.
create or replace function app_public.send_proposal(proposal_id uuid) returns app_public.proposals
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
begin
  perform app_private.require_permission('proposals.write', 'send a proposal');
  select p.* into v from app_public.proposals p
  where p.organization_id = app_public.current_org_id() and p.id = send_proposal.proposal_id and p.deleted_at is null
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such proposal in this organization.');
  end if;
  if v.status = 'draft' and v.total <= 0 then
    perform app_private.fail('EMPTY_DOCUMENT', 'Add at least one line with a price before sending the proposal.');
  end if;
  update app_public.proposals p set status = 'sent'
  where p.organization_id = v.organization_id and p.id = v.id
  returning p.* into v;
  return v;
end
$$;
comment on function app_public.send_proposal(uuid) is 'Sends a draft proposal (it must have a total above zero); stamps sent_at. Its lines are frozen from now on.';

-- Record that the client opened a sent proposal (its portal user, or a member with proposals.write).
create or replace function app_public.mark_proposal_viewed(proposal_id uuid) returns app_public.proposals
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
begin
  select p.* into v from app_public.proposals p
  where p.organization_id = app_private.acting_org_id() and p.id = mark_proposal_viewed.proposal_id and p.deleted_at is null
    and (app_public.has_permission('proposals.write') or (p.status <> 'draft' and app_private.is_portal_user_of(p.engagement_id)))
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such proposal for you.');
  end if;
  if v.status in ('draft', 'sent') then -- a draft is refused by the status machine
    update app_public.proposals p set status = 'viewed'
    where p.organization_id = v.organization_id and p.id = v.id
    returning p.* into v;
  end if;
  return v;
end
$$;
comment on function app_public.mark_proposal_viewed(uuid) is 'Records that the client has seen a sent proposal (stamps viewed_at once; later calls change nothing).';

-- The decision on a sent or viewed proposal, by its client (portal) or a member recording it.
create or replace function app_private.decide_proposal(proposal_id uuid, decision app_public.proposal_status, decided_by_name text) returns app_public.proposals
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
  v_action text := case decision when 'accepted' then 'accept a proposal' else 'reject a proposal' end;
begin
  if app_public.current_user_id() is null then
    perform app_private.fail('UNAUTHENTICATED', format('Sign in to %s.', v_action));
  end if;
  select p.* into v from app_public.proposals p
  where p.organization_id = app_private.acting_org_id() and p.id = decide_proposal.proposal_id and p.deleted_at is null
    and (app_public.has_permission('proposals.read') or (p.status <> 'draft' and app_private.is_portal_user_of(p.engagement_id)))
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such proposal for you.');
  end if;
  if not (app_public.has_permission('proposals.write') or app_private.is_portal_user_of(v.engagement_id)) then
    perform app_private.fail('NOT_PERMITTED', format('You need the proposals.write permission to %s.', v_action));
  end if;
  if v.status not in ('sent', 'viewed') then
    perform app_private.fail('INVALID_TRANSITION', format('A proposal cannot go from %s to %s.', v.status, decision));
  end if;
  if decision = 'accepted' and v.valid_until < current_date then
    perform app_private.fail('EXPIRED', format('This proposal was valid until %s.', v.valid_until));
  end if;
  update app_public.proposals p
  set status = decision,
      decided_by_name = coalesce(nullif(btrim(decide_proposal.decided_by_name), ''), (select u.name from app_public.users u where u.id = app_public.current_user_id()))
  where p.organization_id = v.organization_id and p.id = v.id
  returning p.* into v;
  return v;
end
$$;

-- Accept a proposal: the client (portal user of its engagement) or a member with proposals.write
-- on the client's behalf. Creates the draft contract; an open deal behind it is won.
create or replace function app_public.accept_proposal(proposal_id uuid, decided_by_name text default null) returns app_public.contracts
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.proposals := app_private.decide_proposal(proposal_id, 'accepted', decided_by_name);
  v_contract app_public.contracts;
begin
  insert into app_public.contracts (organization_id, proposal_id, client_company_id, title, value)
  values (v.organization_id, v.id, v.client_company_id, v.title, v.total)
  returning * into v_contract;
  update app_public.deals d set stage = 'won'
  where d.organization_id = v.organization_id and d.id = v.deal_id
    and d.deleted_at is null and d.stage in ('qualified', 'proposal', 'negotiation');
  return v_contract;
end
$$;
comment on function app_public.accept_proposal(uuid, text) is 'Accepts a sent or viewed proposal (its client in the portal, or a member with proposals.write) and returns the contract it creates (a draft for the same value). An open deal behind the proposal becomes won.';

create or replace function app_public.reject_proposal(proposal_id uuid, decided_by_name text default null) returns app_public.proposals
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  return app_private.decide_proposal(proposal_id, 'rejected', decided_by_name);
end
$$;
comment on function app_public.reject_proposal(uuid, text) is 'Rejects a sent or viewed proposal (its client in the portal, or a member with proposals.write).';

-- Move a contract of the current organization to `status` (contracts.write); the status machine
-- decides whether it may. The contract is locked before its status is read: of two concurrent
-- signatures, the second finds it signed (INVALID_TRANSITION) and starts no second engagement.
create or replace function app_private.set_contract_status(contract_id uuid, status app_public.contract_status, action text, signer_name text default null) returns app_public.contracts
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.contracts;
begin
  perform app_private.require_permission('contracts.write', action);
  select c.* into v from app_public.contracts c
  where c.organization_id = app_public.current_org_id() and c.id = set_contract_status.contract_id
  for update;
  if v.status = set_contract_status.status then
    perform app_private.fail('INVALID_TRANSITION', format('The contract is already %s.', status));
  elsif v.id is null or v.deleted_at is not null then
    perform app_private.fail('NOT_FOUND', 'No such contract in this organization.');
  end if;
  update app_public.contracts c
  set status = set_contract_status.status,
      signer_name = coalesce(set_contract_status.signer_name, c.signer_name)
  where c.organization_id = v.organization_id and c.id = v.id
  returning c.* into v;
  return v;
end
$$;

create or replace function app_public.send_contract(contract_id uuid) returns app_public.contracts
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_contract_status(contract_id, 'sent', 'send a contract')
$$;
comment on function app_public.send_contract(uuid) is 'Sends a draft contract for signature (contracts.write).';

-- Record the client's signature on a sent contract and start the engagement it covers.
create or replace function app_public.sign_contract(contract_id uuid, signer_name text) returns app_public.engagements
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.contracts;
  v_engagement app_public.engagements;
begin
  if nullif(btrim(sign_contract.signer_name), '') is null then
    perform app_private.fail('INVALID_VALUE', 'Give the name of the person who signed.');
  end if;
  v := app_private.set_contract_status(contract_id, 'signed', 'sign a contract', btrim(sign_contract.signer_name));
  insert into app_public.engagements (organization_id, contract_id, client_company_id, name, starts_on, ends_on)
  values (v.organization_id, v.id, v.client_company_id, v.title, coalesce(v.starts_on, current_date), v.ends_on)
  returning * into v_engagement;
  return v_engagement;
end
$$;
comment on function app_public.sign_contract(uuid, text) is 'Records the signature on a sent contract (contracts.write) and returns the active engagement it starts.';

create or replace function app_public.cancel_contract(contract_id uuid) returns app_public.contracts
language sql volatile security definer
set search_path = pg_catalog
as $$
  select * from app_private.set_contract_status(contract_id, 'cancelled', 'cancel a contract')
$$;
comment on function app_public.cancel_contract(uuid) is 'Cancels a draft or sent contract (contracts.write).';
--! EndIncluded functions/sales.sql
--! Included functions/delivery.sql
-- Delivery rules: projects from templates, and time entries.

-- Create a project in an engagement from a template (projects.write): copies the template's
-- milestones and tasks as rows of the new project, each due `offset_days` after `starts_on`,
-- tasks under the copies of their milestones.
create or replace function app_public.create_project_from_template(engagement_id uuid, template_id uuid, name text default null, starts_on date default current_date) returns app_public.projects
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_template app_public.project_templates;
  v_project app_public.projects;
  v_starts date := coalesce(create_project_from_template.starts_on, current_date);
begin
  perform app_private.require_permission('projects.write', 'create a project');
  -- FOR SHARE: the engagement stays active or on hold until the project is in it, while time
  -- entries and other projects may still be added to it (lock order: sql/functions/lock_order.sql).
  perform from app_public.engagements e
  where e.organization_id = v_org and e.id = create_project_from_template.engagement_id
    and e.deleted_at is null and e.status in ('active', 'on_hold')
  for share;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such active or on-hold engagement in this organization.');
  end if;
  select t.* into v_template from app_public.project_templates t
  where t.organization_id = v_org and t.id = create_project_from_template.template_id and t.deleted_at is null;
  if v_template.id is null then
    perform app_private.fail('NOT_FOUND', 'No such project template in this organization.');
  end if;

  insert into app_public.projects (organization_id, engagement_id, template_id, name, description, status, starts_on, due_on)
  values (
    v_org, create_project_from_template.engagement_id, v_template.id,
    coalesce(nullif(btrim(create_project_from_template.name), ''), v_template.name), v_template.description, 'planned', v_starts,
    v_starts + greatest(
      (select max(m.offset_days) from app_public.project_template_milestones m where m.organization_id = v_org and m.template_id = v_template.id),
      (select max(t.offset_days) from app_public.project_template_tasks t where t.organization_id = v_org and t.template_id = v_template.id)
    )
  )
  returning * into v_project;

  with template_milestones as (
    select m.*, gen_random_uuid() as new_id
    from app_public.project_template_milestones m
    where m.organization_id = v_org and m.template_id = v_template.id
  ), new_milestones as ( -- a data-modifying CTE always runs, referenced or not
    insert into app_public.milestones (organization_id, id, project_id, name, position, due_on)
    select v_org, tm.new_id, v_project.id, tm.name, tm.position, v_starts + tm.offset_days
    from template_milestones tm
    returning id
  )
  insert into app_public.tasks (organization_id, project_id, milestone_id, title, description, priority, position, due_on, estimate_minutes)
  select v_org, v_project.id, tm.new_id, t.title, t.description, t.priority, t.position, v_starts + t.offset_days, t.estimate_minutes
  from app_public.project_template_tasks t
  left join template_milestones tm on tm.id = t.template_milestone_id
  where t.organization_id = v_org and t.template_id = v_template.id;
  return v_project;
end
$$;
comment on function app_public.create_project_from_template(uuid, uuid, text, date) is 'Creates a project in an active or on-hold engagement from a template (projects.write), copying its milestones and tasks with due dates counted from starts_on.';

-- Time entries. BEFORE INSERT: a rate left at 0 takes the engagement's hourly rate.
-- AFTER INSERT OR UPDATE (so row-level security has admitted the row first): the task must belong
-- to the entry's engagement; once invoiced (invoice_id set) an entry no longer changes
-- (NOT_EDITABLE) until its invoice is cancelled. SECURITY DEFINER: reads engagements, projects
-- and tasks whatever the caller may read.
create or replace function app_private.tg__time_entry_rate() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if new.rate = 0 then
    new.rate := coalesce((
      select e.hourly_rate from app_public.engagements e where e.organization_id = new.organization_id and e.id = new.engagement_id
    ), 0);
  end if;
  return new;
end
$$;

create or replace function app_private.tg__time_entry_rules() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if tg_op = 'UPDATE' and old.invoice_id is not null
     and (to_jsonb(old) - 'invoice_id' - 'updated_at') is distinct from (to_jsonb(new) - 'invoice_id' - 'updated_at') then
    perform app_private.fail('NOT_EDITABLE', 'This time entry is on an invoice; cancel the invoice to change it.');
  end if;
  if new.task_id is not null and not exists (
    select from app_public.tasks t
    join app_public.projects p on p.organization_id = t.organization_id and p.id = t.project_id
    where t.organization_id = new.organization_id and t.id = new.task_id and p.engagement_id = new.engagement_id
  ) then
    perform app_private.fail('INVALID_VALUE', 'The task belongs to another engagement than the time entry.');
  end if;
  return null;
end
$$;

drop trigger if exists tg_time_entries__rate on app_public.time_entries;
create trigger tg_time_entries__rate before insert on app_public.time_entries
  for each row execute function app_private.tg__time_entry_rate();
drop trigger if exists tg_time_entries__rules on app_public.time_entries;
create trigger tg_time_entries__rules after insert or update on app_public.time_entries
  for each row execute function app_private.tg__time_entry_rules();
--! EndIncluded functions/delivery.sql
--! Included functions/portal.sql
-- The client portal: a client's contact, given access to one engagement, signs in with their own
-- account and sees that engagement's client-visible threads, messages and files and its sent
-- invoices, posts messages and accepts proposals. All of it is row-level security: the portal
-- branches of the policies (portal_read in make_tenant_table) call these helpers.
--
-- Access is granted per contact and engagement (grantPortalAccess, by holders of portal.write),
-- with a token shown once; the contact accepts it signed in with the contact's email address.

-- Portal access that is in force: accepted, not revoked, and its contact and engagement not
-- deleted (a client's employee who leaves loses the portal when their contact is deleted).
create or replace view app_private.live_portal_access as
  select a.organization_id, a.id, a.user_id, a.contact_id, a.engagement_id
  from app_public.client_portal_access a
  join app_public.contacts c on c.organization_id = a.organization_id and c.id = a.contact_id and c.deleted_at is null
  join app_public.engagements e on e.organization_id = a.organization_id and e.id = a.engagement_id and e.deleted_at is null
  where a.accepted_at is not null and a.revoked_at is null;
comment on view app_private.live_portal_access is 'Client-portal access in force (accepted, not revoked, contact and engagement not deleted). Read only by the owner''s SECURITY DEFINER helpers.';

-- The organization of the request (app.org_id) if the signed-in user holds live portal access
-- in it; null otherwise.
create or replace function app_public.current_portal_org_id() returns uuid
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.setting_uuid('app.org_id');
  v_user uuid;
begin
  if v_org is null then
    return null;
  end if;
  v_user := app_public.current_user_id();
  if v_user is null then
    return null;
  end if;
  return (select a.organization_id from app_private.live_portal_access a where a.organization_id = v_org and a.user_id = v_user limit 1);
end
$$;
comment on function app_public.current_portal_org_id() is 'The organization you are in as a client-portal user, or null.';

-- The engagements the signed-in portal user may see in the request's organization.
create or replace function app_public.current_portal_engagement_ids() returns uuid[]
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.setting_uuid('app.org_id');
  v_user uuid;
begin
  if v_org is null then
    return '{}';
  end if;
  v_user := app_public.current_user_id();
  if v_user is null then
    return '{}';
  end if;
  return (
    select coalesce(array_agg(a.engagement_id order by a.engagement_id), '{}')
    from app_private.live_portal_access a
    where a.organization_id = v_org and a.user_id = v_user
  );
end
$$;
comment on function app_public.current_portal_engagement_ids() is 'The engagements you see as a client-portal user in the current organization.';

-- May this user enter this organization (a session scoped to it)? Members and portal users may.
create or replace function app_private.can_enter_organization(user_id uuid, organization_id uuid) returns boolean
language sql stable security definer
set search_path = pg_catalog
as $$
  select exists (
    select 1 from app_public.organization_members m
    where m.organization_id = can_enter_organization.organization_id and m.user_id = can_enter_organization.user_id
  ) or exists (
    select 1 from app_private.live_portal_access a
    where a.organization_id = can_enter_organization.organization_id and a.user_id = can_enter_organization.user_id
  )
$$;

-- Give a contact portal access to an engagement of the same client. Returns the token once.
create or replace function app_public.grant_portal_access(contact_id uuid, engagement_id uuid) returns app_public.portal_access_token
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_contact app_public.contacts;
  v_token text := app_private.random_token();
  v_access app_public.client_portal_access;
  v_expires timestamptz;
begin
  perform app_private.require_permission('portal.write', 'give portal access');
  -- The contact first (lock order): two grants to one contact queue, and the second revokes the
  -- access the first made instead of colliding with it.
  select c.* into v_contact from app_public.contacts c
  where c.organization_id = v_org and c.id = grant_portal_access.contact_id and c.deleted_at is null
  for update;
  if v_contact.id is null then
    perform app_private.fail('NOT_FOUND', 'No such contact in this organization.');
  end if;
  if v_contact.email is null then
    perform app_private.fail('INVALID_VALUE', 'The contact needs an email address to use the client portal.');
  end if;
  if not exists (
    select 1 from app_public.engagements e
    where e.organization_id = v_org and e.id = grant_portal_access.engagement_id
      and e.client_company_id = v_contact.client_company_id and e.deleted_at is null
  ) then
    perform app_private.fail('NOT_FOUND', 'No such engagement with this contact''s client.');
  end if;
  update app_public.client_portal_access a set revoked_at = now()
  where a.organization_id = v_org and a.contact_id = v_contact.id and a.engagement_id = grant_portal_access.engagement_id
    and a.revoked_at is null;
  insert into app_public.client_portal_access (organization_id, contact_id, engagement_id, granted_by)
  values (v_org, v_contact.id, grant_portal_access.engagement_id, app_public.current_user_id())
  returning * into v_access;
  insert into app_private.portal_access_secrets (organization_id, access_id, token_hash, expires_at)
  values (v_org, v_access.id, app_private.hash_token(v_token), now() + interval '14 days')
  returning expires_at into v_expires;
  return row(v_access.id, v_token, v_expires)::app_public.portal_access_token;
end
$$;
comment on function app_public.grant_portal_access(uuid, uuid) is 'Gives a client contact access to one engagement in the client portal (holders of portal.write). Returns a token, shown once, for the contact to accept within 14 days (grant again for a new one).';

-- Accept portal access: the signed-in user's email must be the contact's.
create or replace function app_public.accept_portal_access(token text) returns app_public.client_portal_access
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user_id uuid := app_public.current_user_id();
  v_access app_public.client_portal_access;
begin
  if v_user_id is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in (or sign up with your email address) to open the client portal.');
  end if;
  select a.* into v_access
  from app_private.portal_access_secrets s
  join app_public.client_portal_access a on a.organization_id = s.organization_id and a.id = s.access_id
  join app_public.contacts c on c.organization_id = a.organization_id and c.id = a.contact_id
  join app_public.users u on u.id = v_user_id
  join app_public.engagements e on e.organization_id = a.organization_id and e.id = a.engagement_id and e.deleted_at is null
  where s.token_hash = app_private.hash_token(accept_portal_access.token)
    and s.expires_at > now()
    and a.accepted_at is null and a.revoked_at is null and c.deleted_at is null
    and lower(c.email) = u.email
  for update of a;
  if v_access.id is null then
    perform app_private.fail('INVITATION_INVALID', 'This portal invitation is unknown, expired, already used, revoked, or for another email address.');
  end if;
  update app_public.client_portal_access a set user_id = v_user_id, accepted_at = now()
  where a.organization_id = v_access.organization_id and a.id = v_access.id
  returning * into v_access;
  return v_access;
end
$$;
comment on function app_public.accept_portal_access(text) is 'Opens the client portal for you with a portal access token. Then call switchOrganization with its organizationId.';

-- Revoke portal access (holders of portal.write); the portal user loses the engagement at once.
create or replace function app_public.revoke_portal_access(access_id uuid) returns app_public.client_portal_access
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_access app_public.client_portal_access;
begin
  perform app_private.require_permission('portal.write', 'revoke portal access');
  update app_public.client_portal_access a set revoked_at = coalesce(a.revoked_at, now())
  where a.organization_id = app_public.current_org_id() and a.id = revoke_portal_access.access_id
  returning * into v_access;
  if v_access.id is null then
    perform app_private.fail('NOT_FOUND', 'No such portal access in this organization.');
  end if;
  return v_access;
end
$$;
comment on function app_public.revoke_portal_access(uuid) is 'Ends a client contact''s portal access (holders of portal.write).';
--! EndIncluded functions/portal.sql

-- Fencing for jobs: a heartbeat tells a worker that it was declared dead.
--! Included functions/worker_health.sql
-- Worker heartbeats and the recovery of jobs held by dead workers.
--
-- graphile-worker locks a job while a worker runs it and only takes back locks older than 4 hours,
-- so a worker killed mid-job (SIGKILL, OOM, a lost machine) would leave its job stuck that long.
-- Atrium's workers each record a heartbeat (src/worker/heartbeat.ts): their pool id (the
-- `locked_by` of every job they take), host, pid and when they were last seen. Every heartbeat
-- also sweeps: a worker not seen for `stale_after` is dead, its row is removed and
-- graphile_worker.force_unlock_workers() frees its jobs, which run again at once (their attempt
-- counted). Locks held by a pool that has no heartbeat row at all are freed once they are older
-- than `stale_after` too (a worker that died before its first heartbeat).
-- Defaults: a heartbeat every 10 s, dead after 45 s (WORKER_HEARTBEAT_INTERVAL_MS,
-- WORKER_STALE_AFTER_MS), so a killed worker's job runs again within about a minute. A worker
-- that was only paused learns from its next heartbeat that it was declared dead, and is fenced
-- from the jobs it held (src/worker/fencing.ts; the arithmetic: docs/DATA_FLOWS.md).
-- Idempotent; re-included by later migrations.

create table if not exists app_private.worker_heartbeats (
  worker_id text primary key,
  hostname text not null,
  pid integer not null,
  started_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now()
);
alter table app_private.worker_heartbeats enable row level security;
alter table app_private.worker_heartbeats force row level security;
comment on table app_private.worker_heartbeats is 'Running job workers (graphile-worker pool id = locked_by of their jobs) and when each was last seen.';
revoke all on app_private.worker_heartbeats from public;
grant select, insert, update, delete on app_private.worker_heartbeats to :DATABASE_WORKER;
drop policy if exists worker_all_select on app_private.worker_heartbeats;
drop policy if exists worker_all_insert on app_private.worker_heartbeats;
drop policy if exists worker_all_update on app_private.worker_heartbeats;
drop policy if exists worker_all_delete on app_private.worker_heartbeats;
create policy worker_all_select on app_private.worker_heartbeats for select to :DATABASE_WORKER using (true);
create policy worker_all_insert on app_private.worker_heartbeats for insert to :DATABASE_WORKER with check (true);
create policy worker_all_update on app_private.worker_heartbeats for update to :DATABASE_WORKER using (true) with check (true);
create policy worker_all_delete on app_private.worker_heartbeats for delete to :DATABASE_WORKER using (true);
comment on policy worker_all_select on app_private.worker_heartbeats is 'Workers see every worker''s heartbeat (to find dead ones).';
comment on policy worker_all_insert on app_private.worker_heartbeats is 'A worker registers itself.';
comment on policy worker_all_update on app_private.worker_heartbeats is 'A worker records that it is alive.';
comment on policy worker_all_delete on app_private.worker_heartbeats is 'A worker removes itself on shutdown, or a dead worker''s row when sweeping.';

-- Records that `worker_id` is alive.
create or replace function app_private.worker_heartbeat(worker_id text, hostname text, pid integer) returns void
language sql volatile
set search_path = pg_catalog
as $$
  insert into app_private.worker_heartbeats as h (worker_id, hostname, pid)
  values (worker_id, hostname, pid)
  on conflict on constraint worker_heartbeats_pkey do update set last_seen_at = now(), hostname = excluded.hostname, pid = excluded.pid
$$;
revoke all on function app_private.worker_heartbeat(text, text, integer) from public;
grant execute on function app_private.worker_heartbeat(text, text, integer) to :DATABASE_WORKER;

-- Records that `worker_id` is alive and says whether it still counts as alive. `register`: the
-- pool's first heartbeat, which creates its row. Afterwards only an existing row is touched, and
-- false means the row is gone: another worker declared this one dead (recover_stale_workers) and
-- its jobs run elsewhere. The worker then stops acting for the jobs it held and starts afresh
-- under a new pool id (src/worker/heartbeat.ts, src/worker/fencing.ts) — a swept worker never
-- brings its row back. (The three-argument form above, which re-creates the row, stays for
-- workers of earlier versions.)
create or replace function app_private.worker_heartbeat(worker_id text, hostname text, pid integer, register boolean) returns boolean
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  if register then
    insert into app_private.worker_heartbeats as h (worker_id, hostname, pid)
    values (worker_heartbeat.worker_id, worker_heartbeat.hostname, worker_heartbeat.pid)
    on conflict on constraint worker_heartbeats_pkey do update set last_seen_at = now(), hostname = excluded.hostname, pid = excluded.pid;
    return true;
  end if;
  update app_private.worker_heartbeats h
  set last_seen_at = now(), hostname = worker_heartbeat.hostname, pid = worker_heartbeat.pid
  where h.worker_id = worker_heartbeat.worker_id;
  return found;
end
$$;
revoke all on function app_private.worker_heartbeat(text, text, integer, boolean) from public;
grant execute on function app_private.worker_heartbeat(text, text, integer, boolean) to :DATABASE_WORKER;

-- Frees the jobs of workers not seen for `stale_after` (and of lock holders that never had a
-- heartbeat, once their locks are that old). Returns one row per dead worker with how many jobs
-- it held. Safe to run from every worker at once.
create or replace function app_private.recover_stale_workers(stale_after interval)
returns table (worker_id text, last_seen_at timestamptz, jobs_unlocked integer)
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_gone text[];
  v_seen timestamptz[];
  v_orphans text[];
  v_dead text[];
begin
  if stale_after < interval '1 second' then
    raise exception 'stale_after must be at least 1 second' using errcode = '22023';
  end if;
  with gone as (
    delete from app_private.worker_heartbeats h
    where h.last_seen_at < now() - stale_after
    returning h.worker_id, h.last_seen_at
  )
  select coalesce(array_agg(g.worker_id order by g.worker_id), '{}'), coalesce(array_agg(g.last_seen_at order by g.worker_id), '{}')
  into v_gone, v_seen
  from gone g;
  select coalesce(array_agg(distinct j.locked_by), '{}') into v_orphans
  from graphile_worker._private_jobs j
  where j.locked_by is not null and j.locked_at < now() - stale_after
    and j.locked_by <> all (v_gone)
    and not exists (select from app_private.worker_heartbeats h where h.worker_id = j.locked_by);
  v_dead := v_gone || v_orphans;
  if cardinality(v_dead) = 0 then
    return;
  end if;
  return query
    select d.worker_id, d.last_seen_at, (select count(*)::integer from graphile_worker._private_jobs j where j.locked_by = d.worker_id)
    from (
      select g.worker_id, g.last_seen_at from unnest(v_gone, v_seen) as g(worker_id, last_seen_at)
      union all
      select o.worker_id, null::timestamptz from unnest(v_orphans) as o(worker_id)
    ) d
    order by 1;
  perform graphile_worker.force_unlock_workers(v_dead);
end
$$;
revoke all on function app_private.recover_stale_workers(interval) from public;
grant execute on function app_private.recover_stale_workers(interval) to :DATABASE_WORKER;
--! EndIncluded functions/worker_health.sql
