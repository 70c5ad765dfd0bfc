-- Retention: soft-deleted records are purged (hard-deleted) once the organization's retention
-- window (organizations.retention_days, default 30) has passed, by the job worker
-- (src/worker/tasks/retention_purge.ts fans out, tenant_retention_purge.ts runs one
-- organization). A record is purged exactly when it can no longer be restored: restore_<x>() and
-- deleted_<x>() (sql/functions/tenant_tables.sql) offer rows with deleted_at > now() - window,
-- the purge takes those with deleted_at <= now() - window, on the same clock.
--
-- Which tables: every app_public table with organization_id and deleted_at timestamptz, read
-- from the catalog on every run (app_private.soft_delete_tables), so a new soft-delete table is
-- covered the day it exists.
--
-- Foreign keys, never broken: a purged row's parts go with it (line items, milestones, template
-- parts, a role's permissions, portal access: ON DELETE CASCADE; a deleted role still assigned to
-- members is kept, see sql/functions/permissions.sql; time entries of a purged draft invoice are
-- released: SET NULL). A deleted row that a row staying behind still references (a deleted client
-- with a live contact or invoice, a deleted schedule whose invoices remain) is kept, and counted
-- as kept: the purge never deletes or changes live records to make room. Rows referencing each
-- other are purged children first: the purge repeats its passes over the tables until one
-- deletes nothing. A cascade that would reach a row something live still references (a deleted
-- project whose milestone a live schedule bills) is caught, and that row is kept.
--
-- Audit: each purged row gets its `delete` event from the audit trigger like any deletion
-- (secret columns left out, actor null: the system), so the outbox and its consumers learn that
-- the row is gone for good; then ONE summary event (action `purge`, table_name
-- `deleted_records`, record_id the organization) in the same transaction counts the rows purged
-- and kept per table. Only admins and owners read the summary, as only they see deleted records.
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- The activity log: summary events

alter table app_public.activity_events drop constraint if exists activity_events_action_check;
alter table app_public.activity_events add constraint activity_events_action_check
  check (action in ('insert', 'update', 'delete', 'soft_delete', 'restore', 'purge'));
comment on column app_public.activity_events.action is 'insert, update, delete, soft_delete, restore: a row changed (the audit trigger); purge: the retention job''s summary of the deleted records it purged.';

-- Summaries of purges are read by admins and owners (they list and restore deleted records).
insert into app_private.activity_read_rules (table_name, permission, min_role) values
  ('deleted_records', null, 'admin')
on conflict (table_name) do update set permission = excluded.permission, min_role = excluded.min_role;

-- An event that is not one row's change (a job's summary) in the current organization's log,
-- with the outbox job the audit trigger enqueues for changes (dispatch_activity, one per
-- organization and transaction). Besides app_private.tg__audit this is the only way into
-- activity_events: nobody may execute it, so only the owner's SECURITY DEFINER functions call it
-- (the owner alone may insert into the table).
create or replace function app_private.record_activity(action text, table_name text, record_id uuid, new_values jsonb) returns app_public.activity_events
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_event app_public.activity_events;
begin
  if v_org is null then
    perform app_private.fail('NO_ORGANIZATION', 'An activity event belongs to one organization (app.org_id).');
  end if;
  insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, old_values, new_values)
  values (v_org, app_public.current_user_id(), record_activity.action, record_activity.table_name, record_activity.record_id, null, record_activity.new_values)
  returning * into v_event;
  perform graphile_worker.add_job(
    'dispatch_activity',
    json_build_object('organization_id', v_org, 'transaction_id', v_event.transaction_id, 'occurred_at', v_event.occurred_at),
    job_key => format('dispatch_activity:%s:%s', v_org, v_event.transaction_id)
  );
  return v_event;
end
$$;

------------------------------------------------------------------------------------------------
-- Foreign keys of the parts that go with their record

-- Portal access is part of its contact and engagement (it already ends when either is deleted:
-- app_private.live_portal_access); purging them removes it too.
alter table app_public.client_portal_access
  drop constraint if exists client_portal_access_organization_id_contact_id_fkey,
  add constraint client_portal_access_organization_id_contact_id_fkey
    foreign key (organization_id, contact_id) references app_public.contacts on delete cascade,
  drop constraint if exists client_portal_access_organization_id_engagement_id_fkey,
  add constraint client_portal_access_organization_id_engagement_id_fkey
    foreign key (organization_id, engagement_id) references app_public.engagements on delete cascade;

------------------------------------------------------------------------------------------------
-- The purge

-- The soft-delete tables: app_public tables with organization_id and deleted_at timestamptz.
create or replace function app_private.soft_delete_tables() returns setof regclass
language sql stable
set search_path = pg_catalog
as $$
  select c.oid::regclass
  from pg_class c
  where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p') and not c.relispartition
    and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'deleted_at' and a.atttypid = 'timestamptz'::regtype and not a.attisdropped)
    and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
  order by c.relname
$$;

-- A condition over row `t` of `tbl`: no row references it through a foreign key that would refuse
-- its deletion (NO ACTION or RESTRICT), from any table. Cascading and SET NULL keys do not block.
create or replace function app_private.purge_unreferenced(tbl regclass) returns text
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(string_agg(format('not exists (select from %s r where %s)', c.conrelid::regclass, (
    select string_agg(format('r.%I = t.%I', a.attname, af.attname), ' and ' order by k.ord)
    from unnest(c.conkey, c.confkey) with ordinality as k(attnum, fattnum, ord)
    join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
    join pg_attribute af on af.attrelid = c.confrelid and af.attnum = k.fattnum
  )), ' and ' order by c.conname), 'true')
  from pg_constraint c
  where c.contype = 'f' and c.confrelid = tbl and c.confdeltype in ('a', 'r')
$$;

-- Deletes from `tables` the rows of `condition` (its parameters: $1 the organization, $2
-- `cutoff`) that nothing left references, children first: passes over every table
-- (app_private.purge_unreferenced) until a pass deletes nothing. With `keep_referenced`, a row that
-- a cascade would take from under a row that stays is kept (its table retried row by row, by id);
-- without, that is an error. Returns the rows deleted per table (keyed by the table's name, or
-- schema-qualified with `qualified`). Used by the retention purge and the purge of a deleted
-- organization (sql/functions/organization_deletion.sql).
create or replace function app_private.delete_in_passes(tables regclass[], condition text, organization_id uuid, cutoff timestamptz, keep_referenced boolean, qualified boolean) returns jsonb
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_table regclass;
  v_key text;
  v_where text;
  v_counts jsonb := '{}';
  v_pass bigint;
  v_n bigint;
  v_id uuid;
begin
  loop
    v_pass := 0;
    foreach v_table in array tables loop
      v_key := case when qualified then v_table::text else (select c.relname::text from pg_class c where c.oid = v_table) end;
      v_where := format('%s and %s', condition, app_private.purge_unreferenced(v_table));
      begin
        execute format('delete from %s t where %s', v_table, v_where) using organization_id, cutoff;
        get diagnostics v_n = row_count;
      exception when foreign_key_violation then
        if not keep_referenced then
          raise;
        end if;
        -- A cascade reached a row that a live row references: row by row, keeping those.
        v_n := 0;
        for v_id in execute format('select t.id from %s t where %s order by t.id', v_table, v_where) using organization_id, cutoff loop
          begin
            execute format('delete from %s t where t.organization_id = $1 and t.id = $2', v_table) using organization_id, v_id;
            v_n := v_n + 1;
          exception when foreign_key_violation then
            null;
          end;
        end loop;
      end;
      if v_n > 0 then
        v_counts := v_counts || jsonb_build_object(v_key, coalesce((v_counts ->> v_key)::bigint, 0) + v_n);
        v_pass := v_pass + v_n;
      end if;
    end loop;
    exit when v_pass = 0;
  end loop;
  return v_counts;
end
$$;
revoke all on function app_private.delete_in_passes(regclass[], text, uuid, timestamptz, boolean, boolean) from public;

-- Purges the current organization's soft-deleted rows whose retention window has passed (see the
-- top of this file). Returns, and records as one `purge` event when anything was purged:
--   { "retention_days": 30, "deleted_before": "<cutoff>", "purged": {"<table>": n, ...},
--     "kept": {"<table>": n, ...} }   (kept: past the window but still referenced)
-- Only the worker's session, inside one organization; a second run purges nothing more.
create or replace function app_private.purge_deleted_records() returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_days integer;
  v_cutoff timestamptz;
  v_tables regclass[] := array(select app_private.soft_delete_tables());
  v_table regclass;
  v_purged jsonb := '{}';
  v_kept jsonb := '{}';
  v_n integer;
  v_summary jsonb;
begin
  select o.retention_days into v_days from app_public.organizations o where o.id = v_org;
  v_cutoff := now() - make_interval(days => v_days);
  v_purged := app_private.delete_in_passes(v_tables, 't.organization_id = $1 and t.deleted_at <= $2', v_org, v_cutoff, true, false);

  foreach v_table in array v_tables loop
    execute format('select count(*) from %s t where t.organization_id = $1 and t.deleted_at <= $2', v_table) into v_n using v_org, v_cutoff;
    if v_n > 0 then
      v_kept := v_kept || jsonb_build_object((select c.relname::text from pg_class c where c.oid = v_table), v_n);
    end if;
  end loop;

  v_summary := jsonb_build_object('retention_days', v_days, 'deleted_before', v_cutoff, 'purged', v_purged, 'kept', v_kept);
  if v_purged <> '{}' then
    perform app_private.record_activity('purge', 'deleted_records', v_org, v_summary);
  end if;
  return v_summary;
end
$$;

-- One tenant_retention_purge job per organization that has soft-deleted rows past its window
-- (job key tenant_retention_purge:<organization>:<day>). Returns how many organizations.
create or replace function app_private.enqueue_retention_purge(day date) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_expired text;
  v_count integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker runs the retention purge.');
  end if;
  select string_agg(format(
    'select t.organization_id from %s t join app_public.organizations o on o.id = t.organization_id
     where t.deleted_at <= now() - make_interval(days => o.retention_days)', tbl), ' union ')
  into v_expired
  from app_private.soft_delete_tables() as tbl;
  execute format(
    $q$select count(*) from (%s) as o(organization_id),
      lateral graphile_worker.add_job(
        'tenant_retention_purge',
        json_build_object('organization_id', o.organization_id, 'day', $1),
        job_key => format('tenant_retention_purge:%%s:%%s', o.organization_id, $1),
        max_attempts => 10
      ) as j$q$,
    coalesce(v_expired, 'select null::uuid where false'))
  into v_count using day;
  return v_count;
end
$$;

revoke all on function
  app_private.record_activity(text, text, uuid, jsonb),
  app_private.soft_delete_tables(),
  app_private.purge_unreferenced(regclass),
  app_private.purge_deleted_records(),
  app_private.enqueue_retention_purge(date)
from public;
-- The worker's grants are at the end of the migration that includes this file.
