-- Erasure (GDPR art. 17): a person's data is removed or irreversibly redacted everywhere the
-- organization holds it, live rows *and* the activity log, without breaking the ledger.
--
--   eraseContact(contactId)  an owner erases a client contact: app_public.erase_contact records
--                            the request (app_public.erasures, audited: who, when, which scope and
--                            record; never what is erased) and queues the job
--                            `erase_personal_data`, which runs app_private.run_erasure in one
--                            transaction inside the organization.
--
-- What the erasure of a contact does (app_private.erase_contact_data):
--   - the contact row stays (portal access, proposals and invoices keep their references), with
--     first name "Erased", last name "contact", and no email, phone or job title; its portal
--     access ends;
--   - every value the contact's record ever held in a personal column (its history in the log
--     included: an old email address too) is a "needle": emails, phones and the full name are
--     replaced by "[erased]" wherever they appear in the organization's text (columns classified
--     person_name, email, phone, address, identifier, person_detail or free_text in
--     sql/functions/personal_data.sql: a task description quoting the email, a signer name), in
--     its activity log (old and new values of every event), webhook delivery payloads and errors,
--     email records, and the job queue (jobs that carry a needle are removed; an email a worker
--     already holds is recorded as gone out, so it is never sent); the
--     organization's ready exports expire at once (their zips are deleted);
--   - the log's events of the contact's own record lose every personal value;
--   - the files she uploaded through the client portal are deleted, their stored objects with them
--     (the file_delete_object job); files the firm's members uploaded stay (the firm's records:
--     a member's uploads are not erased with the member either, see eraseMember below, only their
--     names in the files' names);
--   - amounts, dates, statuses and references are never touched: invoices keep their totals and
--     lose the person.
-- Deleting a whole organization is sql/functions/organization_deletion.sql.
--
-- The activity log is append-only (app_private.tg__append_only, below) for every role,
-- the owner included, with one exception: inside the transaction of an erasure (a row in
-- app_private.erasure_transactions, written only by app_private.run_erasure), the old and new
-- values of that organization's events may be rewritten, and nothing else about them. The edit
-- locks of finished records (a signed contract, a sent invoice, an invoiced time entry) let the
-- same transaction redact their text.
-- Idempotent; re-included by later migrations.

create table if not exists app_public.erasures (
  organization_id uuid not null default app_public.current_org_id() references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  scope text not null check (scope in ('contact', 'user', 'organization')),
  subject_id uuid not null,
  requested_by uuid default app_public.current_user_id(),
  status text not null default 'pending' check (status in ('pending', 'done')),
  redacted jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  completed_at timestamptz,
  primary key (organization_id, id)
);
create index if not exists erasures_organization_id_subject_id_idx on app_public.erasures (organization_id, subject_id);
comment on table app_public.erasures is E'@behavior -insert -update -delete\nErasures of personal data (eraseContact, eraseMember, deleteAccount): who asked, when, which record, and how many values were redacted per table. Never what was erased. Admins and owners read them.';
comment on column app_public.erasures.scope is 'What is erased: contact (a client contact), user (a member''s account), organization.';
comment on column app_public.erasures.subject_id is 'The erased record: the contact''s id for scope contact.';
comment on column app_public.erasures.redacted is 'When done: how many rows had values redacted, per table ({"contacts": 1, "activity_events": 7, ...}).';

call app_private.assert_tenant_shape('app_public.erasures');
call app_private.force_rls('app_public.erasures');
call app_private.attach_updated_at('app_public.erasures');
call app_private.attach_audit('app_public.erasures');
call app_private.classify_columns('app_public.erasures', '{"scope": "none", "status": "none", "redacted": "none"}');
insert into app_private.activity_read_rules (table_name, permission, min_role) values ('erasures', null, 'admin')
on conflict (table_name) do update set permission = excluded.permission, min_role = excluded.min_role;

drop policy if exists select_owners on app_public.erasures;
drop policy if exists select_admins on app_public.erasures;
create policy select_admins on app_public.erasures for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and (select app_public.current_member_has_role('admin')));
comment on policy select_admins on app_public.erasures is 'Admins and owners read their organization''s erasures (who asked, when, which record; never what was erased), as they read its deleted records.';
grant select on app_public.erasures to :DATABASE_VISITOR;

-- The transactions erasing right now: the one door through the log's append-only rule.
create table if not exists app_private.erasure_transactions (
  transaction_id bigint primary key,
  organization_id uuid not null,
  erasure_id uuid not null,
  scope text not null default 'contact'
);
alter table app_private.erasure_transactions enable row level security;
alter table app_private.erasure_transactions force row level security;
comment on table app_private.erasure_transactions is 'The transaction of a running erasure (app_private.run_erasure) and its organization: only there may the activity log''s values be redacted. Emptied by the same transaction.';

-- Is the current transaction erasing in `organization_id` (any organization: null), with `scope`
-- (any: null)? Cheap when not: the setting app.erasure is read first, the table only when it is set.
create or replace function app_private.erasing(organization_id uuid default null, scope text default null) returns boolean
language sql stable
set search_path = pg_catalog
as $$
  select nullif(current_setting('app.erasure', true), '') is not null
    and exists (
      select from app_private.erasure_transactions t
      where t.transaction_id = pg_current_xact_id()::text::bigint
        and (erasing.organization_id is null or t.organization_id = erasing.organization_id)
        and (erasing.scope is null or t.scope = erasing.scope)
    )
$$;
revoke all on function app_private.erasing(uuid, text) from public;
grant execute on function app_private.erasing(uuid, text) to :DATABASE_VISITOR, :DATABASE_WORKER;

-- The log's append-only rule, with the erasure's door (see the top of this file).
create or replace function app_private.tg__append_only() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
  -- The doors open on the log only (on a month of the log, tg_relid is the partition:
  -- sql/functions/activity_partitions.sql).
  if tg_op in ('UPDATE', 'DELETE') and app_private.erasing(old.organization_id)
     and (tg_relid = 'app_public.activity_events'::regclass or exists (select from pg_inherits i where i.inhrelid = tg_relid and i.inhparent = 'app_public.activity_events'::regclass)) then
    -- An erasure rewrites the values of its organization's events, nothing else about them
    -- (retention only deletes).
    if tg_op = 'UPDATE' and not app_private.erasing(old.organization_id, 'retention')
       and (to_jsonb(new) - array['old_values', 'new_values']) = (to_jsonb(old) - array['old_values', 'new_values']) then
      return new;
    end if;
    -- The purge of a deleted organization (sql/functions/organization_deletion.sql) deletes its log.
    if tg_op = 'DELETE' and app_private.erasing(old.organization_id, 'organization') then
      return old;
    end if;
    -- Retention (sql/functions/activity_retention.sql) deletes the events that have expired by the
    -- organization's rules, and no other.
    if tg_op = 'DELETE' and app_private.erasing(old.organization_id, 'retention') and app_private.activity_event_expired(old.organization_id, old.occurred_at, old.table_name, old.parent_table) then
      return old;
    end if;
  end if;
  raise exception '% is append-only: rows cannot be changed or deleted', tg_table_name
    using errcode = '42501';
end
$$;
-- The owner may write the two value columns and delete; the trigger above decides when (only an
-- erasure rewrites; the purge of a deleted organization and retention delete).
grant update (old_values, new_values), delete on app_public.activity_events to current_user;

------------------------------------------------------------------------------------------------
-- Redaction

-- `needle` as a case-insensitive regular expression matching itself literally.
create or replace function app_private.literal_pattern(needle text) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select regexp_replace(needle, '([.\\+*?\[^\]$(){}=!<>|:\-#/&])', '\\\1', 'g')
$$;

-- `value` with every occurrence of each needle (any case) replaced by "[erased]".
create or replace function app_private.redact_text(value text, needles text[]) returns text
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
declare
  v_needle text;
begin
  if value is null then
    return null;
  end if;
  foreach v_needle in array needles loop
    value := regexp_replace(value, app_private.literal_pattern(v_needle), '[erased]', 'gi');
  end loop;
  return value;
end
$$;

-- Every string inside `j` (at any depth) redacted; `erase_keys`: top-level keys whose non-null
-- values become "[erased]" whatever they hold.
create or replace function app_private.redact_jsonb(j jsonb, needles text[], erase_keys text[] default '{}') returns jsonb
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
begin
  case jsonb_typeof(j)
    when 'string' then
      return to_jsonb(app_private.redact_text(j #>> '{}', needles));
    when 'object' then
      return (
        select coalesce(jsonb_object_agg(e.key,
          case when e.key = any (erase_keys) and jsonb_typeof(e.value) <> 'null' then '"[erased]"'::jsonb
            else app_private.redact_jsonb(e.value, needles) end), '{}')
        from jsonb_each(j) as e
      );
    when 'array' then
      return (select coalesce(jsonb_agg(app_private.redact_jsonb(e.value, needles) order by e.n), '[]') from jsonb_array_elements(j) with ordinality as e(value, n));
    else
      return j;
  end case;
end
$$;

-- The personal columns of `table_name` (anything classified but none, free text, copies, secrets).
create or replace function app_private.personal_columns(table_name text) returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(array_agg(d.column_name order by d.column_name), '{}')
  from app_private.data_columns d
  where d.schema_name = 'app_public' and d.table_name = personal_columns.table_name
    and d.category in ('person_name', 'email', 'phone', 'address', 'identifier', 'person_detail')
$$;

-- The columns of tenant tables that may hold a person's data as text (classified person_name,
-- email, phone, address, identifier, person_detail, free_text or copy in
-- sql/functions/personal_data.sql): where the erasure redacts a person's values and where an
-- export of one contact looks for them (sql/functions/person_exports.sql).
create or replace function app_private.person_text_columns() returns table (table_name text, column_name text, type regtype)
language sql stable
set search_path = pg_catalog
as $$
  select d.table_name, d.column_name, a.atttypid::regtype
  from app_private.data_columns d
  join pg_class c on c.relname = d.table_name and c.relnamespace = 'app_public'::regnamespace
  join pg_attribute a on a.attrelid = c.oid and a.attname = d.column_name and not a.attisdropped
  where d.schema_name = 'app_public' and d.category in ('person_name', 'email', 'phone', 'address', 'identifier', 'person_detail', 'free_text', 'copy')
    and exists (select from pg_attribute o where o.attrelid = c.oid and o.attname = 'organization_id' and not o.attisdropped)
$$;

-- SQL that is true for a row of `table_name` whose person text columns (those of them in
-- `among`, when given) match the regular expression in `pattern` (a parameter such as '$3'),
-- case-insensitively; 'false' for a table without any.
drop function if exists app_private.person_text_match(text, text);
create or replace function app_private.person_text_match(table_name text, pattern text, among text[] default null) returns text
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(string_agg(format('%I::text ~* %s', t.column_name, pattern), ' or ' order by t.column_name), 'false')
  from app_private.person_text_columns() t
  where t.table_name = person_text_match.table_name and (among is null or t.column_name = any (among))
$$;

-- Redacts `needles` in the current organization everywhere but the subject's own row (the
-- caller clears that one first): live text columns, the activity log, webhook deliveries, email
-- records, the job queue. `subject_table`/`subject_id`: the record whose events lose every
-- personal value. Returns rows changed per table.
create or replace function app_private.redact_organization(needles text[], subject_table text, subject_id uuid) returns jsonb
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_pattern text := (select string_agg(app_private.literal_pattern(n), '|') from unnest(needles) as n);
  v_counts jsonb := '{}';
  v_table record;
  v_export record;
  v_n bigint;
begin
  if cardinality(needles) = 0 then
    return v_counts;
  end if;
  -- Live text: every classified text column of a tenant table, one update per table (app_public.users
  -- is global: its rows are people's own accounts, erased by themselves).
  for v_table in
    select t.table_name,
      string_agg(format(case
        when t.type = 'jsonb'::regtype then '%1$I = app_private.redact_jsonb(%1$I, $2)'
        -- an email address column keeps a valid address, one per row: erased-<id>@erased.invalid
        when t.type = 'app_public.email_address'::regtype then '%1$I = case when %1$I ~* $3 then format(''erased-%%s@erased.invalid'', id) else %1$I end'
        else '%1$I = app_private.redact_text(%1$I, $2)'
      end, t.column_name), ', ' order by t.column_name) as sets,
      app_private.person_text_match(t.table_name, '$3') as matches
    from app_private.person_text_columns() t
    group by t.table_name
    order by t.table_name
  loop
    execute format('update app_public.%I set %s where organization_id = $1 and (%s)', v_table.table_name, v_table.sets, v_table.matches)
      using v_org, needles, v_pattern;
    get diagnostics v_n = row_count;
    if v_n > 0 then
      v_counts := v_counts || jsonb_build_object(v_table.table_name, v_n);
    end if;
  end loop;

  -- The activity log (after the live rows: their redaction wrote events too).
  update app_public.activity_events e
  set old_values = app_private.redact_jsonb(e.old_values, needles, case when e.table_name = subject_table and e.record_id = subject_id then app_private.personal_columns(subject_table) else '{}' end),
      new_values = app_private.redact_jsonb(e.new_values, needles, case when e.table_name = subject_table and e.record_id = subject_id then app_private.personal_columns(subject_table) else '{}' end)
  where e.organization_id = v_org
    and ((e.table_name = subject_table and e.record_id = subject_id) or e.old_values::text ~* v_pattern or e.new_values::text ~* v_pattern);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('activity_events', v_n);

  -- Emails: who they went to, and what the mail server said about it.
  update app_private.email_messages m
  set recipient = case when m.recipient ~* v_pattern then '[erased]' else m.recipient end,
      transport_detail = app_private.redact_text(m.transport_detail, needles),
      message_id = app_private.redact_text(m.message_id, needles)
  where m.organization_id = v_org and (m.recipient ~* v_pattern or m.transport_detail ~* v_pattern or m.message_id ~* v_pattern);
  get diagnostics v_n = row_count;
  if v_n > 0 then
    v_counts := v_counts || jsonb_build_object('email_messages', v_n);
  end if;

  -- Jobs of the organization that carry a needle are removed, taken by a worker or not. An email
  -- to the erased person that a worker already holds is recorded as gone out, with nobody as its
  -- recipient, so that app_private.claim_email answers "already sent" and it is never sent (one
  -- being handed to the mail server at this very moment cannot be called back).
  insert into app_private.email_messages as m (message_key, organization_id, template, recipient, sent_at, message_id, transport_detail)
  select j.payload ->> 'message_key', v_org, j.payload ->> 'template', '[erased]', now(), 'not-sent:erased', 'not sent: its recipient was erased'
  from graphile_worker._private_jobs j
  where j.payload ->> 'organization_id' = v_org::text and j.payload ->> 'message_key' is not null
    and j.payload ->> 'template' ~ '^[a-z][a-z0-9_]*$' and j.payload::text ~* v_pattern
  on conflict on constraint email_messages_pkey do update
    set recipient = '[erased]', sent_at = coalesce(m.sent_at, excluded.sent_at), message_id = coalesce(m.message_id, excluded.message_id),
      transport_detail = case when m.sent_at is null then excluded.transport_detail else app_private.redact_text(m.transport_detail, needles) end;
  delete from app_private.email_secrets s
  where s.organization_id = v_org and exists (
    select from graphile_worker._private_jobs j
    where j.key = 'send_email:' || s.message_key and j.payload::text ~* v_pattern
  );
  delete from graphile_worker._private_jobs j
  where j.payload ->> 'organization_id' = v_org::text
    and (j.payload::text ~* v_pattern or j.last_error ~* v_pattern);
  get diagnostics v_n = row_count;
  if v_n > 0 then
    v_counts := v_counts || jsonb_build_object('jobs', v_n);
  end if;

  -- Exports made before hold the person's data: they expire now, and data_export_expire deletes
  -- their zips (sql/functions/data_exports.sql).
  v_n := 0;
  for v_export in
    update app_public.data_exports e set expires_at = now()
    where e.organization_id = v_org and e.status = 'ready' and e.expires_at > now()
    returning e.id
  loop
    perform graphile_worker.add_job('data_export_expire', json_build_object('organization_id', v_org, 'export_id', v_export.id),
      job_key => format('data_export_expire:%s', v_export.id), max_attempts => 25);
    v_n := v_n + 1;
  end loop;
  if v_n > 0 then
    v_counts := v_counts || jsonb_build_object('data_exports', v_n);
  end if;
  return v_counts;
end
$$;

------------------------------------------------------------------------------------------------
-- Contacts

-- Every email, phone and full name the contact's record ever had in the current organization (its
-- history too), longest first (a longer needle containing a shorter one is replaced whole), 5
-- characters or more: what the erasure replaces everywhere, and what an export of the contact
-- looks for (sql/functions/person_exports.sql). Shorter ones are only erased from the contact's
-- own record and events.
create or replace function app_private.contact_needles(contact_id uuid) returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(array_agg(n order by length(n) desc, n), '{}')
  from (
    select distinct trim(v) as n
    from (
      select x.v
      from app_public.contacts c
      cross join lateral (values (c.email::text), (c.phone), (concat_ws(' ', c.first_name, c.last_name))) as x(v)
      where c.organization_id = app_public.current_org_id() and c.id = contact_needles.contact_id
      union all
      select x.j ->> k
      from app_public.activity_events e
      cross join lateral (values (e.old_values), (e.new_values)) as x(j)
      cross join unnest(array['email', 'phone']) as k
      where e.organization_id = app_public.current_org_id() and e.table_name = 'contacts' and e.record_id = contact_needles.contact_id
      union all
      select concat_ws(' ', x.j ->> 'first_name', x.j ->> 'last_name')
      from app_public.activity_events e
      cross join lateral (values (e.old_values), (e.new_values)) as x(j)
      where e.organization_id = app_public.current_org_id() and e.table_name = 'contacts' and e.record_id = contact_needles.contact_id and x.j is not null
    ) as values_held
    where length(trim(v)) >= 5 and trim(v) <> '[erased]'
  ) as needles
$$;

create or replace function app_private.erase_contact_data(contact_id uuid) returns jsonb
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_contact app_public.contacts;
  v_needles text[];
  v_counts jsonb;
  v_files int;
begin
  select c.* into v_contact from app_public.contacts c where c.organization_id = v_org and c.id = erase_contact_data.contact_id for update;
  if not found then
    return '{}';
  end if;
  v_needles := app_private.contact_needles(v_contact.id);

  update app_public.contacts c
  set first_name = 'Erased', last_name = 'contact', email = null, phone = null, job_title = null, is_primary = false
  where c.organization_id = v_org and c.id = v_contact.id;
  -- What she uploaded through the portal (as a portal user of hers who is not a member here) is
  -- hers: the files go, and their objects with them (tg_file_objects__delete_object). A member's
  -- uploads are the firm's records and stay (sql/functions/erasure.sql, top).
  with uploads as (
    delete from app_public.file_objects f
    using app_public.client_portal_access p
    where p.organization_id = v_org and p.contact_id = v_contact.id and p.user_id is not null
      and f.organization_id = v_org and f.created_by = p.user_id
      and not exists (select from app_public.organization_members m where m.organization_id = v_org and m.user_id = p.user_id)
    returning f.id
  )
  select count(distinct u.id) into v_files from uploads u;
  delete from app_public.client_portal_access p where p.organization_id = v_org and p.contact_id = v_contact.id;

  v_counts := jsonb_build_object('contacts', 1) || app_private.redact_organization(v_needles, 'contacts', v_contact.id);
  if v_files > 0 then
    v_counts := v_counts || jsonb_build_object('file_objects', coalesce((v_counts ->> 'file_objects')::int, 0) + v_files);
  end if;
  return v_counts;
end
$$;

------------------------------------------------------------------------------------------------
-- Requests and the job

create or replace function app_public.erase_contact(contact_id uuid) returns app_public.erasures
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
begin
  if v_org is null then
    perform app_private.fail('NO_ORGANIZATION', 'Choose an organization first (switchOrganization) to erase a contact.');
  end if;
  if not app_public.current_member_has_role('owner') then
    perform app_private.fail('NOT_PERMITTED', 'Only an owner may erase a contact''s personal data.');
  end if;
  if not exists (select from app_public.contacts c where c.organization_id = v_org and c.id = erase_contact.contact_id) then
    perform app_private.fail('NOT_FOUND', 'No such contact in this organization.');
  end if;
  return app_private.request_erasure('contact', erase_contact.contact_id);
end
$$;
revoke all on function app_public.erase_contact(uuid) from public;
grant execute on function app_public.erase_contact(uuid) to :DATABASE_VISITOR;
comment on function app_public.erase_contact(uuid) is E'Erases a client contact''s personal data (GDPR art. 17), owners only: the contact keeps its place (and invoices their amounts) but loses name, email, phone and job title, everywhere the organization holds them, the activity log included. Runs as a job; the returned erasure turns `done` when it has. Irreversible.';

-- The job's work, in one transaction inside the erasure's organization (the worker sets
-- app.org_id): opens the log's door for this transaction, erases, records the counts, closes it.
-- Idempotent: a done erasure is left alone.
create or replace function app_private.run_erasure(erasure_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_erasure app_public.erasures;
  v_counts jsonb;
begin
  select e.* into v_erasure from app_public.erasures e where e.organization_id = v_org and e.id = run_erasure.erasure_id for update;
  if not found or v_erasure.status = 'done' then
    return null;
  end if;
  insert into app_private.erasure_transactions (transaction_id, organization_id, erasure_id)
  values (pg_current_xact_id()::text::bigint, v_org, v_erasure.id);
  perform set_config('app.erasure', v_erasure.id::text, true);

  case v_erasure.scope
    when 'contact' then v_counts := app_private.erase_contact_data(v_erasure.subject_id);
    when 'user' then v_counts := app_private.erase_user_data(v_erasure.subject_id);
  end case;

  delete from app_private.erasure_transactions t where t.transaction_id = pg_current_xact_id()::text::bigint;
  perform set_config('app.erasure', '', true);
  update app_public.erasures e set status = 'done', completed_at = now(), redacted = v_counts
  where e.organization_id = v_org and e.id = v_erasure.id;
  return v_counts;
end
$$;
revoke all on function app_private.run_erasure(uuid) from public;
grant execute on function app_private.run_erasure(uuid) to :DATABASE_WORKER;
comment on function app_private.run_erasure(uuid) is 'Runs an erasure (the erase_personal_data job), in the erasure''s organization, in one transaction; returns the rows redacted per table.';

------------------------------------------------------------------------------------------------
-- Users: a member leaving (eraseMember, owners) and self-service account deletion (deleteAccount)
--
-- A user's account is global (app_public.users: one email, one name, many organizations); what an
-- organization holds about them is its own. eraseMember removes a member from the organization
-- and erases their email and name from its records and log (scope user, in that organization);
-- the account stays theirs. deleteAccount does that in every organization the user belongs to,
-- ends their sign-in at once (sessions revoked, password and reset tokens deleted, portal access
-- ended), and queues `erase_account`, which, once the organizations' erasures are done, replaces
-- the account's email and name (erased-<id>@erased.invalid, "Erased user") and removes what the
-- system holds under the email (sign-in throttling, pending sign-ups, emails not yet sent). The
-- user's id stays in the log as the actor of their changes: a pseudonymous id whose name is gone.
-- So do the files a member uploaded: the firm's work and records (deliverables, receipts), kept
-- like the time they logged, their uploader a pseudonymous id (file_objects.created_by). A client
-- contact's portal uploads are theirs and go with eraseContact (above).

-- One organization's part (run_erasure, scope user): the email and the name (5 characters or
-- more) wherever the organization's text, log, emails and jobs hold them.
create or replace function app_private.erase_user_data(user_id uuid) returns jsonb
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_needles text[];
begin
  select coalesce(array_agg(n order by length(n) desc, n), '{}') into v_needles
  from (
    select u.email::text as n from app_public.users u where u.id = erase_user_data.user_id and u.email::text not like 'erased-%@erased.invalid'
    union
    select trim(u.name) from app_public.users u where u.id = erase_user_data.user_id and length(trim(u.name)) >= 5 and u.name <> 'Erased user'
  ) as needles;
  delete from app_public.organization_members m where m.organization_id = app_public.current_org_id() and m.user_id = erase_user_data.user_id;
  return app_private.redact_organization(v_needles, 'users', erase_user_data.user_id);
end
$$;

-- Queues the erasure of `subject_id` (a contact's id for scope contact, a user's for scope user) in
-- the current organization; the caller has checked who may. One request per subject at a time:
-- asking again returns the pending one.
create or replace function app_private.request_erasure(scope text, subject_id uuid) returns app_public.erasures
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_erasure app_public.erasures;
begin
  select e.* into v_erasure from app_public.erasures e
  where e.organization_id = v_org and e.scope = request_erasure.scope and e.subject_id = request_erasure.subject_id and e.status = 'pending';
  if found then
    return v_erasure;
  end if;
  insert into app_public.erasures (organization_id, scope, subject_id, requested_by)
  values (v_org, request_erasure.scope, request_erasure.subject_id, app_public.current_user_id())
  returning * into v_erasure;
  perform graphile_worker.add_job(
    'erase_personal_data',
    json_build_object('organization_id', v_org, 'erasure_id', v_erasure.id, 'actor_id', app_public.current_user_id()),
    job_key => 'erase_personal_data:' || v_erasure.id,
    max_attempts => 10
  );
  return v_erasure;
end
$$;
revoke all on function app_private.request_erasure(text, uuid) from public;
drop function if exists app_private.request_user_erasure(uuid);

create or replace function app_public.erase_member(member_id uuid) returns app_public.erasures
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_member app_public.organization_members;
  v_erasure app_public.erasures;
begin
  if v_org is null then
    perform app_private.fail('NO_ORGANIZATION', 'Choose an organization first (switchOrganization) to erase a member.');
  end if;
  if not app_public.current_member_has_role('owner') then
    perform app_private.fail('NOT_PERMITTED', 'Only an owner may erase a member''s personal data.');
  end if;
  select m.* into v_member from app_public.organization_members m where m.organization_id = v_org and m.id = erase_member.member_id for update;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such member in this organization.');
  end if;
  if v_member.user_id = app_public.current_user_id() then
    perform app_private.fail('NOT_PERMITTED', 'To erase yourself, delete your account (deleteAccount).');
  end if;
  v_erasure := app_private.request_erasure('user', v_member.user_id);
  delete from app_public.organization_members m where m.organization_id = v_org and m.id = v_member.id;
  update app_public.client_portal_access a set revoked_at = coalesce(a.revoked_at, now())
  where a.organization_id = v_org and a.user_id = v_member.user_id;
  return v_erasure;
end
$$;
revoke all on function app_public.erase_member(uuid) from public;
grant execute on function app_public.erase_member(uuid) to :DATABASE_VISITOR;
comment on function app_public.erase_member(uuid) is E'Removes a member who leaves and erases their email and name from this organization''s records and activity log (owners only; GDPR art. 17). Their account stays theirs. Runs as a job; the returned erasure turns `done` when it has. Irreversible.';

create or replace function app_public.delete_account() returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user uuid := app_public.current_user_id();
  v_org_setting text := current_setting('app.org_id', true);
  v_member record;
begin
  if v_user is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in to delete your account.');
  end if;
  -- No organization is left without an owner.
  for v_member in
    select m.organization_id from app_public.organization_members m
    where m.user_id = v_user and m.role = 'owner'
      and not exists (select from app_public.organization_members o where o.organization_id = m.organization_id and o.role = 'owner' and o.user_id <> v_user)
  loop
    perform app_private.fail('LAST_OWNER', 'You are the last owner of an organization: make someone else owner (or delete the organization) before deleting your account.');
  end loop;
  -- Each organization's part, as that organization (its erasure is recorded and audited there).
  for v_member in
    select m.id, m.organization_id from app_public.organization_members m where m.user_id = v_user order by m.organization_id
  loop
    perform set_config('app.org_id', v_member.organization_id::text, true);
    perform app_private.request_erasure('user', v_user);
    delete from app_public.organization_members m where m.organization_id = v_member.organization_id and m.id = v_member.id;
  end loop;
  perform set_config('app.org_id', coalesce(v_org_setting, ''), true);
  -- Signed out everywhere, now.
  update app_private.sessions s set revoked_at = now(), revoked_reason = 'account deleted' where s.user_id = v_user and s.revoked_at is null;
  delete from app_private.user_secrets s where s.user_id = v_user;
  delete from app_private.password_reset_tokens t where t.user_id = v_user;
  update app_public.client_portal_access a set revoked_at = coalesce(a.revoked_at, now()) where a.user_id = v_user;
  perform graphile_worker.add_job('erase_account', json_build_object('user_id', v_user), job_key => 'erase_account:' || v_user, max_attempts => 25);
  return true;
end
$$;
revoke all on function app_public.delete_account() from public;
grant execute on function app_public.delete_account() to :DATABASE_VISITOR;
comment on function app_public.delete_account() is E'Deletes your account (GDPR art. 17): you leave every organization, are signed out everywhere, and your email and name are erased from the account and from each organization''s records and activity log (jobs). Refused (LAST_OWNER) while you are an organization''s last owner. Irreversible.';

-- The account's part (job erase_account), after every organization's: refused (the job retries)
-- while one is pending. Returns false when there was nothing left to erase.
create or replace function app_private.erase_account(user_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_user app_public.users;
  v_pattern text;
begin
  select u.* into v_user from app_public.users u where u.id = erase_account.user_id for update;
  if not found or v_user.email::text like 'erased-%@erased.invalid' then
    return false;
  end if;
  if exists (select from app_public.erasures e where e.scope = 'user' and e.subject_id = erase_account.user_id and e.status = 'pending') then
    perform app_private.fail('RETRY', 'The organizations'' erasures of this account are not all done yet.');
  end if;
  v_pattern := app_private.literal_pattern(v_user.email::text);
  delete from app_private.login_throttle t where t.email = v_user.email::text;
  delete from app_private.registrations r where r.email = v_user.email::text;
  update app_private.email_messages m set recipient = '[erased]', transport_detail = app_private.redact_text(m.transport_detail, array[v_user.email::text])
  where m.recipient = v_user.email::text;
  delete from graphile_worker._private_jobs j where j.locked_at is null and j.payload::text ~* v_pattern;
  update app_public.users u set email = format('erased-%s@erased.invalid', u.id), name = 'Erased user' where u.id = v_user.id;
  return true;
end
$$;
revoke all on function app_private.erase_account(uuid) from public;
grant execute on function app_private.erase_account(uuid) to :DATABASE_WORKER;
comment on function app_private.erase_account(uuid) is 'The account''s part of deleteAccount (job erase_account), once every organization''s erasure is done.';
