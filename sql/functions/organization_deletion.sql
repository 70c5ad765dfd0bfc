-- Deleting an organization (GDPR art. 17 for a whole firm), owners only, with a grace period:
--
--   deleteOrganization(slug)      an owner types the organization's slug to confirm; the
--                                 organization is due for deletion in 30 days
--                                 (app_private.organization_deletion_grace()) and the job
--                                 `organization_purge` is queued to run then. Everything works as
--                                 before meanwhile. A final export of the whole organization is
--                                 queued at once (data_exports.final, requested by the owner, who
--                                 gets the email): downloadable through the grace period and
--                                 30 days after the purge (app_private.final_export_keep()): the
--                                 purge keeps it (app_private.kept_exports) and its owner finds
--                                 it with myFinalExports.
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

-- How long the final export of a deleted organization stays after the purge.
create or replace function app_private.final_export_keep() returns interval
language sql immutable
set search_path = pg_catalog
as $$ select interval '30 days' $$;
comment on function app_private.final_export_keep() is 'How long the final export of a deleted organization stays downloadable after its purge.';

-- The final exports a purge kept: the zip stays in the store until expires_at (then the job
-- data_export_delete_object deletes it and this row), downloadable by the owner who asked for the
-- deletion (app_public.my_final_exports). Ids, a key and dates: nothing of the organization's data.
create table if not exists app_private.kept_exports (
  organization_id uuid not null,
  export_id uuid not null,
  user_id uuid not null references app_public.users on delete cascade,
  storage_key text not null constraint kept_exports_storage_key check (storage_key = 'exports/' || organization_id::text || '/' || export_id::text || '.zip'),
  byte_size bigint not null,
  ready_at timestamptz not null,
  expires_at timestamptz not null,
  primary key (organization_id, export_id)
);
create index if not exists kept_exports_user_id_idx on app_private.kept_exports (user_id);
create index if not exists kept_exports_organization_id_user_id_idx on app_private.kept_exports (organization_id, user_id);
alter table app_private.kept_exports enable row level security;
alter table app_private.kept_exports force row level security;
comment on table app_private.kept_exports is 'Final exports of deleted organizations, kept after the purge until they expire (myFinalExports).';

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
  -- The firm's data, once more, for the owner: the final export (expires after the purge).
  perform app_private.request_data_export('organization', null, 30, final => true);
  return v_org;
end
$$;
revoke all on function app_public.delete_organization(text) from public;
grant execute on function app_public.delete_organization(text) to :DATABASE_VISITOR;
comment on function app_public.delete_organization(text) is E'Deletes the current organization and all its data for good after a grace period of 30 days (owners only; type its slug to confirm). Until then everything works and an owner may cancel (cancelOrganizationDeletion). A final export of all its data is made at once and emailed to you; it stays downloadable until 30 days after the deletion (then through myFinalExports). Members'' accounts stay theirs.';

create or replace function app_public.cancel_organization_deletion() returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_export app_public.data_exports;
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
  -- The final export becomes an ordinary one: it expires valid_days after it was made.
  for v_export in
    update app_public.data_exports e
    set final = false, expires_at = case when e.status = 'ready' then least(e.expires_at, e.ready_at + make_interval(days => e.valid_days)) else e.expires_at end
    where e.organization_id = v_org.id and e.final
    returning e.*
  loop
    if v_export.status = 'ready' then
      perform graphile_worker.add_job('data_export_expire', json_build_object('organization_id', v_export.organization_id, 'export_id', v_export.id),
        run_at => v_export.expires_at, job_key => format('data_export_expire:%s', v_export.id), max_attempts => 25);
    end if;
  end loop;
  return v_org;
end
$$;
revoke all on function app_public.cancel_organization_deletion() from public;
grant execute on function app_public.cancel_organization_deletion() to :DATABASE_VISITOR;
comment on function app_public.cancel_organization_deletion() is 'Cancels a pending deletion of the current organization (owners only).';

-- The tables holding an organization's rows: every table of app_public and app_private with an
-- organization_id column, but the log (deleted last), the door itself, and the final exports the
-- purge keeps.
create or replace function app_private.organization_tables() returns setof regclass
language sql stable
set search_path = pg_catalog
as $$
  select c.oid::regclass
  from pg_class c
  where c.relnamespace in ('app_public'::regnamespace, 'app_private'::regnamespace) and c.relkind in ('r', 'p') and not c.relispartition
    and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
    and c.oid not in ('app_public.activity_events'::regclass, 'app_private.erasure_transactions'::regclass, 'app_private.kept_exports'::regclass)
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

  -- Its final export stays, for its owner, until it expires: deleting its row below then queues
  -- the deletion of its zip for that time (app_private.tg_data_exports__delete_object).
  insert into app_private.kept_exports (organization_id, export_id, user_id, storage_key, byte_size, ready_at, expires_at)
  select e.organization_id, e.id, e.requested_by, e.storage_key, e.byte_size, e.ready_at, e.expires_at
  from app_public.data_exports e
  where e.organization_id = v_org.id and e.final and e.status = 'ready' and e.expires_at > now() and e.requested_by is not null
  on conflict on constraint kept_exports_pkey do nothing;

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

------------------------------------------------------------------------------------------------
-- The final exports kept after the purge

-- What myFinalExports shows (DataExport.downloadUrl's twin: src/http/exports.ts signs the link).
do $$
begin
  create type app_public.final_export as (
    export_id uuid,
    organization_id uuid,
    byte_size bigint,
    ready_at timestamptz,
    expires_at timestamptz,
    storage_key text
  );
exception when duplicate_object then null;
end
$$;
comment on type app_public.final_export is 'The final export of an organization you deleted, kept after its deletion until expiresAt.';

create or replace function app_public.my_final_exports() returns setof app_public.final_export
language sql stable security definer
set search_path = pg_catalog
as $$
  select k.export_id, k.organization_id, k.byte_size, k.ready_at, k.expires_at, k.storage_key
  from app_private.kept_exports k
  where k.user_id = app_public.current_user_id() and k.expires_at > now()
  order by k.ready_at desc
$$;
comment on function app_public.my_final_exports() is 'The final exports of organizations you deleted, downloadable (downloadUrl) until they expire, 30 days after the deletion.';

-- data_export_delete_object asks before it deletes an export's zip: false while the purge keeps it
-- (not yet expired: a job run early deletes nothing); otherwise the kept row, if any, goes and
-- the zip may. Only the worker.
drop function if exists app_private.forget_kept_export(uuid, uuid);
create or replace function app_private.release_kept_export(organization_id uuid, export_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker deletes exports.');
  end if;
  if exists (select from app_private.kept_exports k
             where k.organization_id = release_kept_export.organization_id and k.export_id = release_kept_export.export_id and k.expires_at > now()) then
    return false;
  end if;
  delete from app_private.kept_exports k where k.organization_id = release_kept_export.organization_id and k.export_id = release_kept_export.export_id;
  return true;
end
$$;

revoke all on function app_private.final_export_keep(), app_public.my_final_exports(), app_private.release_kept_export(uuid, uuid) from public;
grant execute on function app_public.my_final_exports() to :DATABASE_VISITOR;
grant execute on function app_private.release_kept_export(uuid, uuid) to :DATABASE_WORKER;
grant execute on function app_private.final_export_keep() to :DATABASE_WORKER;
