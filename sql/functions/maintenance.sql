-- Daily upkeep, run by the job worker (src/worker/tasks/daily_maintenance.ts, tenant_daily.ts):
--   1. the crontab task daily_maintenance calls app_private.enqueue_daily_maintenance(day), which
--      enqueues one tenant_daily job per organization (job_key tenant_daily:<org>:<day>: one per
--      organization and day, however often the crontab fires or backfills);
--   2. each tenant_daily job runs inside its organization (app.org_id set, row-level security on)
--      and calls the functions below, which move what is past its date along the status machine.
--   3. retention of the tables that grow with use (sql/functions/retention_growing.sql):
--      daily_maintenance applies the system-wide rules, each tenant_daily job its organization's,
--      in batches (src/worker/retention.ts).
-- Each function changes only rows that still need it, so a job that runs twice changes nothing
-- the second time. They are SECURITY DEFINER because statuses are not the visitor's to write;
-- they refuse any session that is not the worker's, and touch only the current organization.

create or replace function app_private.require_worker_in_organization() returns uuid
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker runs maintenance.');
  elsif v_org is null then
    perform app_private.fail('NO_ORGANIZATION', 'Maintenance runs inside one organization (app.org_id).');
  end if;
  return v_org;
end
$$;

-- One tenant_daily job per organization for `day`. Returns how many organizations.
create or replace function app_private.enqueue_daily_maintenance(day date) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_count integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker runs maintenance.');
  end if;
  select count(*) into v_count
  from app_public.organizations o,
    lateral graphile_worker.add_job(
      'tenant_daily',
      json_build_object('organization_id', o.id, 'day', day),
      job_key => format('tenant_daily:%s:%s', o.id, day),
      max_attempts => 10
    ) j;
  return v_count;
end
$$;

-- Sent or viewed invoices whose due date is before `day` become overdue (stamps overdue_at; the
-- audit trigger records the change and its outbox job follows). Returns how many.
create or replace function app_private.mark_overdue_invoices(day date) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_count integer;
begin
  update app_public.invoices i set status = 'overdue'
  where i.organization_id = v_org and i.status in ('sent', 'viewed') and i.due_on < day and i.deleted_at is null;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

-- Sent or viewed proposals valid until before `day` become expired. Returns how many.
create or replace function app_private.expire_proposals(day date) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_count integer;
begin
  update app_public.proposals p set status = 'expired'
  where p.organization_id = v_org and p.status in ('sent', 'viewed') and p.valid_until < day and p.deleted_at is null;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
