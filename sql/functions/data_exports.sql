-- Data exports (docs/EXPORT_AND_IMPORT.md): an organization's data as one zip, made by a job.
--
--   requestOrganizationExport   app_public.request_organization_export(valid_days): owners and
--                               admins (they already read every row of the organization; the
--                               export gives them nothing the API does not). Adds the row
--                               (requested) and queues the `data_export` job in the same
--                               transaction. While one export of the organization is requested or
--                               running, a new request answers that one (one at a time); one
--                               not finished within a day is failed first.
--   data_export (job)           start_data_export → running; the worker reads every table of
--                               app_private.export_tables() inside the organization (row-level
--                               security, as every task reads) and stores the zip under
--                               storage_key; finish_data_export → ready, expires_at, queues the
--                               email to the requester (a link to the app, no secret) and the
--                               expiry job; fail_data_export → failed with a reason.
--   data_export_expire (job)    at expires_at: expire_data_export → expired; the worker deletes
--                               the object.
--   DataExport.downloadUrl      a short-lived signed link while the export is ready and not past
--                               expires_at (app_private.data_exports_downloadable; src/http/exports.ts).
--
-- `kind`: 'organization' (everything), or one person's data, named in subject_id (the check below
-- ties the two together): 'contact' (exportContact) and 'user' (exportUser), both in
-- sql/functions/person_exports.sql. What each export holds is app_private.export_sources.
-- `final`: the organization's last export, queued by deleteOrganization; it outlives the purge
-- (app_private.kept_exports, sql/functions/organization_deletion.sql).
-- Idempotent; re-included by later migrations.

create table if not exists app_public.data_exports (
  organization_id uuid not null references app_public.organizations on delete cascade,
  id uuid not null default gen_random_uuid(),
  kind text not null default 'organization' constraint data_exports_kind check (kind in ('organization', 'contact', 'user')),
  subject_id uuid,
  status text not null default 'requested' constraint data_exports_status check (status in ('requested', 'running', 'ready', 'expired', 'failed')),
  failure_reason text constraint data_exports_failure_reason check ((status = 'failed') = (failure_reason is not null) and length(failure_reason) <= 500),
  requested_by uuid references app_public.users on delete set null,
  valid_days integer not null default 7 constraint data_exports_valid_days check (valid_days between 1 and 30),
  storage_key text not null,
  byte_size bigint constraint data_exports_byte_size check (byte_size >= 0),
  row_counts jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  started_at timestamptz,
  ready_at timestamptz,
  expires_at timestamptz,
  expired_at timestamptz,
  primary key (organization_id, id),
  -- The key is the server's, one per export (a plain column, not a generated one, so that copies of
  -- rows in the catalog tests name only real columns).
  constraint data_exports_storage_key check (storage_key = 'exports/' || organization_id::text || '/' || id::text || '.zip'),
  constraint data_exports_subject check ((kind = 'organization') = (subject_id is null)),
  constraint data_exports_ready check (status not in ('ready', 'expired') or (ready_at is not null and expires_at is not null and byte_size is not null and row_counts is not null))
);
create index if not exists data_exports_organization_id_requested_by_idx on app_public.data_exports (organization_id, requested_by);
create index if not exists data_exports_organization_id_status_idx on app_public.data_exports (organization_id, status);
alter table app_public.data_exports drop constraint if exists data_exports_kind;
alter table app_public.data_exports add constraint data_exports_kind check (kind in ('organization', 'contact', 'user'));
alter table app_public.data_exports add column if not exists final boolean not null default false;
alter table app_public.data_exports drop constraint if exists data_exports_final;
alter table app_public.data_exports add constraint data_exports_final check (not final or kind = 'organization');
create index if not exists data_exports_organization_id_subject_id_idx on app_public.data_exports (organization_id, subject_id);
comment on table app_public.data_exports is 'Exports of the organization''s data (one zip each), requested by owners and admins, made by a job, downloadable until they expire.';
comment on column app_public.data_exports.kind is 'What is exported: organization (everything), contact (what the organization holds about one client contact: exportContact) or user (your own data: exportUser). subjectId names the contact or user.';
comment on column app_public.data_exports.final is 'The organization''s final export, made when an owner asked to delete it (deleteOrganization): downloadable until 30 days after the deletion (myFinalExports once the organization is gone).';
comment on column app_public.data_exports.status is 'requested → running → ready → expired, or failed (see failureReason).';
comment on column app_public.data_exports.valid_days is 'How many days the export stays downloadable once ready (1 to 30).';
comment on column app_public.data_exports.storage_key is 'Where the zip is stored (made by the server).';
comment on column app_public.data_exports.row_counts is 'Rows per table in the export.';

call app_private.assert_tenant_shape('app_public.data_exports');
call app_private.force_rls('app_public.data_exports');
call app_private.attach_updated_at('app_public.data_exports');
call app_private.attach_audit('app_public.data_exports');
call app_private.attach_email_normalizer('app_public.data_exports');
call app_private.classify_columns('app_public.data_exports', '{"kind": "none", "status": "none", "failure_reason": "free_text", "storage_key": "none", "row_counts": "none", "final": "none"}');
alter table app_public.data_exports alter column requested_by set default app_public.current_user_id();

-- Only owners and admins see exports (an export holds every row of the organization); nobody
-- writes them directly: request_organization_export and the job's functions do.
drop policy if exists select_by_admins on app_public.data_exports;
create policy select_by_admins on app_public.data_exports for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and (select app_public.current_member_has_role('admin')));
comment on policy select_by_admins on app_public.data_exports is 'Owners and admins read the current organization''s exports.';
-- Everyone reads the exports of their own data (exportUser) in the current organization.
drop policy if exists select_own_user_exports on app_public.data_exports;
create policy select_own_user_exports on app_public.data_exports for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and kind = 'user' and subject_id = (select app_public.current_user_id()));
comment on policy select_own_user_exports on app_public.data_exports is 'Every member reads the exports of their own data (exportUser) in the current organization.';
revoke all on app_public.data_exports from public, :DATABASE_VISITOR;
grant select on app_public.data_exports to :DATABASE_VISITOR;
insert into app_private.activity_read_rules (table_name, permission, min_role) values ('data_exports', null, 'admin')
on conflict (table_name) do update set permission = excluded.permission, min_role = excluded.min_role;

------------------------------------------------------------------------------------------------
-- What an export holds (read by the worker when it exports and by `import-organization`)

-- Tables never exported, with the reason: the exports themselves (their objects live in this
-- installation's store only).
create or replace function app_private.export_excluded_tables() returns text[]
language sql immutable
set search_path = pg_catalog
as $$
  select array['data_exports']
$$;

-- The tables of an organization export: `organizations` (its row), every app_public table with
-- organization_id (so a new tenant table is exported without anyone remembering), and `users`
-- (the people its rows point at: app_private.export_users). For each, the columns exported: all
-- but secret ones (the audit trigger's secret_columns, and any whose name says secret; app_private
-- is never read), with `generated` ones (computed again by PostgreSQL on import).
-- soft_delete: deleted rows are read through app_public.deleted_<table>() (those still restorable).
create or replace function app_private.export_tables()
returns table (table_name text, columns text[], generated_columns text[], soft_delete boolean)
language sql stable
set search_path = pg_catalog
as $$
  with tables as (
    select c.oid, c.relname::text as table_name
    from pg_class c
    where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p')
      and (c.relname in ('organizations', 'users')
        or exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped))
      and c.relname <> all (app_private.export_excluded_tables())
  ),
  secrets as (
    -- The audit trigger's second argument: its secret columns (layout in sql/functions/triggers.sql).
    select t.tgrelid as oid, s.col
    from pg_trigger t
    cross join lateral unnest((app_private.trigger_arguments(t.tgargs, t.tgnargs))[2]::text[]) as s(col)
    where t.tgname like 'tg\_%\_\_audit\_insert' and t.tgfoid = 'app_private.tg__audit'::regproc and not t.tgisinternal
  )
  select t.table_name,
    array_agg(a.attname::text order by a.attnum),
    coalesce(array_agg(a.attname::text order by a.attnum) filter (where a.attgenerated <> ''), '{}'),
    exists (select from pg_proc p where p.pronamespace = 'app_public'::regnamespace and p.proname = 'deleted_' || t.table_name and p.pronargs = 0)
  from tables t
  join pg_attribute a on a.attrelid = t.oid and a.attnum > 0 and not a.attisdropped
  where not exists (select from secrets s where s.oid = t.oid and s.col = a.attname)
    and a.attname !~ '(password|secret|token|hash)'
  group by t.table_name
  order by t.table_name
$$;
comment on function app_private.export_tables() is 'The tables and columns of an organization export (docs/EXPORT_AND_IMPORT.md): never app_private, never secret columns.';

-- The people the organization's rows point at (every foreign key from an exported table to
-- app_public.users): members, client-portal users, inviters. Row-level security shows the worker
-- only current members; the others are needed for the rows that name them.
create or replace function app_private.export_users() returns setof app_public.users
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_ids uuid[] := '{}';
  v_more uuid[];
  r record;
begin
  for r in
    select c.conrelid::regclass as tbl, a.attname
    from pg_constraint c
    join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
    where c.contype = 'f' and c.confrelid = 'app_public.users'::regclass and cardinality(c.conkey) = 1
      and c.connamespace = 'app_public'::regnamespace
      and (select relname from pg_class where oid = c.conrelid) in (select e.table_name from app_private.export_tables() e)
      and exists (select from pg_attribute o where o.attrelid = c.conrelid and o.attname = 'organization_id' and not o.attisdropped)
  loop
    execute format('select coalesce(array_agg(distinct %I), ''{}'') from %s where organization_id = $1 and %I is not null', r.attname, r.tbl, r.attname)
      into v_more using v_org;
    v_ids := v_ids || v_more;
  end loop;
  return query select u.* from app_public.users u where u.id = any (v_ids) order by u.id;
end
$$;

-- The rows of `table_name` that an organization export holds, as SQL selecting `columns` (run by
-- the worker inside the organization: row-level security applies as well). Soft-deleted rows the
-- organization can still restore are its data too (and rows point at them).
create or replace function app_private.export_table_source(table_name text, columns text[], soft_delete boolean) returns text
language sql immutable
set search_path = pg_catalog
as $$
  select case
    when table_name = 'users' then format('select %s from app_private.export_users()', x.cols)
    when table_name = 'organizations' then format('select %s from app_public.organizations where id = (select app_public.current_org_id())', x.cols)
    when soft_delete then format('select %1$s from app_public.%2$I where organization_id = (select app_public.current_org_id()) union all select %1$s from app_public.%3$I()', x.cols, table_name, 'deleted_' || table_name)
    else format('select %s from app_public.%I where organization_id = (select app_public.current_org_id())', x.cols, table_name)
  end
  from (select string_agg(format('%I', c.name), ', ' order by c.n) as cols from unnest(columns) with ordinality as c(name, n)) x
$$;

-- What an export holds, one row per file pair of the zip: the table's name, its columns, and the
-- SQL that selects its rows (every row has an id; the writer, src/export/writer.ts, reads them in
-- id order through a cursor, as the worker, inside the export's organization). One question, one
-- answer, for every kind: an organization export holds every table of export_tables(); exports of
-- one person (contact, user) are made by sql/functions/person_exports.sql. Only for an export
-- that is running in the current organization (on the worker's connection). The SQL names rows by
-- their ids only, never by a person's values.
create or replace function app_private.export_sources(export_id uuid) returns table (table_name text, columns text[], source text)
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_export app_public.data_exports;
begin
  select e.* into v_export from app_public.data_exports e
  where e.organization_id = v_org and e.id = export_sources.export_id and e.status = 'running';
  if not found then
    perform app_private.fail('NOT_FOUND', 'No running export with this id in this organization.');
  end if;
  case v_export.kind
    when 'organization' then
      return query select t.table_name, t.columns, app_private.export_table_source(t.table_name, t.columns, t.soft_delete) from app_private.export_tables() t;
    when 'contact' then
      return query select * from app_private.contact_export_sources(v_export.subject_id);
    when 'user' then
      return query select * from app_private.user_export_sources(v_export.id, v_export.subject_id);
  end case;
end
$$;
comment on function app_private.export_sources(uuid) is 'What an export holds (docs/EXPORT_AND_IMPORT.md): per table, its columns and the SQL selecting its rows.';

-- The schema an export was made with: the last committed migration.
create or replace function app_private.schema_migration(out filename text, out hash text)
language sql stable security definer
set search_path = pg_catalog
as $$
  select m.filename, m.hash from graphile_migrate.migrations m order by m.date desc, m.filename desc limit 1
$$;

------------------------------------------------------------------------------------------------
-- Requesting an export

-- Every request of an export, of any kind (the caller has checked who may ask): the row
-- (requested) and the `data_export` job, in the caller's transaction. One export of a kind and
-- subject at a time: a request while one is on its way answers that one. One that did not finish
-- within a day (its job failed without saying so: the database was away on its last attempt) is
-- failed now, so it cannot block every later request. `final`: deleteOrganization's export (an
-- organization export on its way becomes the final one).
create or replace function app_private.request_data_export(kind text, subject_id uuid, valid_days integer, final boolean default false) returns app_public.data_exports
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_export app_public.data_exports;
begin
  if request_data_export.valid_days is null or request_data_export.valid_days not between 1 and 30 then
    perform app_private.fail('INVALID_VALUE', 'validDays must be between 1 and 30.');
  end if;
  perform pg_advisory_xact_lock(hashtextextended('data_exports:' || v_org::text, 0));
  update app_public.data_exports e set status = 'failed', failure_reason = 'It did not finish within a day.'
  where e.organization_id = v_org and e.status in ('requested', 'running') and e.created_at < now() - interval '1 day';
  select * into v_export from app_public.data_exports e
  where e.organization_id = v_org and e.kind = request_data_export.kind and e.subject_id is not distinct from request_data_export.subject_id
    and e.status in ('requested', 'running');
  if found then
    if request_data_export.final and not v_export.final then
      update app_public.data_exports e set final = true, valid_days = request_data_export.valid_days
      where e.organization_id = v_org and e.id = v_export.id
      returning * into v_export;
    end if;
    return v_export;
  end if;
  v_export.id := gen_random_uuid();
  insert into app_public.data_exports (organization_id, id, kind, subject_id, final, valid_days, requested_by, storage_key)
  values (v_org, v_export.id, request_data_export.kind, request_data_export.subject_id, request_data_export.final, request_data_export.valid_days,
    app_public.current_user_id(), format('exports/%s/%s.zip', v_org, v_export.id))
  returning * into v_export;
  perform graphile_worker.add_job(
    'data_export',
    json_build_object('organization_id', v_export.organization_id, 'export_id', v_export.id),
    job_key => format('data_export:%s', v_export.id),
    max_attempts => 5
  );
  return v_export;
end
$$;

create or replace function app_public.request_organization_export(valid_days integer default 7) returns app_public.data_exports
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  perform app_private.require_member_role('admin', 'export the organization''s data');
  return app_private.request_data_export('organization', null, request_organization_export.valid_days);
end
$$;
comment on function app_public.request_organization_export(integer) is
  E'Export all of the organization''s data (owners and admins): a job writes one zip (JSON and CSV per table, and a manifest) and emails you when it is ready. It stays downloadable (`downloadUrl`) for `validDays` days (1 to 30, 7 by default). While an export is on its way, this answers that one.';

------------------------------------------------------------------------------------------------
-- The jobs' functions (only the worker, inside the export's organization)

-- data_export: requested → running; the export to make, or nothing (not found, or no longer
-- requested or running: a retry after it finished).
create or replace function app_private.start_data_export(export_id uuid) returns setof app_public.data_exports
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
begin
  return query
    update app_public.data_exports e set status = 'running', started_at = now()
    where e.organization_id = v_org and e.id = start_data_export.export_id and e.status in ('requested', 'running')
    returning e.*;
end
$$;

-- data_export: the zip is stored; ready until now() + valid_days. Emails the requester a link to
-- the export in the app (the app asks for a fresh downloadUrl; no link or secret in the job) and
-- queues the expiry.
create or replace function app_private.finish_data_export(export_id uuid, byte_size bigint, row_counts jsonb) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_export app_public.data_exports;
  v_user app_public.users;
  v_name text;
begin
  -- The final export of an organization being deleted stays until some time after the purge
  -- (app_private.final_export_keep(), sql/functions/organization_deletion.sql), whatever valid_days.
  update app_public.data_exports e
  set status = 'ready', ready_at = now(),
    expires_at = greatest(now() + make_interval(days => e.valid_days),
      case when e.final then (select o.deletion_due_at from app_public.organizations o where o.id = v_org) + app_private.final_export_keep() end),
    byte_size = finish_data_export.byte_size, row_counts = finish_data_export.row_counts
  where e.organization_id = v_org and e.id = finish_data_export.export_id and e.status = 'running'
  returning e.* into v_export;
  if not found then
    return false;
  end if;
  perform graphile_worker.add_job(
    'data_export_expire',
    json_build_object('organization_id', v_org, 'export_id', v_export.id),
    run_at => v_export.expires_at,
    job_key => format('data_export_expire:%s', v_export.id),
    max_attempts => 25
  );
  select u.* into v_user from app_public.users u where u.id = v_export.requested_by;
  if found then
    select o.name into v_name from app_public.organizations o where o.id = v_org;
    perform app_private.enqueue_email(
      'data_export_ready',
      v_user.email,
      jsonb_build_object(
        'name', v_user.name,
        'organization_name', v_name,
        'export_id', v_export.id,
        'expires_at', to_char(v_export.expires_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
        -- What it holds and who may download it (never a contact's name: jobs carry ids).
        'contents', case v_export.kind
          when 'contact' then 'everything it holds about one of its client contacts'
          when 'user' then 'your account, and what it holds about you as a member'
          else case when v_export.final then 'all of its data, made because its deletion was requested' else 'all of its data' end
        end,
        'download_rule', case
          when v_export.kind = 'user' then format('Sign in and choose %s to download it.', v_name)
          when v_export.final then format('Sign in as an owner or admin of %s to download it; once the organization is deleted, you find it among your final exports.', v_name)
          else format('Sign in as an owner or admin of %s to download it.', v_name)
        end
      ),
      format('data_export_ready:%s', v_export.id),
      v_org
    );
  end if;
  return true;
end
$$;

-- data_export, when it cannot succeed (or used up its attempts): failed, with the reason.
create or replace function app_private.fail_data_export(export_id uuid, reason text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
begin
  update app_public.data_exports e set status = 'failed', failure_reason = left(coalesce(nullif(fail_data_export.reason, ''), 'unknown'), 500)
  where e.organization_id = v_org and e.id = fail_data_export.export_id and e.status in ('requested', 'running');
end
$$;

-- data_export_expire: ready and past expires_at → expired. Returns the key of the object to
-- delete (again, for an export already expired: a retry after the store did not answer), or null.
create or replace function app_private.expire_data_export(export_id uuid) returns text
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_key text;
begin
  update app_public.data_exports e set status = 'expired', expired_at = now()
  where e.organization_id = v_org and e.id = expire_data_export.export_id and e.status = 'ready' and e.expires_at <= now();
  select e.storage_key into v_key from app_public.data_exports e
  where e.organization_id = v_org and e.id = expire_data_export.export_id and e.status = 'expired';
  return v_key;
end
$$;

-- A ready export may be downloaded until it expires (by those who read it: owners and admins).
-- (Plain SQL, every name qualified, so that PostgreSQL inlines it into the query.)
create or replace function app_private.data_exports_downloadable(e app_public.data_exports) returns boolean
language sql stable
as $$
  select e.status = 'ready' and e.expires_at > pg_catalog.now()
$$;
comment on function app_private.data_exports_downloadable(app_public.data_exports) is 'True while the export is ready and not past expiresAt: DataExport.downloadUrl is given then.';

revoke all on function
  app_private.export_excluded_tables(),
  app_private.export_tables(),
  app_private.export_users(),
  app_private.export_table_source(text, text[], boolean),
  app_private.export_sources(uuid),
  app_private.schema_migration(),
  app_private.request_data_export(text, uuid, integer, boolean),
  app_public.request_organization_export(integer),
  app_private.start_data_export(uuid),
  app_private.finish_data_export(uuid, bigint, jsonb),
  app_private.fail_data_export(uuid, text),
  app_private.expire_data_export(uuid),
  app_private.data_exports_downloadable(app_public.data_exports)
from public;
grant execute on function app_public.request_organization_export(integer), app_private.data_exports_downloadable(app_public.data_exports) to :DATABASE_VISITOR;
grant execute on function
  app_private.export_excluded_tables(),
  app_private.export_tables(),
  app_private.export_users(),
  app_private.export_sources(uuid),
  app_private.schema_migration(),
  app_private.start_data_export(uuid),
  app_private.finish_data_export(uuid, bigint, jsonb),
  app_private.fail_data_export(uuid, text),
  app_private.expire_data_export(uuid)
to :DATABASE_WORKER;
-- export_tables (run by the worker) reads the audit triggers' secret columns with it.
grant execute on function app_private.trigger_arguments(bytea, integer) to :DATABASE_WORKER;

------------------------------------------------------------------------------------------------
-- Import (`import-organization`, src/export/import.ts): what the imported rows imply, set by the
-- owner at the end of the import's transaction. Nothing else may run it.
--   * the invoice and credit note counters continue after the highest imported numbers;
--   * webhook endpoints are disabled: their signing secrets are not in the export (rotate the
--     secret, then enable the endpoint).
create or replace function app_private.finish_organization_import(organization_id uuid) returns void
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  insert into app_private.invoice_counters as c (organization_id, last_number)
  select i.organization_id, max(i.number) from app_public.invoices i
  where i.organization_id = finish_organization_import.organization_id and i.number is not null
  group by i.organization_id
  on conflict on constraint invoice_counters_pkey do update set last_number = greatest(c.last_number, excluded.last_number);
  insert into app_private.credit_note_counters as c (organization_id, last_number)
  select n.organization_id, max(n.number) from app_public.credit_notes n
  where n.organization_id = finish_organization_import.organization_id and n.number is not null
  group by n.organization_id
  on conflict on constraint credit_note_counters_pkey do update set last_number = greatest(c.last_number, excluded.last_number);
  update app_public.webhook_endpoints e
  set enabled = false, disabled_at = coalesce(e.disabled_at, now()),
    disabled_reason = 'Imported without its signing secret: rotate the secret, then enable the endpoint.'
  where e.organization_id = finish_organization_import.organization_id and e.enabled;
  -- Events written from now on come after the imported ones in the log's order (seq).
  perform setval('app_private.activity_event_seq', greatest(
    (select last_value from app_private.activity_event_seq),
    (select coalesce(max(e.seq), 1) from app_public.activity_events e where e.organization_id = finish_organization_import.organization_id)));
end
$$;
revoke all on function app_private.finish_organization_import(uuid) from public;

-- A deleted export row (the purge of a deleted organization: sql/functions/organization_deletion.sql)
-- queues the deletion of its zip, like a deleted file's object: data_export_delete_object, which
-- only ever deletes exports/<organization>/<export>.zip. The final export the purge keeps
-- (app_private.kept_exports, sql/functions/organization_deletion.sql) goes when it expires.
create or replace function app_private.tg_data_exports__delete_object() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  perform graphile_worker.add_job(
    'data_export_delete_object',
    json_build_object('organization_id', o.organization_id, 'export_id', o.id),
    run_at => greatest(now(), k.expires_at),
    job_key => format('data_export_delete_object:%s', o.id),
    max_attempts => 50
  )
  from old_rows o
  left join app_private.kept_exports k on k.organization_id = o.organization_id and k.export_id = o.id;
  return null;
end
$$;
drop trigger if exists tg_data_exports__delete_object on app_public.data_exports;
create trigger tg_data_exports__delete_object after delete on app_public.data_exports
  referencing old table as old_rows for each statement execute function app_private.tg_data_exports__delete_object();
