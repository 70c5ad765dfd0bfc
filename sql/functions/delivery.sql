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

-- Time entries. BEFORE INSERT OR UPDATE, the job role and the bill rate (sql/functions/rates.sql).
-- AFTER INSERT OR UPDATE (so row-level security has admitted the row first): the task must belong
-- to the entry's engagement; once invoiced (invoice_id set) an entry no longer changes
-- (NOT_EDITABLE) until its invoice is cancelled. SECURITY DEFINER: reads projects and tasks
-- whatever the caller may read.
create or replace function app_private.tg__time_entry_rules() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if tg_op = 'UPDATE' and old.invoice_id is not null
     and (to_jsonb(old) - 'invoice_id' - 'updated_at') is distinct from (to_jsonb(new) - 'invoice_id' - 'updated_at')
     and not app_private.erasing(new.organization_id) then -- (an erasure redacts its description: sql/functions/erasure.sql)
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

drop trigger if exists tg_time_entries__rules on app_public.time_entries;
create trigger tg_time_entries__rules after insert or update on app_public.time_entries
  for each row execute function app_private.tg__time_entry_rules();
