-- Deleting an organization (GDPR art. 17 for a whole firm), owners only, with a grace period:
--
--   deleteOrganization(slug)      an owner types the organization's slug to confirm; the
--                                 organization is due for deletion in 30 days
--                                 (app_private.organization_deletion_grace()) and the job
--                                 `organization_purge` is queued to run then. Everything works as
--                                 before meanwhile, so the firm can export what it must keep.
--   cancelOrganizationDeletion    an owner changes their mind during the grace period.
--
-- The purge (app_private.purge_organization, in one transaction) deletes every row the
-- organization owns in every table of app_public and app_private (children first, by foreign
-- keys, read from the catalog: a new table is covered the day it exists), its activity log
-- (through the erasure door of sql/functions/erasure.sql, opened for this organization with scope
-- `organization`: the only way events are ever deleted), its queued jobs, and its stored files
-- (each deleted file row queues `file_delete_object`). Without writing an event per deleted row:
-- the log being deleted with them. The people stay: users' accounts are their own. What remains
-- is app_private.deleted_organizations: the organization's id (`id`: the table holds no row of
-- the organization), who asked, when, when it was purged, and how many rows went per table.
-- Never its name or data.
-- Idempotent; re-included by later migrations.

alter table app_public.organizations
  add column if not exists deletion_requested_at timestamptz,
  add column if not exists deletion_requested_by uuid,
  add column if not exists deletion_due_at timestamptz;
comment on column app_public.organizations.deletion_requested_at is 'When an owner asked to delete the organization (deleteOrganization); null when no deletion is pending.';
comment on column app_public.organizations.deletion_requested_by is 'The owner who asked to delete the organization.';
comment on column app_public.organizations.deletion_due_at is 'When the organization and all its data will be deleted for good, unless an owner cancels (cancelOrganizationDeletion).';

create or replace function app_private.organization_deletion_grace() returns interval
language sql immutable
set search_path = pg_catalog
as $$ select interval '30 days' $$;
comment on function app_private.organization_deletion_grace() is 'How long an organization''s deletion waits for an owner to cancel it.';

create table if not exists app_private.deleted_organizations (
  id uuid primary key,
  requested_by uuid,
  requested_at timestamptz not null,
  purged_at timestamptz not null default now(),
  rows_deleted jsonb not null
);
alter table app_private.deleted_organizations enable row level security;
alter table app_private.deleted_organizations force row level security;
comment on table app_private.deleted_organizations is 'Organizations deleted for good (deleteOrganization, then the organization_purge job): who asked, when, and how many rows were deleted per table. Nothing of their data.';

create or replace function app_public.delete_organization(slug text) returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
begin
  if app_public.current_org_id() is null then
    perform app_private.fail('NO_ORGANIZATION', 'Choose the organization to delete first (switchOrganization).');
  end if;
  if not app_public.current_member_has_role('owner') then
    perform app_private.fail('NOT_PERMITTED', 'Only an owner may delete the organization.');
  end if;
  select o.* into v_org from app_public.organizations o where o.id = app_public.current_org_id() for update;
  if delete_organization.slug is distinct from v_org.slug then
    perform app_private.fail('INVALID_VALUE', 'Type the organization''s slug exactly to confirm its deletion.');
  end if;
  if v_org.deletion_due_at is not null then
    return v_org;
  end if;
  update app_public.organizations o
  set deletion_requested_at = now(), deletion_requested_by = app_public.current_user_id(), deletion_due_at = now() + app_private.organization_deletion_grace()
  where o.id = v_org.id
  returning * into v_org;
  perform graphile_worker.add_job(
    'organization_purge',
    json_build_object('organization_id', v_org.id),
    run_at => v_org.deletion_due_at,
    job_key => 'organization_purge:' || v_org.id,
    max_attempts => 10
  );
  return v_org;
end
$$;
revoke all on function app_public.delete_organization(text) from public;
grant execute on function app_public.delete_organization(text) to :DATABASE_VISITOR;
comment on function app_public.delete_organization(text) is E'Deletes the current organization and all its data for good after a grace period of 30 days (owners only; type its slug to confirm). Until then everything works and an owner may cancel (cancelOrganizationDeletion): export what you must keep. Members'' accounts stay theirs.';

create or replace function app_public.cancel_organization_deletion() returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
begin
  if app_public.current_org_id() is null then
    perform app_private.fail('NO_ORGANIZATION', 'Choose the organization first (switchOrganization).');
  end if;
  if not app_public.current_member_has_role('owner') then
    perform app_private.fail('NOT_PERMITTED', 'Only an owner may cancel the organization''s deletion.');
  end if;
  update app_public.organizations o
  set deletion_requested_at = null, deletion_requested_by = null, deletion_due_at = null
  where o.id = app_public.current_org_id()
  returning * into v_org;
  perform graphile_worker.remove_job('organization_purge:' || v_org.id);
  return v_org;
end
$$;
revoke all on function app_public.cancel_organization_deletion() from public;
grant execute on function app_public.cancel_organization_deletion() to :DATABASE_VISITOR;
comment on function app_public.cancel_organization_deletion() is 'Cancels a pending deletion of the current organization (owners only).';

-- The tables holding an organization's rows: every table of app_public and app_private with an
-- organization_id column, but the log (deleted last) and the door itself.
create or replace function app_private.organization_tables() returns setof regclass
language sql stable
set search_path = pg_catalog
as $$
  select c.oid::regclass
  from pg_class c
  where c.relnamespace in ('app_public'::regnamespace, 'app_private'::regnamespace) and c.relkind in ('r', 'p') and not c.relispartition
    and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
    and c.oid not in ('app_public.activity_events'::regclass, 'app_private.erasure_transactions'::regclass)
  order by c.relnamespace, c.relname
$$;

-- The purge (job organization_purge), as the worker inside the organization. Does nothing unless a
-- deletion is due (cancelled, or not yet: returns null). Returns the rows deleted per table.
create or replace function app_private.purge_organization() returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_table regclass;
  v_counts jsonb := '{}';
  v_n bigint;
  v_left text;
begin
  select o.* into v_org from app_public.organizations o where o.id = app_private.require_worker_in_organization() for update;
  if not found or v_org.deletion_due_at is null or v_org.deletion_due_at > now() then
    return null;
  end if;
  insert into app_private.erasure_transactions (transaction_id, organization_id, erasure_id, scope)
  values (pg_current_xact_id()::text::bigint, v_org.id, v_org.id, 'organization');
  perform set_config('app.erasure', v_org.id::text, true);

  -- Its jobs go first, taken by a worker or not (one a worker already holds finds nothing left
  -- when it runs, and its completion or failure then changes no row; an email is not sent:
  -- app_private.claim_email refuses an organization that is gone); deleting its files and exports
  -- queues the deletion of their objects afterwards.
  delete from graphile_worker._private_jobs j where j.payload ->> 'organization_id' = v_org.id::text;
  get diagnostics v_n = row_count;
  v_counts := jsonb_build_object('jobs', v_n);

  -- Children first: each pass deletes the rows nothing left still references (NO ACTION or
  -- RESTRICT keys), until a pass deletes nothing (app_private.delete_in_passes).
  v_counts := v_counts || app_private.delete_in_passes(array(select app_private.organization_tables()), 't.organization_id = $1', v_org.id, null, false, true);
  for v_table in select app_private.organization_tables() loop
    execute format('select %L from %s t where t.organization_id = $1 limit 1', v_table::text, v_table) into v_left using v_org.id;
    if v_left is not null then
      raise exception 'purge_organization: rows of % are left that nothing deletes (a reference cycle?)', v_left;
    end if;
  end loop;

  delete from app_public.activity_events e where e.organization_id = v_org.id;
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('app_public.activity_events', v_n);

  delete from app_public.organizations o where o.id = v_org.id;
  delete from app_private.erasure_transactions t where t.transaction_id = pg_current_xact_id()::text::bigint;
  perform set_config('app.erasure', '', true);
  insert into app_private.deleted_organizations (id, requested_by, requested_at, rows_deleted)
  values (v_org.id, v_org.deletion_requested_by, v_org.deletion_requested_at, v_counts);
  return v_counts;
end
$$;
revoke all on function app_private.purge_organization() from public;
grant execute on function app_private.purge_organization() to :DATABASE_WORKER;
comment on function app_private.purge_organization() is 'Deletes the current organization and every row it owns, its log included, once its deletion is due (job organization_purge). Returns the rows deleted per table; null when no deletion is due.';
