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
