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
