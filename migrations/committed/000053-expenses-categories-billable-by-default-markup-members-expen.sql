--! Previous: sha1:c2d0d00e3d796ed7d1b053b7e10e0dbae4d4a887
--! Hash: sha1:d04221327b15f91514d68c59b9dee42a2d8dc8c4
--! Message: Expenses: categories (billable by default, markup), members' expenses submitted, approved (expenses.approve) or rejected with a reason, frozen while submitted or approved, re-billed on a draft invoice a line each (addExpensesToInvoice); webhook events expense.*

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
set local statement_timeout = '60s';
-- Expenses: categories, members' expenses approved (expenses.approve) and re-billed with markup.
--! Included functions/permissions.sql
-- Permissions: "may the user do X here?" — one helper, app_public.permitted_org_id('invoices.write')
-- (the organization, if so), called by the policies of every business table;
-- app_public.has_permission('invoices.write') asks the same as a yes or no.
--
-- Permission keys are `<area>.<action>` (the catalogue is app_public.permissions, filled below):
-- read and write per area, plus a few special actions. What a member may do:
--   * owners and admins: everything;
--   * a member with one or more custom roles (app_public.roles, assigned in role_assignments): exactly
--     the permissions of those roles (e.g. "billing clerk": invoices.read, invoices.write,
--     clients.read — and nothing about deals);
--   * otherwise the defaults of their base role: viewers read every area; members read and write
--     every area, except the special actions, which stay with admins: portal.write, roles.write,
--     webhooks.write, rates.write (what the firm bills), costs.read/costs.write (what members
--     cost: confidential, so not even read by default), timesheets.approve and expenses.approve.
-- The job worker acts with admin rights inside the organization of its job.
-- Re-included by later migrations when areas or actions are added; idempotent.

insert into app_public.permissions (key, description) values
  ('clients.read', 'See client companies and contacts'),
  ('clients.write', 'Add, change and delete client companies and contacts'),
  ('deals.read', 'See the sales pipeline'),
  ('deals.write', 'Add, move and delete deals'),
  ('proposals.read', 'See proposals'),
  ('proposals.write', 'Draft, send and delete proposals'),
  ('contracts.read', 'See contracts'),
  ('contracts.write', 'Draft, send, sign and cancel contracts'),
  ('engagements.read', 'See engagements'),
  ('engagements.write', 'Change engagements'),
  ('projects.read', 'See project templates, projects, milestones and tasks'),
  ('projects.write', 'Plan and change projects, milestones and tasks'),
  ('time.read', 'See time entries'),
  ('time.write', 'Record and change time entries'),
  ('messages.read', 'Read threads and messages'),
  ('messages.write', 'Start threads and post messages'),
  ('files.read', 'See files'),
  ('files.write', 'Upload and delete files'),
  ('invoices.read', 'See invoices, invoice schedules and payments'),
  ('invoices.write', 'Draft, send and cancel invoices, record payments, manage invoice schedules'),
  ('vendors.read', 'See vendors'),
  ('vendors.write', 'Add and change vendors'),
  ('bills.read', 'See bills'),
  ('bills.write', 'Enter and change bills'),
  ('portal.read', 'See who has client-portal access'),
  ('portal.write', 'Give and revoke client-portal access (special: admins by default)'),
  ('roles.read', 'See custom roles and who holds them'),
  ('roles.write', 'Define custom roles and assign them (special: admins by default)'),
  ('webhooks.read', 'See webhook endpoints and their delivery log'),
  ('webhooks.write', 'Add, change and delete webhook endpoints, rotate their secrets, retry deliveries (special: admins by default)'),
  ('rates.read', 'See job roles and rate cards'),
  ('rates.write', 'Define job roles and rate cards, give members their job role, set a time entry''s rate by hand (special: admins by default)'),
  ('costs.read', 'See what members cost (cost rates) and the cost of time (special: admins by default)'),
  ('costs.write', 'Set members'' cost rates (special: admins by default)'),
  ('timesheets.approve', 'Approve and reject members'' timesheets (special: admins by default)'),
  ('expenses.read', 'See expenses and expense categories'),
  ('expenses.write', 'Record and submit one''s expenses, manage expense categories'),
  ('expenses.approve', 'Approve and reject expenses, file them for other members (special: admins by default)')
on conflict (key) do update set description = excluded.description;

-- Is `permission` one of the special actions that only admins (or a custom role) grant?
create or replace function app_private.is_special_permission(permission text) returns boolean
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select permission in ('portal.write', 'roles.write', 'webhooks.write', 'rates.write', 'costs.read', 'costs.write', 'timesheets.approve', 'expenses.approve')
$$;

-- The organization of this request, if the current user may do `permission` there; otherwise
-- null. The policies of business tables ask it once per query:
--   organization_id = (select app_public.permitted_org_id('deals.read'))
-- which is "in the current organization, holding deals.read" in one helper call.
create or replace function app_public.permitted_org_id(permission text) returns uuid
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.setting_uuid('app.org_id');
  v_user uuid;
  v_session uuid;
  v_member_id uuid;
  v_role app_public.member_role;
begin
  if v_org is null then
    return null;
  end if;
  if app_private.is_worker_session() then
    return (select o.id from app_public.organizations o where o.id = v_org);
  end if;
  v_user := app_private.setting_uuid('app.user_id');
  v_session := app_private.setting_uuid('app.session_id');
  if v_user is null or v_session is null then
    return null;
  end if;
  -- The member behind a live session (as current_user_id and current_org_id check): one query.
  select m.id, m.role into v_member_id, v_role
  from app_private.sessions s
  join app_public.organization_members m on m.organization_id = v_org and m.user_id = s.user_id
  where s.id = v_session and s.user_id = v_user and s.revoked_at is null and s.expires_at > now();
  if not found then
    return null;
  end if;
  if v_role >= 'admin' then
    return v_org;
  end if;
  if exists (select 1 from app_public.role_assignments mr where mr.organization_id = v_org and mr.member_id = v_member_id) then
    return case when exists (
      select 1
      from app_public.role_assignments mr
      join app_public.role_permissions rp on rp.organization_id = mr.organization_id and rp.role_id = mr.role_id
      join app_public.roles r on r.organization_id = mr.organization_id and r.id = mr.role_id and r.deleted_at is null
      where mr.organization_id = v_org and mr.member_id = v_member_id and rp.permission_key = permitted_org_id.permission
    ) then v_org end;
  end if;
  if permitted_org_id.permission like '%.read' and not app_private.is_special_permission(permitted_org_id.permission) then
    return v_org;
  end if;
  return case
    when v_role = 'member' and permitted_org_id.permission like '%.write' and not app_private.is_special_permission(permitted_org_id.permission) then v_org
  end;
end
$$;
comment on function app_public.permitted_org_id(text) is E'@behavior -queryField\nThe current organization, if you may do `permission` (e.g. deals.read) in it; otherwise null (for policies; clients ask hasPermission).';
revoke all on function app_public.permitted_org_id(text) from public;
grant execute on function app_public.permitted_org_id(text) to :DATABASE_VISITOR;

-- (SQL, no SET clause: PostgreSQL inlines it into its callers.)
create or replace function app_public.has_permission(permission text) returns boolean
language sql stable
as $$
  select app_public.permitted_org_id(permission) is not null
$$;
comment on function app_public.has_permission(text) is 'True when you may do `permission` (e.g. invoices.write) in the current organization: owners and admins always; members with custom roles what those roles grant; otherwise viewers read and members read and write.';

-- The current user's permissions in the current organization (for a UI to show or hide actions).
create or replace function app_public.my_permissions() returns setof text
language sql stable
set search_path = pg_catalog
as $$
  select p.key from app_public.permissions p where app_public.has_permission(p.key) order by p.key
$$;
comment on function app_public.my_permissions() is 'The permission keys you hold in the current organization.';

-- Raise the right error unless the current user may do `permission` in an organization.
create or replace function app_private.require_permission(permission text, action text) returns void
language plpgsql stable
set search_path = pg_catalog
as $$
begin
  if app_public.current_user_id() is null and not app_private.is_worker_session() then
    perform app_private.fail('UNAUTHENTICATED', format('Sign in to %s.', action));
  elsif app_public.current_org_id() is null then
    perform app_private.fail('NO_ORGANIZATION', format('Choose an organization to %s.', action));
  elsif not app_public.has_permission(permission) then
    perform app_private.fail('NOT_PERMITTED', format('You need the %s permission to %s.', permission, action));
  end if;
end
$$;

-- Roles cannot be used to gain more ------------------------------------------------------------
--
-- Holding roles.write lets a member define and assign custom roles, but a member may pass on
-- through roles only permissions they hold themselves (PERMISSION_NOT_HELD otherwise):
--   * adding a permission to a role (or moving one to another role) needs that permission — the
--     role may already be held by others, or by the member themself;
--   * assigning a role to anyone, the member themself included, needs every permission of it;
--   * removing a member's last custom role returns them to their base role's defaults (a member
--     reads and writes every area), so it needs every one of those defaults.
-- Owners and admins hold every permission, so for them nothing changes. Removing a permission
-- from a role, deleting a role, or assigning a role that narrows what someone may do only takes
-- away, and stays open to roles.write. A deleted role that members still hold is kept by the
-- retention purge (its foreign key below has no cascade): purging it would drop their last
-- custom role and hand them their base role's defaults, which nobody granted.
-- Checked in BEFORE ROW triggers on the API's and the worker's connections (like the owner rules
-- of sql/functions/members.sql); maintenance by the owner role is trusted. Without roles.write
-- the triggers leave the row to row-level security, which refuses it (42501). Every row is checked
-- against the permissions the member holds at that moment, and no allowed row adds to them, so
-- rows earlier in the same statement cannot lend the member anything.

-- The permissions of a base role without custom roles (what permitted_org_id answers for it).
create or replace function app_private.base_role_permissions(role app_public.member_role) returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(array_agg(p.key order by p.key), '{}')
  from app_public.permissions p
  where base_role_permissions.role >= 'admin'
    or (p.key like '%.read' and not app_private.is_special_permission(p.key))
    or (base_role_permissions.role = 'member' and p.key like '%.write' and not app_private.is_special_permission(p.key))
$$;
comment on function app_private.base_role_permissions(app_public.member_role) is 'The permissions a member of this base role holds when they hold no custom role (mirrors app_public.permitted_org_id).';

-- Raise PERMISSION_NOT_HELD unless the current user holds every one of `permissions` here.
create or replace function app_private.require_held(permissions text[], action text) returns void
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_missing text;
begin
  select string_agg(p.key, ', ' order by p.key) into v_missing
  from unnest(require_held.permissions) as p(key)
  where not app_public.has_permission(p.key);
  if v_missing is not null then
    perform app_private.fail('PERMISSION_NOT_HELD',
      format('Through roles you may pass on only permissions you hold yourself: to %s you would need %s.', action, v_missing));
  end if;
end
$$;

create or replace function app_private.tg_role_permissions__held() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if session_user in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name) and app_public.has_permission('roles.write')
     and (tg_op = 'INSERT' or new.permission_key is distinct from old.permission_key or new.role_id is distinct from old.role_id) then
    perform app_private.require_held(array[new.permission_key], 'add a permission to a role');
  end if;
  return new;
end
$$;
drop trigger if exists tg_role_permissions__held on app_public.role_permissions;
create trigger tg_role_permissions__held before insert or update on app_public.role_permissions
  for each row execute function app_private.tg_role_permissions__held();

create or replace function app_private.tg_role_assignments__held() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_base app_public.member_role;
begin
  if session_user not in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name) or not app_public.has_permission('roles.write')
     or (tg_op = 'UPDATE' and new.member_id = old.member_id and new.role_id = old.role_id) then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    perform app_private.require_held(array(
      select rp.permission_key from app_public.role_permissions rp
      where rp.organization_id = new.organization_id and rp.role_id = new.role_id
    ), 'assign this role');
  end if;
  if tg_op = 'DELETE' or new.member_id <> old.member_id then
    -- Their last custom role? Then they return to their base role's defaults. (A member being
    -- removed from the organization takes their roles along: no member row, nothing to check.)
    select m.role into v_base from app_public.organization_members m
    where m.organization_id = old.organization_id and m.id = old.member_id;
    if v_base < 'admin' and not exists (
      select from app_public.role_assignments ra
      where ra.organization_id = old.organization_id and ra.member_id = old.member_id and ra.id <> old.id
    ) then
      perform app_private.require_held(app_private.base_role_permissions(v_base),
        format('take away a member''s last custom role (they return to the %s role''s permissions)', v_base));
    end if;
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;
drop trigger if exists tg_role_assignments__held on app_public.role_assignments;
create trigger tg_role_assignments__held before insert or update or delete on app_public.role_assignments
  for each row execute function app_private.tg_role_assignments__held();

-- A deleted role that members still hold stays until they no longer do (see above).
-- (Replaced only while it still has another delete action: adding it checks every row.)
do $$
begin
  if exists (select from pg_constraint where conrelid = 'app_public.role_assignments'::regclass
             and conname = 'role_assignments_organization_id_role_id_fkey' and confdeltype <> 'a') then
    alter table app_public.role_assignments
      drop constraint role_assignments_organization_id_role_id_fkey,
      add constraint role_assignments_organization_id_role_id_fkey
        foreign key (organization_id, role_id) references app_public.roles;
  end if;
end
$$;
--! EndIncluded functions/permissions.sql
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
--   cancelling the invoice makes them invoiceable again.
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
  if v_count = 0 then
    perform app_private.fail('EMPTY_DOCUMENT', format('This engagement has no approved, billable expense in %s that is not invoiced yet.', v.currency));
  end if;
  select i.* into v from app_public.invoices i where i.organization_id = v.organization_id and i.id = v.id;
  return v;
end
$$;
revoke all on function app_public.add_expenses_to_invoice(uuid) from public;
grant execute on function app_public.add_expenses_to_invoice(uuid) to :DATABASE_VISITOR;
comment on function app_public.add_expenses_to_invoice(uuid) is 'Adds the engagement''s approved, billable, not yet invoiced expenses (of the invoice''s currency) to a draft invoice, a line each at amount plus markup (invoices.write and expenses.read). Deleting such a line, or cancelling the invoice, makes them invoiceable again.';
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
--! Included functions/webhook_events.sql
-- The catalogue of domain events sent to webhooks: which activity events are which webhook
-- events (sql/functions/webhooks.sql delivers them). Included by webhooks.sql; a migration that
-- only adds events includes this file alone. Idempotent.
--
-- An `insert` rule matches new rows of the table; a status rule matches rows entering `to_status` (inserted in
-- it, or updated into it from another status).
create table if not exists app_private.webhook_event_rules (
  event_type text primary key check (event_type ~ '^[a-z_]+\.[a-z_]+$'),
  table_name text not null,
  status_column text,
  to_status text,
  description text not null,
  constraint webhook_event_rules_status check ((status_column is null) = (to_status is null))
);
alter table app_private.webhook_event_rules enable row level security;
alter table app_private.webhook_event_rules force row level security;
comment on table app_private.webhook_event_rules is 'Domain events sent to webhooks: new rows of table_name, or rows whose status_column enters to_status.';

insert into app_private.webhook_event_rules (event_type, table_name, status_column, to_status, description) values
  ('client_company.created', 'client_companies', null, null, 'A client company was added.'),
  ('deal.won', 'deals', 'stage', 'won', 'A deal was won.'),
  ('deal.lost', 'deals', 'stage', 'lost', 'A deal was lost.'),
  ('proposal.sent', 'proposals', 'status', 'sent', 'A proposal was sent to the client.'),
  ('proposal.accepted', 'proposals', 'status', 'accepted', 'The client accepted a proposal.'),
  ('proposal.rejected', 'proposals', 'status', 'rejected', 'The client rejected a proposal.'),
  ('contract.signed', 'contracts', 'status', 'signed', 'A contract was signed.'),
  ('engagement.started', 'engagements', null, null, 'An engagement started (a contract was signed).'),
  ('invoice.sent', 'invoices', 'status', 'sent', 'An invoice was sent.'),
  ('invoice.paid', 'invoices', 'status', 'paid', 'An invoice was paid in full.'),
  ('invoice.overdue', 'invoices', 'status', 'overdue', 'An invoice passed its due date unpaid.'),
  ('invoice.cancelled', 'invoices', 'status', 'cancelled', 'An invoice was cancelled.'),
  ('payment.recorded', 'payments', null, null, 'A payment was recorded against an invoice.'),
  ('bill.approved', 'bills', 'status', 'approved', 'A bill was approved for payment.'),
  ('bill.paid', 'bills', 'status', 'paid', 'A bill was paid.'),
  ('credit_note.issued', 'credit_notes', null, null, 'A credit note or write-off was issued against an invoice.'),
  ('refund.recorded', 'refunds', null, null, 'Money was refunded to a client against a credit note.'),
  ('timesheet.submitted', 'timesheets', 'status', 'submitted', 'A member submitted a week of time for approval.'),
  ('timesheet.approved', 'timesheets', 'status', 'approved', 'A week of time was approved.'),
  ('timesheet.rejected', 'timesheets', 'status', 'rejected', 'A week of time was rejected (with a reason).'),
  ('expense.submitted', 'expenses', 'status', 'submitted', 'A member submitted an expense for approval.'),
  ('expense.approved', 'expenses', 'status', 'approved', 'An expense was approved.'),
  ('expense.rejected', 'expenses', 'status', 'rejected', 'An expense was rejected (with a reason).')
on conflict (event_type) do update set table_name = excluded.table_name, status_column = excluded.status_column,
  to_status = excluded.to_status, description = excluded.description;
--! EndIncluded functions/webhook_events.sql
