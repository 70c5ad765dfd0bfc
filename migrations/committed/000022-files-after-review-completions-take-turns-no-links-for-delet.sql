--! Previous: sha1:7945a5e376baf6f34c54252467bef8c1807c7568
--! Hash: sha1:af73427366cbd749278573bdb4d591294f10e422
--! Message: Files, after review: completions take turns, no links for deleted files, portal attachments, client and engagement agree, expiry queued by a trigger

--! Included functions/files.sql
-- Files: uploads and downloads through object storage with presigned URLs (docs/FILES.md).
--
--   requestFileUpload  app_public.request_file_upload: checks the organization's limits, adds the
--                      file_objects row in status `pending` (its storage key is made here, from the
--                      organization and the file's id: a generated column) and queues its clean-up
--                      for when the upload window closes; FileObject.uploadUrl then signs a PUT for
--                      exactly that key, size and content type (src/http/files.ts).
--   completeFileUpload the API asks the store for the object (HEAD), then
--                      app_private.complete_file_upload marks the row `available` and queues the
--                      `file_uploaded` job (the scanning hook); an object of another size or type is
--                      deleted and refused.
--   downloadUrl        signed only where app_private.file_objects_downloadable says so.
--   clean-up           `file_upload_expire` deletes a row still pending when its window closed;
--                      every hard delete of a row (that, or the retention purge) queues
--                      `file_delete_object`, retried until the store confirms the object is gone.
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- Error codes

insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('FILE_TOO_LARGE', 'AT480', 413, 'The file is larger than the organization allows (organizations.file_max_bytes).'),
  ('FILE_TYPE_NOT_ALLOWED', 'AT481', 415, 'The organization does not accept files of this content type (organizations.file_content_types).'),
  ('FILE_UPLOAD_EXPIRED', 'AT483', 410, 'The upload window has closed; request a new upload.'),
  ('FILE_NOT_UPLOADED', 'AT484', 409, 'Nothing has been uploaded for this file yet: PUT the bytes to its uploadUrl first.'),
  ('FILE_UPLOAD_MISMATCH', 'AT485', 422, 'The uploaded object does not have the declared size or content type; it was deleted. Upload it again (the upload URL stays valid until it expires).'),
  ('STORAGE_UNAVAILABLE', 'AT486', 503, 'The file store did not answer; retry shortly (extensions.retryAfterSeconds).')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

------------------------------------------------------------------------------------------------
-- Limits per organization

alter table app_public.organizations
  add column if not exists file_max_bytes bigint not null default 104857600,
  add column if not exists file_content_types text[] not null default array[
    'application/pdf', 'text/plain', 'text/csv', 'text/markdown', 'image/*', 'video/*', 'audio/*',
    'application/zip', 'application/json', 'application/rtf',
    'application/msword', 'application/vnd.ms-excel', 'application/vnd.ms-powerpoint',
    'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
    'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
    'application/vnd.openxmlformats-officedocument.presentationml.presentation',
    'application/vnd.oasis.opendocument.text', 'application/vnd.oasis.opendocument.spreadsheet',
    'application/vnd.oasis.opendocument.presentation'
  ];
alter table app_public.organizations drop constraint if exists organizations_file_max_bytes_check;
-- 5 GiB: the largest object one PUT may create on S3.
alter table app_public.organizations add constraint organizations_file_max_bytes_check check (file_max_bytes between 1 and 5368709120);
alter table app_public.organizations drop constraint if exists organizations_file_content_types_check;
alter table app_public.organizations add constraint organizations_file_content_types_check
  check (cardinality(file_content_types) <= 200 and array_to_string(file_content_types, ' ') ~ '^([a-z0-9.+-]+/([a-z0-9.+-]+|\*)( |$))*$');
comment on column app_public.organizations.file_max_bytes is 'The largest file members and portal users may upload, in bytes (default 100 MiB, at most 5 GiB).';
comment on column app_public.organizations.file_content_types is 'The content types files may have: exact (application/pdf) or a whole family (image/*). Lowercase.';
grant update (file_max_bytes, file_content_types) on app_public.organizations to :DATABASE_VISITOR;

------------------------------------------------------------------------------------------------
-- The table

alter table app_public.file_objects
  -- Rows from before uploads existed are metadata only: available and clean as they were.
  add column if not exists status text not null default 'available' check (status in ('pending', 'available')),
  add column if not exists scan_status text not null default 'clean' check (scan_status in ('pending', 'clean', 'infected')),
  add column if not exists upload_expires_at timestamptz,
  add column if not exists uploaded_at timestamptz,
  add column if not exists scanned_at timestamptz,
  add column if not exists project_id uuid,
  add column if not exists task_id uuid,
  add column if not exists message_id uuid,
  add column if not exists proposal_id uuid,
  add column if not exists contract_id uuid,
  add column if not exists invoice_id uuid,
  add column if not exists bill_id uuid,
  add column if not exists client_id uuid;
alter table app_public.file_objects alter column status set default 'pending', alter column scan_status set default 'pending';

-- The storage key is the server's, never the client's: made from the organization and the id.
do $$
begin
  if exists (select from pg_attribute where attrelid = 'app_public.file_objects'::regclass and attname = 'storage_key' and attgenerated = '' and not attisdropped) then
    alter table app_public.file_objects drop column storage_key;
  end if;
end
$$;
alter table app_public.file_objects
  add column if not exists storage_key text generated always as ('org/' || organization_id::text || '/' || id::text) stored;
alter table app_public.file_objects alter column storage_key set not null;

alter table app_public.file_objects drop constraint if exists file_objects_one_attachment;
alter table app_public.file_objects add constraint file_objects_one_attachment
  check (num_nonnulls(project_id, task_id, message_id, proposal_id, contract_id, invoice_id, bill_id, client_id) <= 1);
alter table app_public.file_objects drop constraint if exists file_objects_pending_expires;
alter table app_public.file_objects add constraint file_objects_pending_expires check (status <> 'pending' or upload_expires_at is not null);

-- A file is part of what it is attached to: purging that record purges the file (and its object).
do $$
declare
  v_target text;
  v_table text;
begin
  foreach v_target in array array['engagement', 'project', 'task', 'message', 'proposal', 'contract', 'invoice', 'bill', 'client'] loop
    v_table := case v_target when 'client' then 'client_companies' else v_target || 's' end;
    execute format('alter table app_public.file_objects drop constraint if exists %I', format('file_objects_organization_id_%s_id_fkey', v_target));
    execute format('alter table app_public.file_objects add constraint %I foreign key (organization_id, %I) references app_public.%I on delete cascade',
      format('file_objects_organization_id_%s_id_fkey', v_target), v_target || '_id', v_table);
    execute format('create index if not exists %I on app_public.file_objects (organization_id, %I)', format('file_objects_organization_id_%s_id_idx', v_target), v_target || '_id');
  end loop;
end
$$;
create index if not exists file_objects_pending_idx on app_public.file_objects (upload_expires_at) where status = 'pending';

comment on table app_public.file_objects is E'@behavior -insert -delete\nA file: its metadata here, its bytes in object storage under storage_key. Created by requestFileUpload, made available by completeFileUpload (docs/FILES.md). Client-visible files of an engagement show in its client portal.';
comment on column app_public.file_objects.storage_key is 'Where the bytes are in object storage: org/<organization id>/<file id>, made by the server.';
comment on column app_public.file_objects.status is 'pending: waiting for its upload (until upload_expires_at); available: uploaded and checked.';
comment on column app_public.file_objects.scan_status is 'pending, clean or infected: what the scanner said (docs/FILES.md). Portal users download clean files only; nobody downloads an infected one.';
comment on column app_public.file_objects.upload_expires_at is 'Until when the upload may be made and completed; a file still pending then is deleted.';
comment on column app_public.file_objects.size_bytes is 'The exact size of the file, declared when the upload was requested and checked when it was completed.';
comment on column app_public.file_objects.engagement_id is 'The engagement the file belongs to: given, or that of the record it is attached to.';

------------------------------------------------------------------------------------------------
-- Access: members with files.write upload; portal users upload client-visible files to their
-- engagements (to the engagement itself, or to a message they can read there: nothing internal)
-- and see the available client-visible files of those engagements.

call app_private.make_tenant_table('app_public.file_objects', 'files', soft_delete_as => 'file_object',
  readonly_columns => '{status,scan_status,upload_expires_at,uploaded_at,scanned_at,size_bytes,content_type,engagement_id,project_id,task_id,message_id,proposal_id,contract_id,invoice_id,bill_id,client_id}',
  portal_read => $p$client_visible and (status = 'available' or created_by = (select app_public.current_user_id())) and engagement_id = any ((select app_public.current_portal_engagement_ids())::uuid[])$p$,
  portal_insert => $p$client_visible and created_by = (select app_public.current_user_id()) and engagement_id = any ((select app_public.current_portal_engagement_ids())::uuid[])
    and num_nonnulls(project_id, task_id, proposal_id, contract_id, invoice_id, bill_id, client_id) = 0
    and (message_id is null or exists (select from app_public.messages m where m.organization_id = file_objects.organization_id and m.id = file_objects.message_id))$p$);
-- Set once, by request_file_upload: what the file is and what it is attached to.
grant insert (size_bytes, content_type, engagement_id, project_id, task_id, message_id, proposal_id, contract_id, invoice_id, bill_id, client_id)
  on app_public.file_objects to :DATABASE_VISITOR;

-- A new file's organization (for portal users), its upload window (pending files only: every new
-- one), and the engagement of the record
-- it is attached to (checked against one given with it). Runs as the owner: the composite foreign
-- keys already confine the record to the organization.
create or replace function app_private.tg_file_objects__attachment() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_engagement uuid;
begin
  -- A client-portal user is in the organization without being a member (current_org_id() is
  -- null for them): their file goes to that organization, and row-level security decides.
  new.organization_id := coalesce(new.organization_id, app_public.current_portal_org_id());
  new.upload_expires_at := case when new.status = 'pending' then now() + app_private.file_upload_ttl() end;
  if num_nonnulls(new.project_id, new.task_id, new.message_id, new.proposal_id, new.contract_id, new.invoice_id, new.bill_id) = 0 then
    -- An engagement's or a client's file (or one attached to nothing yet); a client's file with
    -- an engagement: one of that client's.
    if new.client_id is not null and new.engagement_id is not null and not exists (
      select from app_public.engagements e
      where e.organization_id = new.organization_id and e.id = new.engagement_id and e.client_company_id = new.client_id
    ) then
      perform app_private.fail('INVALID_VALUE', 'engagementId, when given with clientId, must be an engagement of that client.');
    end if;
    return new;
  end if;
  if new.project_id is not null then
    select p.engagement_id into v_engagement from app_public.projects p where p.organization_id = new.organization_id and p.id = new.project_id;
  elsif new.task_id is not null then
    select p.engagement_id into v_engagement from app_public.tasks t join app_public.projects p on p.organization_id = t.organization_id and p.id = t.project_id
    where t.organization_id = new.organization_id and t.id = new.task_id;
  elsif new.message_id is not null then
    select t.engagement_id into v_engagement from app_public.messages m join app_public.threads t on t.organization_id = m.organization_id and t.id = m.thread_id
    where m.organization_id = new.organization_id and m.id = new.message_id;
  elsif new.proposal_id is not null then
    -- A change order names its engagement; an engagement's first proposal became its contract.
    select coalesce(p.engagement_id, (
      select e.id from app_public.contracts c join app_public.engagements e on e.organization_id = c.organization_id and e.contract_id = c.id
      where c.organization_id = p.organization_id and c.proposal_id = p.id order by e.created_at limit 1
    )) into v_engagement
    from app_public.proposals p where p.organization_id = new.organization_id and p.id = new.proposal_id;
  elsif new.contract_id is not null then
    select e.id into v_engagement from app_public.engagements e
    where e.organization_id = new.organization_id and e.contract_id = new.contract_id order by e.created_at limit 1;
  elsif new.invoice_id is not null then
    select i.engagement_id into v_engagement from app_public.invoices i where i.organization_id = new.organization_id and i.id = new.invoice_id;
  elsif new.bill_id is not null then
    select b.engagement_id into v_engagement from app_public.bills b where b.organization_id = new.organization_id and b.id = new.bill_id;
  end if;
  -- (A record that does not exist fails on its foreign key, like any reference.)
  if new.engagement_id is not null and v_engagement is distinct from new.engagement_id then
    perform app_private.fail('INVALID_VALUE', 'engagementId, when given with another record, must be that record''s engagement (or leave it out).');
  end if;
  new.engagement_id := v_engagement;
  return new;
end
$$;
drop trigger if exists tg_file_objects__attachment on app_public.file_objects;
create trigger tg_file_objects__attachment before insert on app_public.file_objects
  for each row execute function app_private.tg_file_objects__attachment();

------------------------------------------------------------------------------------------------
-- Requesting an upload

-- Does `content_type` match one of `allowed` (exact, or `family/*`)?
create or replace function app_private.content_type_allowed(content_type text, allowed text[]) returns boolean
language sql immutable
set search_path = pg_catalog
as $$
  select content_type = any (allowed) or split_part(content_type, '/', 1) || '/*' = any (allowed)
$$;

-- The limits of the organization the request acts in, as a member or a portal user (who cannot
-- read the organization's row).
create or replace function app_private.file_limits(out max_bytes bigint, out content_types text[])
language sql stable security definer
set search_path = pg_catalog
as $$
  select o.file_max_bytes, o.file_content_types from app_public.organizations o
  where o.id = coalesce(app_public.current_org_id(), app_public.current_portal_org_id())
$$;
revoke all on function app_private.file_limits() from public;
grant execute on function app_private.file_limits() to :DATABASE_VISITOR;

-- How long an upload URL is valid: FILE_UPLOAD_URL_TTL_SECONDS, which the API sets per request
-- (app.file_upload_ttl_seconds); 15 minutes when unset.
create or replace function app_private.file_upload_ttl() returns interval
language sql stable
set search_path = pg_catalog
as $$
  select make_interval(secs => coalesce(nullif(current_setting('app.file_upload_ttl_seconds', true), '')::integer, 900))
$$;

create or replace function app_public.request_file_upload(
  name text,
  content_type text,
  size_bytes bigint,
  engagement_id uuid default null,
  project_id uuid default null,
  task_id uuid default null,
  message_id uuid default null,
  proposal_id uuid default null,
  contract_id uuid default null,
  invoice_id uuid default null,
  bill_id uuid default null,
  client_id uuid default null,
  client_visible boolean default null
) returns app_public.file_objects
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_limits record := app_private.file_limits();
  v_type text := lower(btrim(request_file_upload.content_type));
  v_file app_public.file_objects;
begin
  if v_limits.max_bytes is null then
    perform app_private.fail('NO_ORGANIZATION', 'Choose an organization first (switchOrganization).');
  end if;
  if request_file_upload.size_bytes is null or request_file_upload.size_bytes < 0 then
    perform app_private.fail('INVALID_VALUE', 'sizeBytes must be the file''s size in bytes (0 or more).');
  end if;
  if v_type !~ '^[a-z0-9.+-]+/[a-z0-9.+-]+$' then
    perform app_private.fail('INVALID_VALUE', 'contentType must be a MIME type such as application/pdf (no parameters).');
  end if;
  if request_file_upload.size_bytes > v_limits.max_bytes then
    perform app_private.fail('FILE_TOO_LARGE', format('The file is %s bytes; this organization accepts files up to %s bytes.', request_file_upload.size_bytes, v_limits.max_bytes));
  end if;
  if not app_private.content_type_allowed(v_type, v_limits.content_types) then
    perform app_private.fail('FILE_TYPE_NOT_ALLOWED', format('This organization does not accept %s files.', v_type));
  end if;
  -- Row-level security decides whether this user may add it (files.write, or a portal user's
  -- own client-visible file on one of their engagements).
  insert into app_public.file_objects (name, content_type, size_bytes, engagement_id, project_id, task_id, message_id,
    proposal_id, contract_id, invoice_id, bill_id, client_id, client_visible)
  values (request_file_upload.name, v_type, request_file_upload.size_bytes,
    request_file_upload.engagement_id, request_file_upload.project_id, request_file_upload.task_id, request_file_upload.message_id,
    request_file_upload.proposal_id, request_file_upload.contract_id, request_file_upload.invoice_id, request_file_upload.bill_id,
    -- A portal user's uploads are for the client to see; a member's are internal unless they say.
    request_file_upload.client_id, coalesce(request_file_upload.client_visible, app_public.permitted_org_id('files.read') is null))
  returning * into v_file;
  return v_file;
end
$$;
comment on function app_public.request_file_upload(text, text, bigint, uuid, uuid, uuid, uuid, uuid, uuid, uuid, uuid, uuid, boolean) is
  E'Start an upload: adds the file in status pending. PUT its bytes to `fileObject.uploadUrl` (with exactly its headers, before it expires), then call completeFileUpload. Attach it to at most one record (engagement, project, task, message, proposal, contract, invoice, bill or client); the engagement follows from that record. Portal users upload client-visible files to their engagements.';

-- The clean-up of an upload never completed: a job at the end of its window (plus a minute),
-- queued with every new pending row, whoever inserts it.
drop function if exists app_private.queue_file_upload_expiry(app_public.file_objects);
create or replace function app_private.tg_file_objects__queue_expiry() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  perform graphile_worker.add_job(
    'file_upload_expire',
    json_build_object('organization_id', n.organization_id, 'file_id', n.id),
    run_at => n.upload_expires_at + interval '1 minute',
    job_key => format('file_upload_expire:%s', n.id),
    max_attempts => 25
  )
  from new_rows n
  where n.status = 'pending';
  return null;
end
$$;
drop trigger if exists tg_file_objects__queue_expiry on app_public.file_objects;
create trigger tg_file_objects__queue_expiry after insert on app_public.file_objects
  referencing new table as new_rows for each statement execute function app_private.tg_file_objects__queue_expiry();

------------------------------------------------------------------------------------------------
-- Completing an upload (src/http/files.ts asks the store in between)

-- Completions of one file take turns, and with the expiry job (a transaction-level advisory lock
-- on the file): a second completion while one copies the upload into place is told to retry, and
-- the expiry job waits for the completion's transaction. At most two completions of one
-- organization run at once (each may copy up to 5 GiB inside the store), so that one
-- organization cannot take every request slot of the API.
create or replace function app_private.file_lock_key(file_id uuid) returns bigint
language sql immutable
set search_path = pg_catalog
as $$
  select hashtextextended('app_public.file_objects:' || file_id::text, 0)
$$;

create or replace function app_private.begin_file_completion(file_id uuid) returns void
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org text := coalesce(app_public.current_org_id(), app_public.current_portal_org_id())::text;
begin
  if not pg_try_advisory_xact_lock(app_private.file_lock_key(begin_file_completion.file_id)) then
    perform app_private.fail('RETRY', 'This file is being completed by another request; try again in a moment.');
  end if;
  if not (pg_try_advisory_xact_lock(hashtext('file completions:' || v_org), 1) or pg_try_advisory_xact_lock(hashtext('file completions:' || v_org), 2)) then
    perform app_private.fail('RETRY', 'Two files of this organization are being completed right now; try again in a moment.');
  end if;
end
$$;
revoke all on function app_private.file_lock_key(uuid), app_private.begin_file_completion(uuid) from public;
grant execute on function app_private.file_lock_key(uuid), app_private.begin_file_completion(uuid) to :DATABASE_VISITOR;

-- The file the current user may complete, as row-level security shows it: its uploader, or a
-- member with files.write. Refuses an expired one (FILE_UPLOAD_EXPIRED); a completed one comes back
-- with status `available`, which the API answers as it is (a repeated call succeeds).
create or replace function app_private.file_upload_to_complete(file_id uuid)
returns table (organization_id uuid, id uuid, storage_key text, size_bytes bigint, content_type text, status text)
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_file app_public.file_objects;
begin
  -- Row-level security: a file you cannot read does not exist for you. (Portal users may not
  -- update rows, so no FOR UPDATE here: complete_file_upload locks it.)
  select * into v_file from app_public.file_objects f where f.id = file_upload_to_complete.file_id;
  if not found or not (v_file.created_by = app_public.current_user_id() or v_file.organization_id = app_public.permitted_org_id('files.write')) then
    perform app_private.fail('NOT_FOUND', 'No such file in this organization (or it is not visible to you).');
  end if;
  if v_file.status = 'pending' and v_file.upload_expires_at <= now() then
    perform app_private.fail('FILE_UPLOAD_EXPIRED', 'The upload window of this file has closed; request a new upload.');
  end if;
  return query select v_file.organization_id, v_file.id, v_file.storage_key, v_file.size_bytes, v_file.content_type, v_file.status;
end
$$;
revoke all on function app_private.file_upload_to_complete(uuid) from public;
grant execute on function app_private.file_upload_to_complete(uuid) to :DATABASE_VISITOR;

-- Marks the pending file available (after the API checked the object, having found it with
-- file_upload_to_complete in the same transaction) and queues the scan. The same rule again
-- here, where the status is written as the owner, on the locked row.
create or replace function app_private.complete_file_upload(file_id uuid) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_file app_public.file_objects;
begin
  select * into v_file from app_public.file_objects f
  where f.organization_id = coalesce(app_public.current_org_id(), app_public.current_portal_org_id()) and f.id = complete_file_upload.file_id
    and f.deleted_at is null
    and (f.created_by = app_public.current_user_id() or f.organization_id = app_public.permitted_org_id('files.write'))
  for update;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such file in this organization (or it is not visible to you).');
  elsif v_file.status <> 'pending' then
    return; -- completed meanwhile (a concurrent call)
  elsif v_file.upload_expires_at <= now() then
    perform app_private.fail('FILE_UPLOAD_EXPIRED', 'The upload window of this file has closed; request a new upload.');
  end if;
  update app_public.file_objects f set status = 'available', uploaded_at = now(), upload_expires_at = null
  where f.organization_id = v_file.organization_id and f.id = v_file.id;
  perform graphile_worker.add_job(
    'file_uploaded',
    json_build_object('organization_id', v_file.organization_id, 'file_id', v_file.id),
    job_key => format('file_uploaded:%s', v_file.id),
    max_attempts => 25
  );
end
$$;
revoke all on function app_private.complete_file_upload(uuid) from public;
grant execute on function app_private.complete_file_upload(uuid) to :DATABASE_VISITOR;

------------------------------------------------------------------------------------------------
-- URLs: who gets one (the API signs it, src/http/files.ts)

-- The uploader may PUT the bytes while the file is pending and its window open.
-- (These two are plain SQL without a pinned search_path or a subquery, every name qualified, so
-- that PostgreSQL inlines them into the query that reads the files: a SET clause or a subquery
-- would make each row a separate call of the function.)
create or replace function app_private.file_objects_uploadable(f app_public.file_objects) returns boolean
language sql stable
as $$
  select f.deleted_at is null and f.status = 'pending' and f.upload_expires_at > pg_catalog.now() and f.created_by = app_public.current_user_id()
$$;
comment on function app_private.file_objects_uploadable(app_public.file_objects) is 'True while the current user may upload this file''s bytes (they requested it, it is pending, its window is open): FileObject.uploadUrl is given then.';

-- Whoever reads an available file may download it, unless the scanner found it infected; portal
-- users only once it was scanned clean.
create or replace function app_private.file_objects_downloadable(f app_public.file_objects) returns boolean
language sql stable
as $$
  select f.deleted_at is null and f.status = 'available' and f.scan_status <> 'infected'
    and (f.scan_status = 'clean' or f.organization_id = app_public.permitted_org_id('files.read'))
$$;
comment on function app_private.file_objects_downloadable(app_public.file_objects) is 'True if the current user may download this file now: it is available and not infected; for portal users, scanned clean. FileObject.downloadUrl is given then.';

------------------------------------------------------------------------------------------------
-- Jobs: expiry, scanning, deleting objects

-- file_upload_expire: deletes the file if it is still pending after its window (its object, if
-- a partial upload left one, goes with it: see the delete trigger below). True if it did.
create or replace function app_private.expire_file_upload(file_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
begin
  -- After a completion in progress (it may make the file available).
  perform pg_advisory_xact_lock(app_private.file_lock_key(expire_file_upload.file_id));
  delete from app_public.file_objects f
  where f.organization_id = v_org and f.id = expire_file_upload.file_id and f.status = 'pending' and f.upload_expires_at <= now();
  return found;
end
$$;
revoke all on function app_private.expire_file_upload(uuid) from public;

-- file_uploaded: what to scan (the worker signs a download URL for the scanner).
create or replace function app_private.file_to_scan(file_id uuid)
returns table (id uuid, storage_key text, name text, content_type text, size_bytes bigint, scan_status text)
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
begin
  return query select f.id, f.storage_key, f.name, f.content_type, f.size_bytes, f.scan_status
  from app_public.file_objects f where f.organization_id = v_org and f.id = file_to_scan.file_id and f.status = 'available';
end
$$;
revoke all on function app_private.file_to_scan(uuid) from public;

-- file_uploaded: the scanner's verdict.
create or replace function app_private.record_file_scan(file_id uuid, verdict text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
begin
  if verdict not in ('clean', 'infected') then
    perform app_private.fail('INVALID_VALUE', 'A scan verdict is clean or infected.');
  end if;
  update app_public.file_objects f set scan_status = verdict, scanned_at = now()
  where f.organization_id = v_org and f.id = record_file_scan.file_id and f.scan_status is distinct from verdict;
end
$$;
revoke all on function app_private.record_file_scan(uuid, text) from public;

-- Every deleted row (an expired upload, the retention purge, a purged record it was attached to)
-- queues the deletion of its object; the job is retried until the store confirms.
create or replace function app_private.tg_file_objects__delete_object() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  perform graphile_worker.add_job(
    'file_delete_object',
    json_build_object('organization_id', o.organization_id, 'file_id', o.id, 'storage_key', o.storage_key),
    job_key => format('file_delete_object:%s', o.id),
    max_attempts => 50
  )
  from old_rows o;
  return null;
end
$$;
drop trigger if exists tg_file_objects__delete_object on app_public.file_objects;
create trigger tg_file_objects__delete_object after delete on app_public.file_objects
  referencing old table as old_rows for each statement execute function app_private.tg_file_objects__delete_object();

------------------------------------------------------------------------------------------------
-- What the visitor may execute

-- request_file_upload and file_upload_to_complete run as the visitor, so that row-level security
-- decides what they may add and see; they raise catalogued errors like every function (raising
-- an error is all app_private.fail can do).
grant execute on function app_private.fail(text, text) to :DATABASE_VISITOR;
grant execute on function app_private.content_type_allowed(text, text[]) to :DATABASE_VISITOR;
grant execute on function app_private.file_upload_ttl() to :DATABASE_VISITOR;
grant execute on function app_public.request_file_upload(text, text, bigint, uuid, uuid, uuid, uuid, uuid, uuid, uuid, uuid, uuid, boolean) to :DATABASE_VISITOR;
grant execute on function app_private.file_objects_uploadable(app_public.file_objects) to :DATABASE_VISITOR;
grant execute on function app_private.file_objects_downloadable(app_public.file_objects) to :DATABASE_VISITOR;

-- file_delete_object: never delete the bytes of a file that exists (whatever queued the job).
create or replace function app_private.file_object_exists(file_id uuid) returns boolean
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
begin
  return exists (select from app_public.file_objects f where f.organization_id = v_org and f.id = file_object_exists.file_id);
end
$$;
revoke all on function app_private.file_object_exists(uuid) from public;

grant execute on function app_private.expire_file_upload(uuid), app_private.file_to_scan(uuid), app_private.record_file_scan(uuid, text),
  app_private.file_object_exists(uuid) to :DATABASE_WORKER;
--! EndIncluded functions/files.sql
