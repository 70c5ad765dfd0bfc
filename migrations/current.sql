-- The business domain: CRM, sales, delivery, time, communication, billing, payables, files,
-- the client portal and custom roles, every table a tenant table (sql/functions/tenant_tables.sql).
--
-- Money is numeric(14,2) in the organization's currency (organizations.currency), everywhere.
-- Statuses move only along app_private.status_transitions (sql/functions/status_machine.sql);
-- totals are generated columns or kept by triggers; the visitor never writes a status that has
-- a lifecycle function, a total, a number or a timestamp a transition stamps.

-- current.sql re-runs on every change while it is developed: start from scratch.
drop table if exists
  app_public.role_assignments, app_public.role_permissions, app_public.roles, app_public.permissions,
  app_private.portal_access_secrets, app_public.client_portal_access, app_public.file_objects,
  app_public.bills, app_public.vendors, app_public.payments, app_public.invoice_line_items,
  app_private.invoice_counters, app_public.invoices, app_public.invoice_schedules,
  app_public.messages, app_public.threads, app_public.time_entries, app_public.tasks,
  app_public.milestones, app_public.projects, app_public.project_template_tasks,
  app_public.project_template_milestones, app_public.project_templates, app_public.engagements,
  app_public.contracts, app_public.proposal_line_items, app_public.proposals, app_public.deals,
  app_public.contacts, app_private.status_transitions
  cascade;
drop type if exists
  app_public.deal_stage, app_public.proposal_status, app_public.contract_status,
  app_public.engagement_status, app_public.project_status, app_public.milestone_status,
  app_public.task_status, app_public.task_priority, app_public.thread_visibility,
  app_public.schedule_kind, app_public.schedule_frequency, app_public.invoice_status,
  app_public.payment_method, app_public.bill_status, app_public.portal_access_token
  cascade;
-- The foundation's recipe took a member role; it now takes a permission area.
drop procedure if exists app_private.create_member_policies(regclass, app_public.member_role, boolean);
drop procedure if exists app_private.grant_member_access(regclass, boolean);
drop procedure if exists app_private.attach_soft_delete(regclass, text, app_public.member_role);
drop procedure if exists app_private.make_tenant_table(regclass, text, app_public.member_role, text[]);
drop procedure if exists app_private.create_tenant_policies(regclass, text, boolean, text);
drop procedure if exists app_private.grant_tenant_access(regclass, boolean, text[]);
drop procedure if exists app_private.make_tenant_table(regclass, text, text, text[], text[], text);

--!include errors.sql

------------------------------------------------------------------------------------------------
-- Organization settings the domain needs.

alter table app_public.organizations
  add column if not exists currency char(3) not null default 'USD' check (currency ~ '^[A-Z]{3}$'),
  add column if not exists payment_terms_days integer not null default 30 check (payment_terms_days between 0 and 365);
comment on column app_public.organizations.currency is 'ISO 4217 code of every amount in this organization (all money is numeric(14,2) in it).';
comment on column app_public.organizations.payment_terms_days is 'Days from issue to due date of an invoice sent without a due date.';
grant update (name, slug, retention_days, currency, payment_terms_days) on app_public.organizations to :DATABASE_VISITOR;

------------------------------------------------------------------------------------------------
-- Access control: the permission catalogue (global) and custom roles (per organization).

create table app_public.permissions (
  key text primary key check (key ~ '^[a-z_]+\.[a-z_]+$'),
  description text not null
);
comment on table app_public.permissions is E'@behavior -insert -update -delete\nWhat can be allowed: one key per area and action (invoices.read, invoices.write, ...). The same for every organization.';
call app_private.force_rls('app_public.permissions');
create policy select_all on app_public.permissions for select to :DATABASE_VISITOR using (true);
comment on policy select_all on app_public.permissions is 'The catalogue is public knowledge: anyone may read it.';
grant select on app_public.permissions to :DATABASE_VISITOR;

create table app_public.roles (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 100),
  description text check (length(description) <= 1000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create unique index roles_organization_id_name_key on app_public.roles (organization_id, lower(name)) where deleted_at is null;
comment on table app_public.roles is E'@behavior -delete\nA custom role (e.g. "Billing clerk"): a set of permissions. A member holding custom roles may do exactly what they grant.';

create table app_public.role_permissions (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  role_id uuid not null,
  permission_key text not null references app_public.permissions,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  unique (organization_id, role_id, permission_key),
  foreign key (organization_id, role_id) references app_public.roles on delete cascade
);
create index role_permissions_organization_id_permission_key_idx on app_public.role_permissions (organization_id, permission_key);
comment on table app_public.role_permissions is 'A permission a custom role grants.';

create table app_public.role_assignments (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  member_id uuid not null,
  role_id uuid not null,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  unique (organization_id, member_id, role_id),
  foreign key (organization_id, member_id) references app_public.organization_members on delete cascade,
  foreign key (organization_id, role_id) references app_public.roles on delete cascade
);
create index role_assignments_organization_id_role_id_idx on app_public.role_assignments (organization_id, role_id);
comment on table app_public.role_assignments is 'A custom role held by a member.';

--!include functions/permissions.sql
--!include functions/status_machine.sql
--!include functions/line_items.sql
--!include functions/tenant_tables.sql

------------------------------------------------------------------------------------------------
-- Status types.

create type app_public.deal_stage as enum ('lead', 'qualified', 'proposal', 'negotiation', 'won', 'lost');
create type app_public.proposal_status as enum ('draft', 'sent', 'viewed', 'accepted', 'rejected', 'expired');
create type app_public.contract_status as enum ('draft', 'sent', 'signed', 'expired', 'cancelled');
create type app_public.engagement_status as enum ('active', 'on_hold', 'completed', 'cancelled');
create type app_public.project_status as enum ('planned', 'active', 'on_hold', 'completed', 'cancelled');
create type app_public.milestone_status as enum ('open', 'reached');
create type app_public.task_status as enum ('todo', 'in_progress', 'blocked', 'done', 'cancelled');
create type app_public.task_priority as enum ('low', 'normal', 'high', 'urgent');
create type app_public.thread_visibility as enum ('internal', 'client');
create type app_public.schedule_kind as enum ('fixed', 'milestone', 'recurring');
create type app_public.schedule_frequency as enum ('weekly', 'monthly', 'quarterly', 'yearly');
create type app_public.invoice_status as enum ('draft', 'sent', 'viewed', 'paid', 'overdue', 'cancelled');
create type app_public.payment_method as enum ('bank_transfer', 'card', 'cash', 'check', 'other');
create type app_public.bill_status as enum ('pending', 'approved', 'paid', 'rejected', 'cancelled');
create type app_public.portal_access_token as (access_id uuid, token text);
comment on type app_public.portal_access_token is 'New client-portal access and its secret token, shown only once.';

------------------------------------------------------------------------------------------------
-- CRM

create table app_public.contacts (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  client_company_id uuid not null,
  first_name text not null check (length(btrim(first_name)) between 1 and 100),
  last_name text check (length(last_name) <= 100),
  email text check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and email = lower(email)),
  phone text check (length(phone) <= 50),
  job_title text check (length(job_title) <= 100),
  is_primary boolean not null default false,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, client_company_id) references app_public.client_companies
);
create index contacts_organization_id_client_company_id_idx on app_public.contacts (organization_id, client_company_id);
create index contacts_organization_id_last_name_idx on app_public.contacts (organization_id, last_name, first_name);
create index contacts_organization_id_email_idx on app_public.contacts (organization_id, email);
comment on table app_public.contacts is E'@behavior -delete\nA person at a client company.';
comment on column app_public.contacts.email is 'Lower case. Needed for client-portal access (the portal user signs in with it).';

create table app_public.deals (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  client_company_id uuid not null,
  title text not null check (length(btrim(title)) between 1 and 200),
  stage app_public.deal_stage not null default 'lead',
  value numeric(14,2) not null default 0 check (value >= 0),
  probability integer not null default 10 check (probability between 0 and 100),
  expected_close_on date,
  owner_member_id uuid,
  closed_at timestamptz,
  lost_reason text check (length(lost_reason) <= 1000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, client_company_id) references app_public.client_companies,
  foreign key (organization_id, owner_member_id) references app_public.organization_members on delete set null (owner_member_id)
);
create index deals_organization_id_client_company_id_idx on app_public.deals (organization_id, client_company_id);
create index deals_organization_id_owner_member_id_idx on app_public.deals (organization_id, owner_member_id);
create index deals_organization_id_stage_idx on app_public.deals (organization_id, stage, expected_close_on);
create index deals_organization_id_expected_close_on_idx on app_public.deals (organization_id, expected_close_on);
comment on table app_public.deals is E'@behavior -delete\nAn opportunity in the sales pipeline: lead → qualified → proposal → negotiation → won or lost.';
comment on column app_public.deals.closed_at is 'When the deal was last won or lost (stamped).';

------------------------------------------------------------------------------------------------
-- Sales

create table app_public.proposals (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  client_company_id uuid not null,
  deal_id uuid,
  engagement_id uuid,
  title text not null check (length(btrim(title)) between 1 and 200),
  status app_public.proposal_status not null default 'draft',
  valid_until date,
  subtotal numeric(14,2) not null default 0 check (subtotal >= 0),
  tax_rate numeric(5,2) not null default 0 check (tax_rate between 0 and 100),
  tax_amount numeric(14,2) generated always as (round(subtotal * tax_rate / 100, 2)) stored,
  total numeric(14,2) generated always as (subtotal + round(subtotal * tax_rate / 100, 2)) stored,
  notes text check (length(notes) <= 10000),
  sent_at timestamptz,
  viewed_at timestamptz,
  accepted_at timestamptz,
  rejected_at timestamptz,
  expired_at timestamptz,
  decided_by_name text check (length(decided_by_name) <= 200),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, client_company_id) references app_public.client_companies,
  foreign key (organization_id, deal_id) references app_public.deals
);
create index proposals_organization_id_client_company_id_idx on app_public.proposals (organization_id, client_company_id);
create index proposals_organization_id_deal_id_idx on app_public.proposals (organization_id, deal_id);
create index proposals_organization_id_engagement_id_idx on app_public.proposals (organization_id, engagement_id);
create index proposals_organization_id_status_idx on app_public.proposals (organization_id, status, created_at);
comment on table app_public.proposals is E'@behavior -delete\nAn offer to a client: draft → sent → viewed → accepted, rejected or expired. Accepting it creates the contract (acceptProposal). A proposal within an engagement (a change order) shows in that engagement''s client portal once sent.';
comment on column app_public.proposals.subtotal is 'Sum of the line items (kept by trigger).';
comment on column app_public.proposals.decided_by_name is 'Who accepted or rejected it.';

create table app_public.proposal_line_items (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  proposal_id uuid not null,
  position integer not null default 0,
  description text not null check (length(btrim(description)) between 1 and 1000),
  quantity numeric(12,2) not null default 1 check (quantity > 0),
  unit_price numeric(14,2) not null check (unit_price >= 0),
  amount numeric(14,2) generated always as (round(quantity * unit_price, 2)) stored,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, proposal_id) references app_public.proposals on delete cascade
);
create index proposal_line_items_organization_id_proposal_id_idx on app_public.proposal_line_items (organization_id, proposal_id, position);
comment on table app_public.proposal_line_items is 'A line of a proposal: quantity × unit price. Only a draft proposal''s lines change.';

create table app_public.contracts (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  proposal_id uuid not null,
  client_company_id uuid not null,
  title text not null check (length(btrim(title)) between 1 and 200),
  status app_public.contract_status not null default 'draft',
  value numeric(14,2) not null check (value >= 0),
  starts_on date,
  ends_on date,
  terms text check (length(terms) <= 100000),
  signer_name text check (length(btrim(signer_name)) between 1 and 200),
  sent_at timestamptz,
  signed_at timestamptz,
  expired_at timestamptz,
  cancelled_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  unique (organization_id, proposal_id),
  check (ends_on >= starts_on),
  check ((status = 'signed') = (signed_at is not null and signer_name is not null)),
  foreign key (organization_id, proposal_id) references app_public.proposals,
  foreign key (organization_id, client_company_id) references app_public.client_companies
);
create index contracts_organization_id_client_company_id_idx on app_public.contracts (organization_id, client_company_id);
create index contracts_organization_id_status_idx on app_public.contracts (organization_id, status, created_at);
comment on table app_public.contracts is E'@behavior -delete\nThe agreement made from an accepted proposal: draft → sent → signed (signContract creates the engagement), expired or cancelled.';

------------------------------------------------------------------------------------------------
-- Delivery

create table app_public.engagements (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  contract_id uuid not null,
  client_company_id uuid not null,
  name text not null check (length(btrim(name)) between 1 and 200),
  status app_public.engagement_status not null default 'active',
  starts_on date not null default current_date,
  ends_on date,
  hourly_rate numeric(14,2) check (hourly_rate >= 0),
  budget numeric(14,2) check (budget >= 0),
  completed_at timestamptz,
  cancelled_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  unique (organization_id, contract_id),
  check (ends_on >= starts_on),
  foreign key (organization_id, contract_id) references app_public.contracts,
  foreign key (organization_id, client_company_id) references app_public.client_companies
);
create index engagements_organization_id_client_company_id_idx on app_public.engagements (organization_id, client_company_id, status);
create index engagements_organization_id_status_idx on app_public.engagements (organization_id, status);
comment on table app_public.engagements is E'@behavior -delete\nThe work for a client under a signed contract (created by signContract): active, on_hold, completed or cancelled.';
comment on column app_public.engagements.hourly_rate is 'The default rate of its time entries.';

alter table app_public.proposals
  add foreign key (organization_id, engagement_id) references app_public.engagements;

create table app_public.project_templates (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 200),
  description text check (length(description) <= 10000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create index project_templates_organization_id_name_idx on app_public.project_templates (organization_id, name);
comment on table app_public.project_templates is E'@behavior -delete\nA reusable project plan: milestones and tasks, copied by createProjectFromTemplate.';

create table app_public.project_template_milestones (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  template_id uuid not null,
  name text not null check (length(btrim(name)) between 1 and 200),
  position integer not null default 0,
  offset_days integer not null default 0 check (offset_days between 0 and 3650),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, template_id) references app_public.project_templates on delete cascade
);
create index project_template_milestones_organization_id_template_id_idx on app_public.project_template_milestones (organization_id, template_id, position);
comment on table app_public.project_template_milestones is 'A milestone of a project template, due `offset_days` after the project starts.';

create table app_public.project_template_tasks (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  template_id uuid not null,
  template_milestone_id uuid,
  title text not null check (length(btrim(title)) between 1 and 200),
  description text check (length(description) <= 10000),
  priority app_public.task_priority not null default 'normal',
  position integer not null default 0,
  offset_days integer not null default 0 check (offset_days between 0 and 3650),
  estimate_minutes integer check (estimate_minutes > 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, template_id) references app_public.project_templates on delete cascade,
  foreign key (organization_id, template_milestone_id) references app_public.project_template_milestones on delete set null (template_milestone_id)
);
create index project_template_tasks_organization_id_template_id_idx on app_public.project_template_tasks (organization_id, template_id, position);
create index project_template_tasks_organization_id_template_milestone_id_idx on app_public.project_template_tasks (organization_id, template_milestone_id);
comment on table app_public.project_template_tasks is 'A task of a project template, due `offset_days` after the project starts.';

create table app_public.projects (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  engagement_id uuid not null,
  template_id uuid,
  name text not null check (length(btrim(name)) between 1 and 200),
  description text check (length(description) <= 10000),
  status app_public.project_status not null default 'planned',
  starts_on date,
  due_on date,
  completed_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  check (due_on >= starts_on),
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, template_id) references app_public.project_templates
);
create index projects_organization_id_engagement_id_idx on app_public.projects (organization_id, engagement_id);
create index projects_organization_id_template_id_idx on app_public.projects (organization_id, template_id);
create index projects_organization_id_status_idx on app_public.projects (organization_id, status, due_on);
comment on table app_public.projects is E'@behavior -delete\nA project in an engagement: planned → active ⇄ on_hold → completed, or cancelled.';

create table app_public.milestones (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  project_id uuid not null,
  name text not null check (length(btrim(name)) between 1 and 200),
  status app_public.milestone_status not null default 'open',
  position integer not null default 0,
  due_on date,
  reached_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, project_id) references app_public.projects on delete cascade
);
create index milestones_organization_id_project_id_idx on app_public.milestones (organization_id, project_id, position);
create index milestones_organization_id_due_on_idx on app_public.milestones (organization_id, due_on);
comment on table app_public.milestones is 'A checkpoint of a project (open or reached); milestone invoice schedules bill on it.';

create table app_public.tasks (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  project_id uuid not null,
  milestone_id uuid,
  title text not null check (length(btrim(title)) between 1 and 200),
  description text check (length(description) <= 10000),
  status app_public.task_status not null default 'todo',
  priority app_public.task_priority not null default 'normal',
  assignee_member_id uuid,
  due_on date,
  position integer not null default 0,
  estimate_minutes integer check (estimate_minutes > 0),
  completed_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, project_id) references app_public.projects,
  foreign key (organization_id, milestone_id) references app_public.milestones on delete set null (milestone_id),
  foreign key (organization_id, assignee_member_id) references app_public.organization_members on delete set null (assignee_member_id)
);
create index tasks_organization_id_project_id_idx on app_public.tasks (organization_id, project_id, position);
create index tasks_organization_id_milestone_id_idx on app_public.tasks (organization_id, milestone_id);
create index tasks_organization_id_assignee_member_id_idx on app_public.tasks (organization_id, assignee_member_id, status);
create index tasks_organization_id_due_on_idx on app_public.tasks (organization_id, due_on);
comment on table app_public.tasks is E'@behavior -delete\nA piece of work in a project: todo, in_progress, blocked, done or cancelled; ordered by position.';

create table app_public.time_entries (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  engagement_id uuid not null,
  task_id uuid,
  member_id uuid not null,
  work_date date not null default current_date,
  minutes integer not null check (minutes between 1 and 1440),
  billable boolean not null default true,
  rate numeric(14,2) not null default 0 check (rate >= 0),
  amount numeric(14,2) generated always as (round(minutes * rate / 60, 2)) stored,
  description text check (length(description) <= 2000),
  invoice_id uuid,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, task_id) references app_public.tasks,
  foreign key (organization_id, member_id) references app_public.organization_members
);
create index time_entries_organization_id_engagement_id_idx on app_public.time_entries (organization_id, engagement_id, work_date);
create index time_entries_organization_id_task_id_idx on app_public.time_entries (organization_id, task_id);
create index time_entries_organization_id_member_id_idx on app_public.time_entries (organization_id, member_id, work_date);
create index time_entries_organization_id_invoice_id_idx on app_public.time_entries (organization_id, invoice_id);
comment on table app_public.time_entries is E'@behavior -delete\nTime a member spent on an engagement (optionally a task): minutes × hourly rate. Billable, uninvoiced time goes on an invoice with createInvoiceFromTime; invoiced time no longer changes.';
comment on column app_public.time_entries.rate is 'Hourly rate; when left at 0 on insert, the engagement''s hourly_rate.';

------------------------------------------------------------------------------------------------
-- Communication

create table app_public.threads (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  engagement_id uuid not null,
  subject text not null check (length(btrim(subject)) between 1 and 200),
  visibility app_public.thread_visibility not null default 'internal',
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, engagement_id) references app_public.engagements
);
create index threads_organization_id_engagement_id_idx on app_public.threads (organization_id, engagement_id, visibility);
comment on table app_public.threads is E'@behavior -delete\nA conversation about an engagement: internal (the team) or client (also its client-portal users).';

create table app_public.messages (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  thread_id uuid not null,
  body text not null check (length(btrim(body)) between 1 and 20000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, thread_id) references app_public.threads
);
create index messages_organization_id_thread_id_idx on app_public.messages (organization_id, thread_id, created_at);
comment on table app_public.messages is E'@behavior -delete\nA message in a thread. Client-portal users read and post in their engagement''s client threads.';
comment on column app_public.messages.created_by is 'The author.';

------------------------------------------------------------------------------------------------
-- Billing

create table app_public.invoice_schedules (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  engagement_id uuid not null,
  kind app_public.schedule_kind not null,
  description text not null check (length(btrim(description)) between 1 and 1000),
  amount numeric(14,2) not null check (amount > 0),
  frequency app_public.schedule_frequency,
  next_run_on date,
  ends_on date,
  milestone_id uuid,
  active boolean not null default true,
  last_invoiced_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  check ((kind = 'recurring') = (frequency is not null)),
  check ((kind = 'milestone') = (milestone_id is not null)),
  check (kind = 'milestone' or next_run_on is not null),
  check (ends_on >= next_run_on),
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, milestone_id) references app_public.milestones
);
create index invoice_schedules_organization_id_engagement_id_idx on app_public.invoice_schedules (organization_id, engagement_id);
create index invoice_schedules_organization_id_milestone_id_idx on app_public.invoice_schedules (organization_id, milestone_id);
create index invoice_schedules_next_run_on_idx on app_public.invoice_schedules (next_run_on) where active and deleted_at is null;
comment on table app_public.invoice_schedules is E'@behavior -delete\nWhen to bill an engagement: once on a date (fixed), when a milestone is reached (milestone), or every week/month/quarter/year from next_run_on (recurring).';

create table app_public.invoices (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  client_company_id uuid not null,
  engagement_id uuid,
  schedule_id uuid,
  number integer check (number > 0),
  status app_public.invoice_status not null default 'draft',
  issued_on date,
  due_on date,
  subtotal numeric(14,2) not null default 0 check (subtotal >= 0),
  tax_rate numeric(5,2) not null default 0 check (tax_rate between 0 and 100),
  tax_amount numeric(14,2) generated always as (round(subtotal * tax_rate / 100, 2)) stored,
  total numeric(14,2) generated always as (subtotal + round(subtotal * tax_rate / 100, 2)) stored,
  amount_paid numeric(14,2) not null default 0 check (amount_paid >= 0),
  balance numeric(14,2) generated always as (subtotal + round(subtotal * tax_rate / 100, 2) - amount_paid) stored,
  notes text check (length(notes) <= 10000),
  sent_at timestamptz,
  viewed_at timestamptz,
  paid_at timestamptz,
  overdue_at timestamptz,
  cancelled_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  unique (organization_id, number),
  check (due_on >= issued_on),
  check (amount_paid <= subtotal + round(subtotal * tax_rate / 100, 2)),
  check (number is null or status <> 'draft'),
  check (number is not null or status in ('draft', 'cancelled')),
  foreign key (organization_id, client_company_id) references app_public.client_companies,
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, schedule_id) references app_public.invoice_schedules
);
create index invoices_organization_id_client_company_id_idx on app_public.invoices (organization_id, client_company_id);
create index invoices_organization_id_engagement_id_idx on app_public.invoices (organization_id, engagement_id);
create index invoices_organization_id_schedule_id_idx on app_public.invoices (organization_id, schedule_id);
create index invoices_organization_id_status_due_on_idx on app_public.invoices (organization_id, status, due_on);
create index invoices_organization_id_issued_on_idx on app_public.invoices (organization_id, issued_on);
comment on table app_public.invoices is E'@behavior -delete\nA bill to a client: draft → sent (sendInvoice numbers it) → viewed → paid, overdue or cancelled. Totals, amount paid and balance are derived, never typed in.';
comment on column app_public.invoices.number is 'Allocated when sent: 1, 2, 3, ... per organization, without gaps or duplicates.';
comment on column app_public.invoices.amount_paid is 'Sum of its payments (kept by trigger).';

alter table app_public.time_entries
  add foreign key (organization_id, invoice_id) references app_public.invoices on delete set null (invoice_id);

-- The last invoice number of each organization. sendInvoice takes the next one under this row's
-- lock, inside its transaction: concurrent senders wait for each other, and a rolled-back send
-- gives its number back, so numbers have neither gaps nor duplicates.
create table app_private.invoice_counters (
  organization_id uuid primary key references app_public.organizations on delete cascade,
  last_number integer not null check (last_number >= 0)
);
call app_private.force_rls('app_private.invoice_counters');
comment on table app_private.invoice_counters is 'Last invoice number per organization (app_private.next_invoice_number).';

create table app_public.invoice_line_items (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  invoice_id uuid not null,
  position integer not null default 0,
  description text not null check (length(btrim(description)) between 1 and 1000),
  quantity numeric(12,2) not null default 1 check (quantity > 0),
  unit_price numeric(14,2) not null check (unit_price >= 0),
  amount numeric(14,2) generated always as (round(quantity * unit_price, 2)) stored,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, invoice_id) references app_public.invoices on delete cascade
);
create index invoice_line_items_organization_id_invoice_id_idx on app_public.invoice_line_items (organization_id, invoice_id, position);
comment on table app_public.invoice_line_items is 'A line of an invoice: quantity × unit price. Only a draft invoice''s lines change.';

create table app_public.payments (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  invoice_id uuid not null,
  amount numeric(14,2) not null check (amount > 0),
  received_on date not null default current_date,
  method app_public.payment_method not null default 'bank_transfer',
  reference text check (length(reference) <= 200),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, invoice_id) references app_public.invoices
);
create index payments_organization_id_invoice_id_idx on app_public.payments (organization_id, invoice_id);
create index payments_organization_id_received_on_idx on app_public.payments (organization_id, received_on);
comment on table app_public.payments is E'@behavior -update -delete\nMoney received for an invoice (recordPayment). Partial payments add up; more than the balance is refused (OVERPAYMENT); the payment that clears the balance marks the invoice paid. A ledger: payments never change.';

------------------------------------------------------------------------------------------------
-- Payables

create table app_public.vendors (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 200),
  email text check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  phone text check (length(phone) <= 50),
  tax_id text check (length(tax_id) <= 50),
  notes text check (length(notes) <= 10000),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create index vendors_organization_id_name_idx on app_public.vendors (organization_id, name);
comment on table app_public.vendors is E'@behavior -delete\nA supplier the firm pays (freelancers, software, subcontractors).';

create table app_public.bills (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  vendor_id uuid not null,
  engagement_id uuid,
  reference text check (length(reference) <= 100),
  description text check (length(description) <= 2000),
  amount numeric(14,2) not null check (amount > 0),
  issued_on date not null default current_date,
  due_on date,
  status app_public.bill_status not null default 'pending',
  approved_by uuid,
  approved_at timestamptz,
  rejected_at timestamptz,
  paid_at timestamptz,
  cancelled_at timestamptz,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  check (due_on >= issued_on),
  check (status not in ('approved', 'paid') or approved_by is not null),
  foreign key (organization_id, vendor_id) references app_public.vendors,
  foreign key (organization_id, engagement_id) references app_public.engagements
);
create index bills_organization_id_vendor_id_idx on app_public.bills (organization_id, vendor_id);
create index bills_organization_id_engagement_id_idx on app_public.bills (organization_id, engagement_id);
create index bills_organization_id_status_due_on_idx on app_public.bills (organization_id, status, due_on);
comment on table app_public.bills is E'@behavior -delete\nA vendor''s bill: pending → approved (owners and admins: approveBill) → paid, or rejected or cancelled.';
comment on column app_public.bills.approved_by is 'The owner or admin who approved it (no foreign key: audit columns outlive what they name).';

------------------------------------------------------------------------------------------------
-- Files

create table app_public.file_objects (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  engagement_id uuid,
  name text not null check (length(btrim(name)) between 1 and 255),
  content_type text not null default 'application/octet-stream' check (content_type ~ '^[a-z0-9.+-]+/[a-zA-Z0-9.+-]+$'),
  size_bytes bigint not null check (size_bytes >= 0),
  storage_key text not null check (length(storage_key) between 1 and 1024),
  client_visible boolean not null default false,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  unique (organization_id, storage_key),
  foreign key (organization_id, engagement_id) references app_public.engagements
);
create index file_objects_organization_id_engagement_id_idx on app_public.file_objects (organization_id, engagement_id, created_at);
comment on table app_public.file_objects is E'@behavior -delete\nA file''s metadata (its bytes live in object storage under storage_key). Client-visible files of an engagement show in its client portal.';
comment on column app_public.file_objects.created_by is 'Who uploaded it.';

------------------------------------------------------------------------------------------------
-- Client portal

create table app_public.client_portal_access (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  contact_id uuid not null,
  engagement_id uuid not null,
  user_id uuid references app_public.users on delete cascade,
  granted_by uuid,
  accepted_at timestamptz,
  revoked_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  check ((user_id is null) = (accepted_at is null)),
  foreign key (organization_id, contact_id) references app_public.contacts,
  foreign key (organization_id, engagement_id) references app_public.engagements
);
create unique index client_portal_access_live_key on app_public.client_portal_access (organization_id, contact_id, engagement_id) where revoked_at is null;
create index client_portal_access_organization_id_engagement_id_idx on app_public.client_portal_access (organization_id, engagement_id);
create index client_portal_access_organization_id_user_id_idx on app_public.client_portal_access (organization_id, user_id);
comment on table app_public.client_portal_access is E'@behavior -insert -update -delete\nA client contact''s access to one engagement in the client portal (grantPortalAccess, acceptPortalAccess, revokePortalAccess).';

create table app_private.portal_access_secrets (
  organization_id uuid not null,
  access_id uuid not null,
  token_hash bytea not null unique,
  primary key (organization_id, access_id),
  foreign key (organization_id, access_id) references app_public.client_portal_access on delete cascade
);
call app_private.force_rls('app_private.portal_access_secrets');
comment on table app_private.portal_access_secrets is 'The hashed token of each client-portal access, until accepted.';

--!include functions/portal.sql

------------------------------------------------------------------------------------------------
-- Allowed status changes (from *new*: the statuses a row may be created in).

insert into app_private.status_transitions (table_name, from_status, to_status, stamp_column) values
  ('deals', '*new*', 'lead', null), ('deals', '*new*', 'qualified', null),
  ('deals', '*new*', 'proposal', null), ('deals', '*new*', 'negotiation', null),
  ('deals', 'lead', 'qualified', null), ('deals', 'qualified', 'lead', null),
  ('deals', 'qualified', 'proposal', null), ('deals', 'proposal', 'qualified', null),
  ('deals', 'proposal', 'negotiation', null), ('deals', 'negotiation', 'proposal', null),
  ('deals', 'qualified', 'won', 'closed_at'), ('deals', 'proposal', 'won', 'closed_at'), ('deals', 'negotiation', 'won', 'closed_at'),
  ('deals', 'lead', 'lost', 'closed_at'), ('deals', 'qualified', 'lost', 'closed_at'),
  ('deals', 'proposal', 'lost', 'closed_at'), ('deals', 'negotiation', 'lost', 'closed_at'),
  ('deals', 'lost', 'lead', null),

  ('proposals', '*new*', 'draft', null),
  ('proposals', 'draft', 'sent', 'sent_at'),
  ('proposals', 'sent', 'viewed', 'viewed_at'),
  ('proposals', 'sent', 'accepted', 'accepted_at'), ('proposals', 'viewed', 'accepted', 'accepted_at'),
  ('proposals', 'sent', 'rejected', 'rejected_at'), ('proposals', 'viewed', 'rejected', 'rejected_at'),
  ('proposals', 'sent', 'expired', 'expired_at'), ('proposals', 'viewed', 'expired', 'expired_at'),

  ('contracts', '*new*', 'draft', null),
  ('contracts', 'draft', 'sent', 'sent_at'),
  ('contracts', 'sent', 'signed', 'signed_at'),
  ('contracts', 'sent', 'expired', 'expired_at'),
  ('contracts', 'draft', 'cancelled', 'cancelled_at'), ('contracts', 'sent', 'cancelled', 'cancelled_at'),

  ('engagements', '*new*', 'active', null),
  ('engagements', 'active', 'on_hold', null), ('engagements', 'on_hold', 'active', null),
  ('engagements', 'active', 'completed', 'completed_at'), ('engagements', 'on_hold', 'completed', 'completed_at'),
  ('engagements', 'active', 'cancelled', 'cancelled_at'), ('engagements', 'on_hold', 'cancelled', 'cancelled_at'),

  ('projects', '*new*', 'planned', null), ('projects', '*new*', 'active', null),
  ('projects', 'planned', 'active', null),
  ('projects', 'active', 'on_hold', null), ('projects', 'on_hold', 'active', null),
  ('projects', 'active', 'completed', 'completed_at'),
  ('projects', 'planned', 'cancelled', null), ('projects', 'active', 'cancelled', null), ('projects', 'on_hold', 'cancelled', null),

  ('milestones', '*new*', 'open', null),
  ('milestones', 'open', 'reached', 'reached_at'), ('milestones', 'reached', 'open', null),

  ('tasks', '*new*', 'todo', null), ('tasks', '*new*', 'in_progress', null), ('tasks', '*new*', 'blocked', null),
  ('tasks', 'todo', 'in_progress', null), ('tasks', 'todo', 'blocked', null),
  ('tasks', 'todo', 'done', 'completed_at'), ('tasks', 'todo', 'cancelled', null),
  ('tasks', 'in_progress', 'todo', null), ('tasks', 'in_progress', 'blocked', null),
  ('tasks', 'in_progress', 'done', 'completed_at'), ('tasks', 'in_progress', 'cancelled', null),
  ('tasks', 'blocked', 'todo', null), ('tasks', 'blocked', 'in_progress', null), ('tasks', 'blocked', 'cancelled', null),
  ('tasks', 'done', 'in_progress', null), ('tasks', 'done', 'todo', null),
  ('tasks', 'cancelled', 'todo', null),

  ('invoices', '*new*', 'draft', null),
  ('invoices', 'draft', 'sent', 'sent_at'),
  ('invoices', 'sent', 'viewed', 'viewed_at'),
  ('invoices', 'sent', 'overdue', 'overdue_at'), ('invoices', 'viewed', 'overdue', 'overdue_at'),
  ('invoices', 'sent', 'paid', 'paid_at'), ('invoices', 'viewed', 'paid', 'paid_at'), ('invoices', 'overdue', 'paid', 'paid_at'),
  ('invoices', 'draft', 'cancelled', 'cancelled_at'), ('invoices', 'sent', 'cancelled', 'cancelled_at'),
  ('invoices', 'viewed', 'cancelled', 'cancelled_at'), ('invoices', 'overdue', 'cancelled', 'cancelled_at'),

  ('bills', '*new*', 'pending', null),
  ('bills', 'pending', 'approved', 'approved_at'),
  ('bills', 'pending', 'rejected', 'rejected_at'),
  ('bills', 'approved', 'paid', 'paid_at'),
  ('bills', 'pending', 'cancelled', 'cancelled_at'), ('bills', 'approved', 'cancelled', 'cancelled_at');

------------------------------------------------------------------------------------------------
-- Every table under the tenant recipe (policies, grants, updated_at, audit, soft delete).

-- client_companies moves from "members write" to the clients permission area.
call app_private.make_tenant_table('app_public.client_companies', 'clients', soft_delete_as => 'client_company');
call app_private.make_tenant_table('app_public.contacts', 'clients', soft_delete_as => 'contact');
call app_private.make_tenant_table('app_public.deals', 'deals', soft_delete_as => 'deal', readonly_columns => '{closed_at}');

call app_private.make_tenant_table('app_public.proposals', 'proposals', soft_delete_as => 'proposal',
  readonly_columns => '{status,subtotal,sent_at,viewed_at,accepted_at,rejected_at,expired_at,decided_by_name}',
  portal_read => $p$status <> 'draft' and engagement_id = any ((select app_public.current_portal_engagement_ids())::uuid[])$p$);
call app_private.make_tenant_table('app_public.proposal_line_items', 'proposals',
  portal_read => $p$exists (select from app_public.proposals p where p.organization_id = proposal_line_items.organization_id and p.id = proposal_line_items.proposal_id)$p$);
call app_private.make_tenant_table('app_public.contracts', 'contracts', soft_delete_as => 'contract', insertable => false,
  readonly_columns => '{proposal_id,client_company_id,status,value,signer_name,sent_at,signed_at,expired_at,cancelled_at}');

call app_private.make_tenant_table('app_public.engagements', 'engagements', soft_delete_as => 'engagement', insertable => false,
  readonly_columns => '{contract_id,client_company_id,completed_at,cancelled_at}',
  portal_read => $p$id = any ((select app_public.current_portal_engagement_ids())::uuid[])$p$);
call app_private.make_tenant_table('app_public.project_templates', 'projects', soft_delete_as => 'project_template');
call app_private.make_tenant_table('app_public.project_template_milestones', 'projects');
call app_private.make_tenant_table('app_public.project_template_tasks', 'projects');
call app_private.make_tenant_table('app_public.projects', 'projects', soft_delete_as => 'project', readonly_columns => '{template_id,completed_at}');
call app_private.make_tenant_table('app_public.milestones', 'projects', readonly_columns => '{reached_at}');
call app_private.make_tenant_table('app_public.tasks', 'projects', soft_delete_as => 'task', readonly_columns => '{completed_at}');
call app_private.make_tenant_table('app_public.time_entries', 'time', soft_delete_as => 'time_entry', readonly_columns => '{invoice_id}');

call app_private.make_tenant_table('app_public.threads', 'messages', soft_delete_as => 'thread',
  portal_read => $p$visibility = 'client' and engagement_id = any ((select app_public.current_portal_engagement_ids())::uuid[])$p$);
call app_private.make_tenant_table('app_public.messages', 'messages', soft_delete_as => 'message',
  portal_read => $p$exists (select from app_public.threads t where t.organization_id = messages.organization_id and t.id = messages.thread_id)$p$,
  portal_insert => $p$created_by = (select app_public.current_user_id()) and exists (select from app_public.threads t where t.organization_id = messages.organization_id and t.id = messages.thread_id)$p$);
-- Client-portal users post too: their messages belong to the organization of their portal.
alter table app_public.messages alter column organization_id
  set default coalesce(app_public.current_org_id(), app_public.current_portal_org_id());

call app_private.make_tenant_table('app_public.invoice_schedules', 'invoices', soft_delete_as => 'invoice_schedule', readonly_columns => '{last_invoiced_at}');
call app_private.make_tenant_table('app_public.invoices', 'invoices', soft_delete_as => 'invoice',
  readonly_columns => '{schedule_id,number,status,subtotal,amount_paid,sent_at,viewed_at,paid_at,overdue_at,cancelled_at}',
  portal_read => $p$status in ('sent', 'viewed', 'paid', 'overdue') and engagement_id = any ((select app_public.current_portal_engagement_ids())::uuid[])$p$);
call app_private.make_tenant_table('app_public.invoice_line_items', 'invoices',
  portal_read => $p$exists (select from app_public.invoices i where i.organization_id = invoice_line_items.organization_id and i.id = invoice_line_items.invoice_id)$p$);
call app_private.make_tenant_table('app_public.payments', 'invoices', updatable => false,
  portal_read => $p$exists (select from app_public.invoices i where i.organization_id = payments.organization_id and i.id = payments.invoice_id)$p$);

call app_private.make_tenant_table('app_public.vendors', 'vendors', soft_delete_as => 'vendor');
call app_private.make_tenant_table('app_public.bills', 'bills', soft_delete_as => 'bill',
  readonly_columns => '{status,approved_by,approved_at,rejected_at,paid_at,cancelled_at}');

call app_private.make_tenant_table('app_public.file_objects', 'files', soft_delete_as => 'file_object',
  portal_read => $p$client_visible and engagement_id = any ((select app_public.current_portal_engagement_ids())::uuid[])$p$);

call app_private.make_tenant_table('app_public.client_portal_access', 'portal', insertable => false, updatable => false,
  portal_read => $p$user_id = (select app_public.current_user_id())$p$);

call app_private.make_tenant_table('app_public.roles', 'roles', soft_delete_as => 'role');
call app_private.make_tenant_table('app_public.role_permissions', 'roles');
call app_private.make_tenant_table('app_public.role_assignments', 'roles');

-- Status machines, then edit locks (after the grants they read).
call app_private.attach_status_machine('app_public.deals', 'stage');
call app_private.attach_status_machine('app_public.proposals');
call app_private.attach_status_machine('app_public.contracts');
call app_private.attach_status_machine('app_public.engagements');
call app_private.attach_status_machine('app_public.projects');
call app_private.attach_status_machine('app_public.milestones');
call app_private.attach_status_machine('app_public.tasks');
call app_private.attach_status_machine('app_public.invoices');
call app_private.attach_status_machine('app_public.bills');

call app_private.attach_edit_lock('app_public.proposals', '{draft}');
call app_private.attach_edit_lock('app_public.contracts', '{draft}');
call app_private.attach_edit_lock('app_public.invoices', '{draft}', also_locked => '{deleted_at}');
call app_private.attach_edit_lock('app_public.bills', '{pending}');

call app_private.attach_line_item_totals('app_public.proposal_line_items', 'app_public.proposals', 'proposal_id');
call app_private.attach_line_item_totals('app_public.invoice_line_items', 'app_public.invoices', 'invoice_id');

--!include functions/crm.sql
--!include functions/sales.sql
--!include functions/delivery.sql
--!include functions/billing.sql
--!include functions/auth.sql

------------------------------------------------------------------------------------------------
-- What the visitor may execute (soft-delete functions are granted by attach_soft_delete).

grant execute on function
  app_public.has_permission(text),
  app_public.my_permissions(),
  app_public.current_portal_org_id(),
  app_public.current_portal_engagement_ids(),
  app_public.grant_portal_access(uuid, uuid),
  app_public.accept_portal_access(text),
  app_public.revoke_portal_access(uuid),
  app_public.send_proposal(uuid),
  app_public.mark_proposal_viewed(uuid),
  app_public.accept_proposal(uuid, text),
  app_public.reject_proposal(uuid, text),
  app_public.send_contract(uuid),
  app_public.sign_contract(uuid, text),
  app_public.cancel_contract(uuid),
  app_public.create_project_from_template(uuid, uuid, text, date),
  app_public.create_invoice_from_time(uuid, numeric),
  app_public.send_invoice(uuid),
  app_public.mark_invoice_viewed(uuid),
  app_public.cancel_invoice(uuid),
  app_public.record_payment(uuid, numeric, date, app_public.payment_method, text),
  app_public.approve_bill(uuid),
  app_public.reject_bill(uuid),
  app_public.pay_bill(uuid),
  app_public.cancel_bill(uuid)
to :DATABASE_VISITOR;
