--! Previous: sha1:2ae565179de430550d2e8534edd199fb2bdc83e3
--! Hash: sha1:b44168952538afdaaf42f1fdcac358f1c42691d7
--! Message: Documents created whole, continued: a project template with its milestones and tasks, a week of time logged and submitted in one step; reports plan with the organization's id on every call

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
set local statement_timeout = '60s';
-- Documents created whole, continued: a project template with its milestones and tasks, a week
-- of time with its entries submitted.
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
end
$$;
comment on type app_public.document_line is 'A line of a proposal or an invoice given with it: description, quantity (default 1), unit price.';

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

create or replace function app_public.create_proposal_with_lines(
  client_company_id uuid, title text, lines app_public.document_line[],
  deal_id uuid default null, engagement_id uuid default null, tax_rate numeric default null,
  valid_until date default null, notes text default null, currency text default null, id uuid default null
) returns app_public.proposals
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
begin
  perform app_private.check_document_lines(lines, 'proposal');
  insert into app_public.proposals (id, client_company_id, title, deal_id, engagement_id, tax_rate, valid_until, notes, currency)
  values (coalesce(create_proposal_with_lines.id, gen_random_uuid()), create_proposal_with_lines.client_company_id, create_proposal_with_lines.title,
    create_proposal_with_lines.deal_id, create_proposal_with_lines.engagement_id, coalesce(create_proposal_with_lines.tax_rate, 0),
    create_proposal_with_lines.valid_until, create_proposal_with_lines.notes, create_proposal_with_lines.currency)
  returning * into v;
  insert into app_public.proposal_line_items (proposal_id, position, description, quantity, unit_price)
  select v.id, l.position, l.description, coalesce(l.quantity, 1), l.unit_price
  from unnest(create_proposal_with_lines.lines) with ordinality as l(description, quantity, unit_price, position);
  select p.* into v from app_public.proposals p where p.organization_id = v.organization_id and p.id = v.id;
  return v;
end
$$;
revoke all on function app_public.create_proposal_with_lines(uuid, text, app_public.document_line[], uuid, uuid, numeric, date, text, text, uuid) from public;
grant execute on function app_public.create_proposal_with_lines(uuid, text, app_public.document_line[], uuid, uuid, numeric, date, text, text, uuid) to :DATABASE_VISITOR;
comment on function app_public.create_proposal_with_lines(uuid, text, app_public.document_line[], uuid, uuid, numeric, date, text, text, uuid) is 'Creates a draft proposal with its lines in one step, all or nothing (proposals.write): as inserting the proposal and each line would.';

create or replace function app_public.create_invoice_with_lines(
  client_company_id uuid, lines app_public.document_line[],
  engagement_id uuid default null, tax_rate numeric default null, due_on date default null,
  notes text default null, currency text default null, id uuid default null
) returns app_public.invoices
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  perform app_private.check_document_lines(lines, 'invoice');
  insert into app_public.invoices (id, client_company_id, engagement_id, tax_rate, due_on, notes, currency)
  values (coalesce(create_invoice_with_lines.id, gen_random_uuid()), create_invoice_with_lines.client_company_id, create_invoice_with_lines.engagement_id,
    coalesce(create_invoice_with_lines.tax_rate, 0), create_invoice_with_lines.due_on, create_invoice_with_lines.notes, create_invoice_with_lines.currency)
  returning * into v;
  insert into app_public.invoice_line_items (invoice_id, position, description, quantity, unit_price)
  select v.id, l.position, l.description, coalesce(l.quantity, 1), l.unit_price
  from unnest(create_invoice_with_lines.lines) with ordinality as l(description, quantity, unit_price, position);
  select i.* into v from app_public.invoices i where i.organization_id = v.organization_id and i.id = v.id;
  return v;
end
$$;
revoke all on function app_public.create_invoice_with_lines(uuid, app_public.document_line[], uuid, numeric, date, text, text, uuid) from public;
grant execute on function app_public.create_invoice_with_lines(uuid, app_public.document_line[], uuid, numeric, date, text, text, uuid) to :DATABASE_VISITOR;
comment on function app_public.create_invoice_with_lines(uuid, app_public.document_line[], uuid, numeric, date, text, text, uuid) is 'Creates a draft invoice with its lines in one step, all or nothing (invoices.write): as inserting the invoice and each line would.';

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
  milestones app_public.template_milestone_line[] default null, id uuid default null
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
  insert into app_public.project_templates (id, name, description)
  values (coalesce(create_project_template_with_tasks.id, gen_random_uuid()), create_project_template_with_tasks.name, create_project_template_with_tasks.description)
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
revoke all on function app_public.create_project_template_with_tasks(text, app_public.template_task_line[], text, app_public.template_milestone_line[], uuid) from public;
grant execute on function app_public.create_project_template_with_tasks(text, app_public.template_task_line[], text, app_public.template_milestone_line[], uuid) to :DATABASE_VISITOR;
comment on function app_public.create_project_template_with_tasks(text, app_public.template_task_line[], text, app_public.template_milestone_line[], uuid) is 'Creates a project template with its milestones and tasks in one step, all or nothing (projects.write); a task names its milestone by name.';

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
-- Reports plan with the organization's id on every call (plan_cache_mode = force_custom_plan).
--! Included functions/reports.sql
-- Reports (docs/REPORTS.md): the firm's month-end questions as SQL functions, exposed as GraphQL
-- query fields. Each is SECURITY INVOKER and reads as the caller may: row-level security applies
-- to every row it adds up (a member without invoices.read sees no receivables), and a report
-- that needs a special permission says so instead of answering with zeros (profitability needs
-- costs.read). Every one reads the current organization's rows through an index led by
-- organization_id (tests/reports.test.ts checks the plans; npm run bench times them).
--
--   reportUtilization(fromOn, toOn)         per member: capacity (member_capacities), hours,
--                                           billable hours, utilization = billable / capacity
--   reportUnbilledWork                      per engagement: approved billable time and approved
--                                           billable expenses not invoiced yet, and time still
--                                           waiting for approval
--   reportReceivablesAging(asOf)            per client and currency: open balances by days past
--                                           due (current, 1–30, 31–60, 61–90, over 90), and in
--                                           the base currency
--   reportEngagementProfitability(fromOn, toOn)  per engagement: revenue (invoiced, net of
--                                           credit notes), cost (time at cost rates, expenses,
--                                           vendor bills), margin
--   reportPipeline                          per deal stage: deals, value, weighted value
-- Each fixes the organization's id once (a variable) and plans with it on every call
-- (plan_cache_mode = force_custom_plan: a generic plan, which plpgsql settles on after five
-- calls, nested loops that added a whole part up again per engagement: 200 ms instead of 50),
-- and adds each part up once (materialized), time summed per rate before money is computed.
-- Idempotent; re-included by later migrations.

-- Capacity: how many hours a week a member is available for work, from a date on.
create table if not exists app_public.member_capacities (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  member_id uuid not null,
  weekly_hours app_public.quantity not null check (weekly_hours >= 0 and weekly_hours <= 168),
  effective_from app_public.business_date,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  foreign key (organization_id, member_id) references app_public.organization_members
);
create unique index if not exists member_capacities_member_from_key on app_public.member_capacities
  (organization_id, member_id, effective_from) nulls not distinct where deleted_at is null;
create index if not exists member_capacities_organization_id_member_id_idx on app_public.member_capacities (organization_id, member_id);
comment on table app_public.member_capacities is 'How many hours a week a member is available (Monday to Friday, evenly), from effective_from on (none: since always) until a later one starts. Utilization is measured against it.';
call app_private.make_tenant_table('app_public.member_capacities', 'rates', soft_delete_as => 'member_capacity');
call app_private.set_audit_parent('app_public.member_capacities', 'member_id', 'app_public.organization_members');
call app_private.declare_record_retention('app_public.member_capacities', false, 'a plan, not a booking');

do $$
begin
  if to_regtype('app_public.utilization_report_row') is null then
    create type app_public.utilization_report_row as (
      member_id uuid, member_name text, capacity_hours numeric, hours numeric, billable_hours numeric,
      utilization_percent numeric, billable_percent numeric);
  end if;
  if to_regtype('app_public.unbilled_work_report_row') is null then
    create type app_public.unbilled_work_report_row as (
      engagement_id uuid, engagement_name text, client_company_id uuid, client_name text, currency text,
      unbilled_hours numeric, unbilled_time_amount numeric, unbilled_expenses_amount numeric, unbilled_amount numeric,
      awaiting_approval_hours numeric);
  end if;
  if to_regtype('app_public.receivables_aging_report_row') is null then
    create type app_public.receivables_aging_report_row as (
      client_company_id uuid, client_name text, currency text, invoices integer,
      current_amount numeric, days_1_to_30 numeric, days_31_to_60 numeric, days_61_to_90 numeric, days_over_90 numeric,
      total numeric, total_in_base_currency numeric);
  end if;
  if to_regtype('app_public.engagement_profitability_report_row') is null then
    create type app_public.engagement_profitability_report_row as (
      engagement_id uuid, engagement_name text, client_name text, currency text,
      revenue numeric, time_cost numeric, expense_cost numeric, bill_cost numeric, cost numeric,
      margin numeric, margin_percent numeric, hours numeric);
  end if;
  if to_regtype('app_public.pipeline_report_row') is null then
    create type app_public.pipeline_report_row as (stage app_public.deal_stage, deals integer, value numeric, weighted_value numeric);
  end if;
end
$$;
comment on type app_public.utilization_report_row is 'A member''s hours over a period: capacity (weekdays × weekly capacity / 5), hours logged, billable hours; utilization = billable hours / capacity, billable share = billable / all hours (percent).';
comment on type app_public.unbilled_work_report_row is 'An engagement''s work not invoiced yet: approved billable time (hours, value at its rates) and approved billable expenses, in the engagement''s currency, and hours still waiting for approval.';
comment on type app_public.receivables_aging_report_row is 'A client''s open invoices of one currency by days past due on the report''s date, and their total in the base currency (null when an exchange rate is missing).';
comment on type app_public.engagement_profitability_report_row is 'An engagement over a period: revenue (invoices issued, net of credit notes issued), cost (time at its frozen cost rates, approved expenses, approved or paid vendor bills), margin, in the engagement''s currency.';
comment on type app_public.pipeline_report_row is 'Deals of one stage: how many, their value and their value weighted by probability.';

-- A period given by the caller: both ends, in order, at most 366 days.
create or replace function app_private.check_report_period(from_on date, to_on date) returns void
language plpgsql immutable
set search_path = pg_catalog
as $$
begin
  if from_on is null or to_on is null or to_on < from_on or to_on - from_on > 366 then
    perform app_private.fail('INVALID_VALUE', 'A report period runs from fromOn to toOn (both given, in order, at most 366 days).');
  end if;
end
$$;

create or replace function app_public.report_utilization(from_on date, to_on date) returns setof app_public.utilization_report_row
language plpgsql stable
set search_path = pg_catalog
set plan_cache_mode = force_custom_plan
as $$
declare
  v_org uuid := app_public.current_org_id();
begin
  perform app_private.check_report_period(from_on, to_on);
  return query
  with members as materialized (
    select m.id, coalesce(u.name, u.email) as name from app_public.organization_members m
    left join app_public.users u on u.id = m.user_id
    where m.organization_id = v_org
  ), capacity as materialized (
    select m.id as member_id, sum(c.weekly_hours / 5.0) as hours
    from members m
    cross join generate_series(report_utilization.from_on, report_utilization.to_on, interval '1 day') d(day)
    cross join lateral (
      select k.weekly_hours from app_public.member_capacities k
      where k.organization_id = v_org and k.member_id = m.id and k.deleted_at is null
        and coalesce(k.effective_from, '1900-01-01') <= d.day::date
      order by k.effective_from desc nulls last limit 1) c
    where extract(isodow from d.day) < 6
    group by m.id
  ), worked as materialized (
    select t.member_id, sum(t.minutes) / 60.0 as hours, sum(t.minutes) filter (where t.billable) / 60.0 as billable_hours
    from app_public.time_entries t
    where t.organization_id = v_org and t.deleted_at is null
      and t.work_date between report_utilization.from_on and report_utilization.to_on
    group by t.member_id
  )
  select m.id, m.name, round(c.hours, 2), round(coalesce(w.hours, 0), 2), round(coalesce(w.billable_hours, 0), 2),
    case when c.hours > 0 then round(100 * coalesce(w.billable_hours, 0) / c.hours, 1) end,
    case when w.hours > 0 then round(100 * coalesce(w.billable_hours, 0) / w.hours, 1) end
  from members m
  left join capacity c on c.member_id = m.id
  left join worked w on w.member_id = m.id
  where c.hours is not null or w.hours is not null
  order by m.name, m.id;
end
$$;
comment on function app_public.report_utilization(date, date) is 'Utilization per member from fromOn to toOn (at most 366 days): capacity, hours, billable hours, billable hours / capacity. Time as you may read it (time.read).';

create or replace function app_public.report_unbilled_work() returns setof app_public.unbilled_work_report_row
language plpgsql stable
set search_path = pg_catalog
set plan_cache_mode = force_custom_plan
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_approval boolean := coalesce((select o.time_approval_required from app_public.organizations o where o.id = app_public.current_org_id()), true);
begin
  return query
  -- (Summed per member, week and rate first: integer sums, then one join with the approved weeks.)
  with time_open as materialized (
    select t.engagement_id, t.member_id, date_trunc('week', t.work_date)::date as week, t.rate, sum(t.minutes) as minutes
    from app_public.time_entries t
    where t.organization_id = v_org and t.billable and t.invoice_id is null and t.deleted_at is null
    group by t.engagement_id, t.member_id, date_trunc('week', t.work_date)::date, t.rate
  ), approved_weeks as materialized (
    select s.member_id, s.week_starts_on from app_public.timesheets s
    where s.organization_id = v_org and s.status = 'approved'
  ), per_time as materialized (
    select o.engagement_id,
      sum(o.minutes) filter (where a.member_id is not null or not v_approval) / 60.0 as hours,
      sum(round(o.minutes / 60.0 * coalesce(o.rate, 0), 2)) filter (where a.member_id is not null or not v_approval) as amount,
      sum(o.minutes) filter (where a.member_id is null and v_approval) / 60.0 as waiting
    from time_open o
    left join approved_weeks a on a.member_id = o.member_id and a.week_starts_on = o.week
    group by o.engagement_id
  ), per_expense as materialized (
    select x.engagement_id, x.currency, sum(x.billable_amount) as amount
    from app_public.expenses x
    where x.organization_id = v_org and x.status = 'approved' and x.billable
      and x.invoice_line_item_id is null and x.deleted_at is null
    group by x.engagement_id, x.currency
  )
  select e.id, e.name, e.client_company_id, c.name, e.currency,
    round(coalesce(pt.hours, 0), 2), coalesce(pt.amount, 0), coalesce(px.amount, 0),
    coalesce(pt.amount, 0) + coalesce(px.amount, 0), round(coalesce(pt.waiting, 0), 2)
  from app_public.engagements e
  join app_public.client_companies c on c.organization_id = e.organization_id and c.id = e.client_company_id
  left join per_time pt on pt.engagement_id = e.id
  left join per_expense px on px.engagement_id = e.id and px.currency = e.currency
  where e.organization_id = v_org and e.deleted_at is null
    and (pt.engagement_id is not null or px.engagement_id is not null)
  order by coalesce(pt.amount, 0) + coalesce(px.amount, 0) desc, e.name, e.id;
end
$$;
comment on function app_public.report_unbilled_work() is 'Work in progress not invoiced yet, per engagement: approved billable time (hours and value) and approved billable expenses in its currency, and billable hours still waiting for approval.';

create or replace function app_public.report_receivables_aging(as_of date default current_date) returns setof app_public.receivables_aging_report_row
language plpgsql stable
set search_path = pg_catalog
set plan_cache_mode = force_custom_plan
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_base text := (select o.currency from app_public.organizations o where o.id = app_public.current_org_id());
begin
  return query
  with open_invoices as materialized (
    select i.client_company_id, i.currency, i.balance, coalesce(report_receivables_aging.as_of, current_date) - coalesce(i.due_on, i.issued_on) as days_late
    from app_public.invoices i
    where i.organization_id = v_org and i.status in ('sent', 'viewed', 'overdue')
      and i.deleted_at is null and i.balance > 0
  ), per_client as materialized (
    select o.client_company_id, o.currency, count(*)::integer as invoices,
      coalesce(sum(o.balance) filter (where o.days_late <= 0), 0) as current_amount,
      coalesce(sum(o.balance) filter (where o.days_late between 1 and 30), 0) as days_1_to_30,
      coalesce(sum(o.balance) filter (where o.days_late between 31 and 60), 0) as days_31_to_60,
      coalesce(sum(o.balance) filter (where o.days_late between 61 and 90), 0) as days_61_to_90,
      coalesce(sum(o.balance) filter (where o.days_late > 90), 0) as days_over_90,
      sum(o.balance) as total
    from open_invoices o group by o.client_company_id, o.currency
  )
  select p.client_company_id, c.name, p.currency, p.invoices, p.current_amount, p.days_1_to_30, p.days_31_to_60, p.days_61_to_90, p.days_over_90, p.total,
    case when p.currency = v_base then p.total else app_public.to_base_currency(p.total, p.currency, coalesce(report_receivables_aging.as_of, current_date)) end
  from per_client p
  join app_public.client_companies c on c.organization_id = v_org and c.id = p.client_company_id
  order by p.total desc, c.name, p.currency;
end
$$;
comment on function app_public.report_receivables_aging(date) is 'Accounts receivable aging on asOf (default today): open balances of sent, viewed and overdue invoices per client and currency, by days past due, with the total in the base currency.';

create or replace function app_public.report_engagement_profitability(from_on date, to_on date) returns setof app_public.engagement_profitability_report_row
language plpgsql stable
set search_path = pg_catalog
set plan_cache_mode = force_custom_plan
as $$
declare
  v_org uuid := app_public.current_org_id();
begin
  perform app_private.check_report_period(from_on, to_on);
  if not app_public.has_permission('costs.read') then
    perform app_private.fail('NOT_PERMITTED', 'You need the costs.read permission to see what engagements cost.');
  end if;
  return query
  with revenue as materialized (
    select i.engagement_id, sum(i.subtotal) as amount
    from app_public.invoices i
    where i.organization_id = v_org and i.status in ('sent', 'viewed', 'paid', 'overdue') and i.deleted_at is null
      and i.issued_on between report_engagement_profitability.from_on and report_engagement_profitability.to_on
    group by i.engagement_id
  ), credited as materialized (
    select i.engagement_id, sum(n.subtotal) as amount
    from app_public.credit_notes n
    join app_public.invoices i on i.organization_id = n.organization_id and i.id = n.invoice_id
    where n.organization_id = v_org
      and n.issued_on between report_engagement_profitability.from_on and report_engagement_profitability.to_on
    group by i.engagement_id
  ), labour_by_cost as materialized (
    -- (Minutes summed per cost rate first: integer sums, then one multiplication per rate.)
    select t.engagement_id, k.hourly_cost, sum(t.minutes) as minutes
    from app_public.time_entries t
    left join app_public.time_entry_costs k on k.organization_id = t.organization_id and k.id = t.id
    where t.organization_id = v_org and t.deleted_at is null
      and t.work_date between report_engagement_profitability.from_on and report_engagement_profitability.to_on
    group by t.engagement_id, k.hourly_cost
  ), labour as materialized (
    select b.engagement_id, sum(b.minutes) / 60.0 as hours, sum(round(b.minutes / 60.0 * coalesce(b.hourly_cost, 0), 2)) as cost
    from labour_by_cost b group by b.engagement_id
  ), spent as materialized (
    select x.engagement_id, x.currency, sum(x.amount) as amount
    from app_public.expenses x
    where x.organization_id = v_org and x.status = 'approved' and x.deleted_at is null and x.engagement_id is not null
      and x.incurred_on between report_engagement_profitability.from_on and report_engagement_profitability.to_on
    group by x.engagement_id, x.currency
  ), billed as materialized (
    select b.engagement_id, b.currency, sum(b.amount) as amount
    from app_public.bills b
    where b.organization_id = v_org and b.status in ('approved', 'paid') and b.deleted_at is null and b.engagement_id is not null
      and b.issued_on between report_engagement_profitability.from_on and report_engagement_profitability.to_on
    group by b.engagement_id, b.currency
  ), per_engagement as materialized (
    select e.id, e.name, c.name as client_name, e.currency,
      coalesce(r.amount, 0) - coalesce(cr.amount, 0) as revenue,
      coalesce(l.cost, 0) as time_cost, coalesce(s.amount, 0) as expense_cost, coalesce(b.amount, 0) as bill_cost,
      round(coalesce(l.hours, 0), 2) as hours
    from app_public.engagements e
    join app_public.client_companies c on c.organization_id = e.organization_id and c.id = e.client_company_id
    left join revenue r on r.engagement_id = e.id
    left join credited cr on cr.engagement_id = e.id
    left join labour l on l.engagement_id = e.id
    left join spent s on s.engagement_id = e.id and s.currency = e.currency
    left join billed b on b.engagement_id = e.id and b.currency = e.currency
    where e.organization_id = v_org and e.deleted_at is null
      and (r.engagement_id is not null or cr.engagement_id is not null or l.engagement_id is not null or s.engagement_id is not null or b.engagement_id is not null)
  )
  select p.id, p.name, p.client_name, p.currency, p.revenue, p.time_cost, p.expense_cost, p.bill_cost,
    p.time_cost + p.expense_cost + p.bill_cost,
    p.revenue - (p.time_cost + p.expense_cost + p.bill_cost),
    case when p.revenue > 0 then round(100 * (p.revenue - (p.time_cost + p.expense_cost + p.bill_cost)) / p.revenue, 1) end,
    p.hours
  from per_engagement p
  order by p.revenue - (p.time_cost + p.expense_cost + p.bill_cost) desc, p.name, p.id;
end
$$;
comment on function app_public.report_engagement_profitability(date, date) is 'Project P&L per engagement from fromOn to toOn (at most 366 days; costs.read): revenue = invoices issued (net) − credit notes issued; cost = time at its frozen cost rates + approved expenses + approved or paid vendor bills of the engagement; margin and margin %.';

create or replace function app_public.report_pipeline() returns setof app_public.pipeline_report_row
language plpgsql stable
set search_path = pg_catalog
set plan_cache_mode = force_custom_plan
as $$
declare
  v_org uuid := app_public.current_org_id();
begin
  return query
  select d.stage, count(*)::integer, coalesce(sum(d.value), 0), round(coalesce(sum(d.value * d.probability / 100.0), 0), 2)
  from app_public.deals d
  where d.organization_id = v_org and d.deleted_at is null
  group by d.stage
  order by d.stage;
end
$$;
comment on function app_public.report_pipeline() is 'The sales pipeline per stage: deals, their value and their value weighted by probability (deals.read).';

revoke all on function app_private.check_report_period(date, date) from public;
grant execute on function app_private.check_report_period(date, date) to :DATABASE_VISITOR;
revoke all on function app_public.report_utilization(date, date) from public;
revoke all on function app_public.report_unbilled_work() from public;
revoke all on function app_public.report_receivables_aging(date) from public;
revoke all on function app_public.report_engagement_profitability(date, date) from public;
revoke all on function app_public.report_pipeline() from public;
grant execute on function app_public.report_utilization(date, date), app_public.report_unbilled_work(), app_public.report_receivables_aging(date),
  app_public.report_engagement_profitability(date, date), app_public.report_pipeline() to :DATABASE_VISITOR;
--! EndIncluded functions/reports.sql
