--! Previous: sha1:aad8d4096b41c82988e4df8a9a8b7e565aa64b67
--! Hash: sha1:71110ceb28e3f28753f48bb72f1a08c1d72f19a0
--! Message: Vendor bills re-billed: bills marked rebill (approved or paid) are added to the engagement's draft invoice by addExpensesToInvoice, a line each at their amount; cancelling the invoice or deleting the line frees them

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
set local statement_timeout = '60s';
-- Vendor bills of an engagement re-billed to its client (bills.rebill), like expenses.
--! Included functions/expenses.sql
-- Expenses (docs/ENTITIES.md, "Expenses"): what members spend for the firm or for a client
-- (travel, software, materials), approved, reimbursed by the firm and, when billable, re-billed
-- to the client on an invoice.
--
--   expense_categories  per organization (Travel, Software, ...): whether its expenses are
--                       billable by default, and the markup they are re-billed with.
--   expenses            one member's expense: date, category, description, amount and currency
--                       (given, or the engagement's, or the organization's: fixed once created),
--                       a receipt (a file_objects row), billable or not (a billable expense
--                       names its engagement), markup_percent (the category's unless given);
--                       billable_amount = amount × (1 + markup / 100).
--   The life of an expense (app_private.status_transitions):
--     draft → submitted (submitExpense, expenses.write) → approved or rejected with a reason
--     (approveExpense / rejectExpense: expenses.approve, special, admins by default; one's own
--     only as an owner or admin); rejected → submitted again once fixed; approved → rejected
--     while it is not invoiced. Only a draft or rejected expense is changed or deleted.
--   Re-billing: addExpensesToInvoice(invoice) adds the engagement's approved, billable, not yet
--   invoiced expenses of the invoice's currency to a draft invoice, a line each (at the billable
--   amount), and links them to their line (invoice_line_item_id): deleting the line or
--   cancelling the invoice makes them invoiceable again. Vendor bills of the engagement marked
--   `rebill` (approved or paid, in the invoice's currency) are re-billed the same way, at their
--   amount.
-- Idempotent; re-included by later migrations.

create table if not exists app_public.expense_categories (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 100),
  billable_by_default boolean not null default false,
  markup_percent app_public.percentage not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create unique index if not exists expense_categories_name_key on app_public.expense_categories (organization_id, lower(btrim(name))) where deleted_at is null;
comment on table app_public.expense_categories is 'Kinds of expenses (Travel, Software, ...): whether they are billable to the client by default, and the markup they are re-billed with.';
comment on column app_public.expense_categories.markup_percent is 'Added on top of a billable expense when it is re-billed (10 = 10%); an expense may set its own.';

create table if not exists app_public.expenses (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  member_id uuid not null,
  category_id uuid not null,
  engagement_id uuid,
  incurred_on app_public.business_date not null default current_date,
  description text not null check (length(btrim(description)) between 1 and 1000),
  amount app_public.money_amount not null check (amount > 0),
  currency text not null constraint expenses_currency_format check (currency ~ '^[A-Z]{3}$'),
  billable boolean not null,
  markup_percent app_public.percentage not null,
  billable_amount app_public.money_amount generated always as (case when billable then round(amount * (1 + markup_percent / 100), 2) else 0 end) stored,
  receipt_file_id uuid,
  status text not null default 'draft' check (status in ('draft', 'submitted', 'approved', 'rejected')),
  submitted_at timestamptz,
  decided_at timestamptz,
  decided_by uuid,
  rejection_reason text check (length(btrim(rejection_reason)) between 1 and 2000),
  invoice_line_item_id uuid,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  constraint expenses_billable_engagement check (not billable or engagement_id is not null),
  constraint expenses_rejected_with_reason check ((status = 'rejected') = (rejection_reason is not null)),
  constraint expenses_invoiced_approved check (invoice_line_item_id is null or (status = 'approved' and billable)),
  foreign key (organization_id, member_id) references app_public.organization_members,
  foreign key (organization_id, category_id) references app_public.expense_categories,
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, decided_by) references app_public.organization_members (organization_id, id),
  foreign key (organization_id, receipt_file_id) references app_public.file_objects on delete set null (receipt_file_id),
  foreign key (organization_id, invoice_line_item_id) references app_public.invoice_line_items on delete set null (invoice_line_item_id)
);
create index if not exists expenses_organization_id_member_id_idx on app_public.expenses (organization_id, member_id, incurred_on);
create index if not exists expenses_organization_id_category_id_idx on app_public.expenses (organization_id, category_id);
create index if not exists expenses_organization_id_engagement_id_idx on app_public.expenses (organization_id, engagement_id, status);
create index if not exists expenses_organization_id_decided_by_idx on app_public.expenses (organization_id, decided_by);
create index if not exists expenses_organization_id_receipt_file_id_idx on app_public.expenses (organization_id, receipt_file_id);
create index if not exists expenses_organization_id_invoice_line_item_id_idx on app_public.expenses (organization_id, invoice_line_item_id);
create index if not exists expenses_organization_id_status_idx on app_public.expenses (organization_id, status, incurred_on);
comment on table app_public.expenses is 'What a member spent for the firm or a client: draft → submitted → approved or rejected (with a reason). Billable expenses are re-billed on the engagement''s invoices (addExpensesToInvoice) at amount plus markup.';
comment on column app_public.expenses.member_id is E'@hasDefault\nWho spent it (by default: you).';
comment on column app_public.expenses.billable is E'@hasDefault\nRe-billed to the client (then it names its engagement). By default: its category''s choice.';
comment on column app_public.expenses.markup_percent is E'@hasDefault\nAdded when re-billed (10 = 10%). By default: its category''s.';
comment on column app_public.expenses.currency is E'@hasDefault\nISO 4217 code of its amount, fixed when it is created (given, or the engagement''s, or the organization''s). Re-billed only on invoices of this currency.';
comment on column app_public.expenses.billable_amount is 'What the client is billed: amount × (1 + markup_percent / 100) when billable, else 0.';
comment on column app_public.expenses.receipt_file_id is 'The receipt (an uploaded file: requestFileUpload).';
comment on column app_public.expenses.invoice_line_item_id is 'The invoice line that re-bills it (addExpensesToInvoice); none: not invoiced.';

call app_private.make_tenant_table('app_public.expense_categories', 'expenses', soft_delete_as => 'expense_category');
call app_private.make_tenant_table('app_public.expenses', 'expenses', soft_delete_as => 'expense',
  readonly_columns => array['status', 'submitted_at', 'decided_at', 'decided_by', 'rejection_reason', 'invoice_line_item_id']);
call app_private.classify_columns('app_public.expense_categories', '{"name": "free_text"}');
call app_private.classify_columns('app_public.expenses', '{"description": "free_text", "rejection_reason": "free_text", "status": "none", "currency": "none"}');
call app_private.set_audit_parent('app_public.expenses', 'member_id', 'app_public.organization_members');
call app_private.declare_record_retention('app_public.expenses', true, 'money spent and re-billed: the books');
call app_private.declare_record_retention('app_public.expense_categories', false, 'a list of kinds, not a booking');

-- The currency: given, or the engagement's, or the organization's; never changed
-- (sql/functions/currencies.sql).
insert into app_private.currency_sources (table_name, source) values ('expenses', 'given_engagement_client_organization')
on conflict (table_name) do update set source = excluded.source;
revoke update (currency) on app_public.expenses from :DATABASE_VISITOR;
drop trigger if exists tg_expenses__currency on app_public.expenses;
create trigger tg_expenses__currency before insert or update of currency on app_public.expenses
  for each row execute function app_private.tg__document_currency();

-- Its life: the statuses it may enter, and the stamps.
insert into app_private.status_transitions (table_name, from_status, to_status, stamp_column) values
  ('expenses', '*new*', 'draft', null),
  ('expenses', 'draft', 'submitted', 'submitted_at'),
  ('expenses', 'rejected', 'submitted', 'submitted_at'),
  ('expenses', 'submitted', 'approved', 'decided_at'),
  ('expenses', 'submitted', 'rejected', 'decided_at'),
  ('expenses', 'approved', 'rejected', 'decided_at')
on conflict (table_name, from_status, to_status) do update set stamp_column = excluded.stamp_column;
call app_private.attach_status_machine('app_public.expenses');
-- Submitted and approved expenses are frozen (deleting one too).
call app_private.attach_edit_lock('app_public.expenses', array['draft', 'rejected'], also_locked => array['deleted_at']);

-- BEFORE INSERT: the member (you, unless given), billable and markup from the category unless
-- given. (Reads only the row's own organization; row-level security judges the row after.)
create or replace function app_private.tg_expenses__defaults() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_category app_public.expense_categories;
begin
  if new.member_id is null then
    select m.id into new.member_id from app_public.organization_members m
    where m.organization_id = new.organization_id and m.user_id = app_public.current_user_id();
  end if;
  select c.* into v_category from app_public.expense_categories c
  where c.organization_id = new.organization_id and c.id = new.category_id;
  if v_category.deleted_at is not null then
    perform app_private.fail('INVALID_VALUE', 'This expense category is deleted: choose another.');
  end if;
  new.billable := coalesce(new.billable, v_category.billable_by_default, false);
  new.markup_percent := coalesce(new.markup_percent, v_category.markup_percent, 0);
  return new;
end
$$;
drop trigger if exists tg_expenses__defaults on app_public.expenses;
create trigger tg_expenses__defaults before insert on app_public.expenses
  for each row execute function app_private.tg_expenses__defaults();

-- AFTER INSERT OR UPDATE (row-level security admitted the row): a member files their own
-- expenses; filing or changing another member's needs expenses.approve (or owner or admin).
-- A billable expense's engagement must be one that is still billed.
create or replace function app_private.tg_expenses__rules() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if session_user not in (':DATABASE_AUTHENTICATOR'::name) or app_private.erasing(new.organization_id)
     or (tg_op = 'UPDATE' and (to_jsonb(old) - 'invoice_line_item_id' - 'updated_at' - 'status' - 'submitted_at' - 'decided_at' - 'decided_by' - 'rejection_reason')
                            = (to_jsonb(new) - 'invoice_line_item_id' - 'updated_at' - 'status' - 'submitted_at' - 'decided_at' - 'decided_by' - 'rejection_reason')) then
    return null; -- the lifecycle functions and invoicing: not edits
  end if;
  if not exists (select from app_public.organization_members m
                 where m.organization_id = new.organization_id and m.id = new.member_id and m.user_id = app_public.current_user_id())
     and not app_public.has_permission('expenses.approve') then
    perform app_private.fail('PERMISSION_NOT_HELD', 'Filing or changing another member''s expense needs expenses.approve.');
  end if;
  return null;
end
$$;
drop trigger if exists tg_expenses__rules on app_public.expenses;
create trigger tg_expenses__rules after insert or update on app_public.expenses
  for each row execute function app_private.tg_expenses__rules();

-- The expense of the current organization, locked, or NOT_FOUND.
create or replace function app_private.lock_expense(expense_id uuid) returns app_public.expenses
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.expenses;
begin
  select e.* into v from app_public.expenses e
  where e.organization_id = app_public.current_org_id() and e.id = lock_expense.expense_id and e.deleted_at is null
  for update;
  if v.id is null then
    perform app_private.fail('NOT_FOUND', 'No such expense in this organization.');
  end if;
  return v;
end
$$;
revoke all on function app_private.lock_expense(uuid) from public;

-- Submit a draft or rejected expense for approval (expenses.write; one's own, or anyone's with
-- expenses.approve).
create or replace function app_public.submit_expense(expense_id uuid) returns app_public.expenses
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.expenses;
begin
  perform app_private.require_permission('expenses.write', 'submit an expense');
  v := app_private.lock_expense(submit_expense.expense_id);
  if not exists (select from app_public.organization_members m where m.organization_id = v.organization_id and m.id = v.member_id and m.user_id = app_public.current_user_id()) then
    perform app_private.require_permission('expenses.approve', 'submit another member''s expense');
  end if;
  if v.status = 'submitted' then -- (other moves: the status machine)
    perform app_private.fail('INVALID_TRANSITION', 'This expense is already submitted.');
  end if;
  update app_public.expenses e set status = 'submitted', rejection_reason = null, decided_at = null, decided_by = null
  where e.organization_id = v.organization_id and e.id = v.id
  returning * into v;
  return v;
end
$$;
revoke all on function app_public.submit_expense(uuid) from public;
grant execute on function app_public.submit_expense(uuid) to :DATABASE_VISITOR;
comment on function app_public.submit_expense(uuid) is 'Submits a draft or rejected expense for approval (expenses.write): it is frozen until rejected.';

-- Approve or reject (expenses.approve and expenses.read; not one's own unless an owner or admin).
create or replace function app_private.decide_expense(expense_id uuid, approve boolean, reason text) returns app_public.expenses
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.expenses;
  v_me app_public.organization_members;
  v_action text := case when approve then 'approve expenses' else 'reject expenses' end;
begin
  perform app_private.require_permission('expenses.approve', v_action);
  perform app_private.require_permission('expenses.read', v_action);
  v := app_private.lock_expense(decide_expense.expense_id);
  select m.* into v_me from app_public.organization_members m where m.organization_id = v.organization_id and m.user_id = app_public.current_user_id();
  if v_me.id = v.member_id and v_me.role < 'admin' then
    perform app_private.fail('NOT_PERMITTED', 'An expense is approved or rejected by someone else than its member (or an owner or admin).');
  end if;
  if not approve and nullif(btrim(decide_expense.reason), '') is null then
    perform app_private.fail('INVALID_VALUE', 'Say why the expense is rejected.');
  end if;
  if not approve and v.invoice_line_item_id is not null then
    perform app_private.fail('NOT_EDITABLE', 'This expense is invoiced: remove it from the invoice (or cancel the invoice) before rejecting it.');
  end if;
  if v.status = (case when approve then 'approved' else 'rejected' end) then -- (other moves: the status machine)
    perform app_private.fail('INVALID_TRANSITION', format('This expense is already %s.', v.status));
  end if;
  update app_public.expenses e
  set status = case when approve then 'approved' else 'rejected' end, decided_by = v_me.id,
      rejection_reason = case when approve then null else btrim(decide_expense.reason) end
  where e.organization_id = v.organization_id and e.id = v.id
  returning * into v;
  return v;
end
$$;
revoke all on function app_private.decide_expense(uuid, boolean, text) from public;

create or replace function app_public.approve_expense(expense_id uuid) returns app_public.expenses
language sql volatile security definer
set search_path = pg_catalog
as $$ select app_private.decide_expense(approve_expense.expense_id, true, null) $$;
revoke all on function app_public.approve_expense(uuid) from public;
grant execute on function app_public.approve_expense(uuid) to :DATABASE_VISITOR;
comment on function app_public.approve_expense(uuid) is 'Approves a submitted expense (expenses.approve and expenses.read; one''s own only as an owner or admin): it may be reimbursed and, when billable, re-billed.';

create or replace function app_public.reject_expense(expense_id uuid, reason text) returns app_public.expenses
language sql volatile security definer
set search_path = pg_catalog
as $$ select app_private.decide_expense(reject_expense.expense_id, false, reject_expense.reason) $$;
revoke all on function app_public.reject_expense(uuid, text) from public;
grant execute on function app_public.reject_expense(uuid, text) to :DATABASE_VISITOR;
comment on function app_public.reject_expense(uuid, text) is 'Rejects a submitted or approved (not invoiced) expense with a reason (expenses.approve and expenses.read): its member fixes it and submits it again.';

-- Vendor bills re-billed: `rebill` (set by whoever may change the bill, also once approved) and
-- the invoice line that re-bills it. (Plain columns added without rewriting bills; the foreign
-- key and the check are validated by the next migrations, the index built concurrently.)
alter table app_public.bills
  add column if not exists rebill boolean not null default false,
  add column if not exists invoice_line_item_id uuid;
do $$
begin
  if not exists (select from pg_constraint where conrelid = 'app_public.bills'::regclass and conname = 'bills_invoice_line_item_fkey') then
    alter table app_public.bills add constraint bills_invoice_line_item_fkey foreign key (organization_id, invoice_line_item_id)
      references app_public.invoice_line_items on delete set null (invoice_line_item_id) not valid;
  end if;
  if not exists (select from pg_constraint where conrelid = 'app_public.bills'::regclass and conname = 'bills_rebilled_only_when_rebill') then
    alter table app_public.bills add constraint bills_rebilled_only_when_rebill
      check (invoice_line_item_id is null or (rebill and engagement_id is not null and status in ('approved', 'paid'))) not valid;
  end if;
end
$$;
comment on column app_public.bills.rebill is 'Re-bill it to the engagement''s client (addExpensesToInvoice, once approved), at its amount.';
comment on column app_public.bills.invoice_line_item_id is 'The invoice line that re-bills it (addExpensesToInvoice); none: not re-billed.';
grant insert (rebill), update (rebill) on app_public.bills to :DATABASE_VISITOR;

-- Re-bill an engagement's expenses on one of its draft invoices (invoices.write and
-- expenses.read): every approved, billable, not yet invoiced expense of the invoice's currency,
-- a line each. The invoice first (lock order), then the expenses.
create or replace function app_public.add_expenses_to_invoice(invoice_id uuid) returns app_public.invoices
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
  v_position integer;
  v_count integer;
  v_bills integer;
begin
  perform app_private.require_permission('invoices.write', 're-bill expenses');
  perform app_private.require_permission('expenses.read', 're-bill expenses');
  v := app_private.lock_invoice(add_expenses_to_invoice.invoice_id);
  if v.deleted_at is not null then
    perform app_private.fail('NOT_FOUND', 'No such invoice in this organization.');
  elsif v.status <> 'draft' then
    perform app_private.fail('NOT_EDITABLE', format('Expenses are added to a draft invoice; this one is %s.', v.status));
  elsif v.engagement_id is null then
    perform app_private.fail('INVALID_VALUE', 'This invoice has no engagement, so no expenses to re-bill.');
  end if;
  select coalesce(max(l.position), 0) into v_position from app_public.invoice_line_items l
  where l.organization_id = v.organization_id and l.invoice_id = v.id;
  with picked as (
    select e.* from app_public.expenses e
    where e.organization_id = v.organization_id and e.engagement_id = v.engagement_id and e.status = 'approved'
      and e.billable and e.invoice_line_item_id is null and e.deleted_at is null and e.currency = v.currency
    order by e.incurred_on, e.id
    for update of e
  ), lines as (
    select p.id as expense_id, gen_random_uuid() as line_id,
      v_position + row_number() over (order by p.incurred_on, p.id) as position,
      left(format('Expense, %s: %s (%s)', c.name, p.description, p.incurred_on), 1000) as description, p.billable_amount
    from picked p join app_public.expense_categories c on c.organization_id = p.organization_id and c.id = p.category_id
  ), inserted as (
    insert into app_public.invoice_line_items (organization_id, id, invoice_id, position, description, quantity, unit_price)
    select v.organization_id, l.line_id, v.id, l.position, l.description, 1, l.billable_amount from lines l
    returning id
  )
  update app_public.expenses e set invoice_line_item_id = l.line_id
  from lines l
  where e.organization_id = v.organization_id and e.id = l.expense_id and exists (select from inserted i where i.id = l.line_id);
  get diagnostics v_count = row_count;
  -- Then its vendor bills marked rebill (approved or paid), after the expenses.
  select coalesce(max(l.position), 0) into v_position from app_public.invoice_line_items l
  where l.organization_id = v.organization_id and l.invoice_id = v.id;
  with picked as (
    select b.* from app_public.bills b
    where b.organization_id = v.organization_id and b.engagement_id = v.engagement_id and b.rebill
      and b.status in ('approved', 'paid') and b.invoice_line_item_id is null and b.deleted_at is null and b.currency = v.currency
    order by b.issued_on, b.id
    for update of b
  ), lines as (
    select p.id as bill_id, gen_random_uuid() as line_id,
      v_position + row_number() over (order by p.issued_on, p.id) as position,
      left(format('Vendor bill, %s: %s (%s)', vd.name, coalesce(p.description, p.reference, 'costs'), p.issued_on), 1000) as description, p.amount
    from picked p join app_public.vendors vd on vd.organization_id = p.organization_id and vd.id = p.vendor_id
  ), inserted as (
    insert into app_public.invoice_line_items (organization_id, id, invoice_id, position, description, quantity, unit_price)
    select v.organization_id, l.line_id, v.id, l.position, l.description, 1, l.amount from lines l
    returning id
  )
  update app_public.bills b set invoice_line_item_id = l.line_id
  from lines l
  where b.organization_id = v.organization_id and b.id = l.bill_id and exists (select from inserted i where i.id = l.line_id);
  get diagnostics v_bills = row_count;
  if v_count + v_bills = 0 then
    perform app_private.fail('EMPTY_DOCUMENT', format('This engagement has no approved, billable expense or vendor bill to re-bill in %s that is not invoiced yet.', v.currency));
  end if;
  select i.* into v from app_public.invoices i where i.organization_id = v.organization_id and i.id = v.id;
  return v;
end
$$;
revoke all on function app_public.add_expenses_to_invoice(uuid) from public;
grant execute on function app_public.add_expenses_to_invoice(uuid) to :DATABASE_VISITOR;
comment on function app_public.add_expenses_to_invoice(uuid) is 'Adds the engagement''s approved, billable, not yet invoiced expenses (at amount plus markup) and its approved or paid vendor bills marked rebill (at their amount), of the invoice''s currency, to a draft invoice, a line each (invoices.write and expenses.read). Deleting such a line, or cancelling the invoice, makes them invoiceable again.';
--! EndIncluded functions/expenses.sql
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
--! EndIncluded functions/billing.sql
