--! Previous: sha1:af73427366cbd749278573bdb4d591294f10e422
--! Hash: sha1:93a105bf6859c9044345e37bef711b605d55402b
--! Message: Data governance: personal data declared per column and honoured by the audit trigger; the activity log partitioned by month with events a timeline can use; time travel; erasure of contacts, members and accounts; deleting an organization; retention for growing tables; organization export and import

-- Data governance: personal data declared per column; the activity log partitioned by month, with
-- events a timeline can use; time travel; erasure of contacts, members, accounts; deleting an
-- organization; retention for every growing table but the log; organization export and import.
--! Included functions/personal_data.sql
-- Personal data, declared: which columns hold what kind of data, and how the activity log treats
-- each one. Every text-like column (text, email addresses, arrays of them, json) of an audited
-- table and of app_public.users is classified here; the catalog check
-- sql/checks/personal_data_classified.sql fails the build for a column that is not, so a new
-- column is classified the day it is added, by a call next to the table's make_tenant_table.
--
-- category (what the column holds):
--   person_name    a person's name (contacts, users, a signer, a vendor who may be a freelancer)
--   email, phone, address
--                  a way to reach a person
--   identifier     an official number that identifies a person or business (tax ids)
--   person_detail  other facts about a person (job title)
--   free_text      text people type, which may say anything about anyone: notes, bodies,
--                  descriptions, and the names and titles they give things (a client company
--                  named after its owner, a project "Website for Jane Doe")
--   copy           a copy of other records (webhook delivery payloads)
--   secret         credentials or URLs that work as credentials; never in the log in clear
--   none           not personal: values the system sets or chooses from a list (codes,
--                  states, keys, slugs, currencies)
-- in_log (what app_private.tg__audit copies into app_public.activity_events):
--   keep           the value, so the log can show who changed what from what to what; erasure
--                  (sql/functions/erasure.sql) redacts it there when the person is erased
--   mask           the marker "[masked]" in place of a non-null value: the log shows that the
--                  column was set, changed or cleared, never the value
--   omit           nothing: the column is left out of the event entirely
-- Idempotent; re-included by later migrations.

create table if not exists app_private.data_columns (
  schema_name text not null default 'app_public',
  table_name text not null,
  column_name text not null,
  category text not null check (category in ('person_name', 'email', 'phone', 'address', 'identifier', 'person_detail', 'free_text', 'copy', 'secret', 'none')),
  in_log text not null check (in_log in ('keep', 'mask', 'omit')),
  primary key (schema_name, table_name, column_name),
  constraint data_columns_secrets_not_kept check (category <> 'secret' or in_log <> 'keep')
);
alter table app_private.data_columns enable row level security;
alter table app_private.data_columns force row level security;
comment on table app_private.data_columns is 'What each text-like column of an audited table (and of users) holds (category) and how the activity log treats it (in_log: keep, mask, omit). Filled by app_private.classify_columns; checked by sql/checks/personal_data_classified.sql.';

-- The parent record an event names, so a timeline of an invoice shows its line items and
-- payments: rows of `table_name` belong to the row of `parent_table` whose id is in
-- `parent_column`.
create table if not exists app_private.audit_parents (
  schema_name text not null default 'app_public',
  table_name text not null,
  parent_column text not null,
  parent_table text not null,
  primary key (schema_name, table_name)
);
alter table app_private.audit_parents enable row level security;
alter table app_private.audit_parents force row level security;
comment on table app_private.audit_parents is 'For events of table_name: the column naming the parent record and the parent''s table (line item → invoice, payment → invoice, task → project). Filled by app_private.set_audit_parent.';

-- Classifies columns of `tbl`: `columns` maps each column to its category, or to
-- [category, in_log] to choose the treatment. Without one: secrets are omitted, copies omitted,
-- identifiers masked, everything else kept. Columns must exist; a column classified again takes
-- the new class.
create or replace procedure app_private.classify_columns(tbl regclass, columns jsonb)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_schema text := (select nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = tbl);
  v_table text := (select relname from pg_class where oid = tbl);
  v_column text;
  v_class jsonb;
  v_category text;
begin
  for v_column, v_class in select key, value from jsonb_each(columns) loop
    if not exists (select from pg_attribute where attrelid = tbl and attname = v_column and attnum > 0 and not attisdropped) then
      raise exception 'classify_columns: % has no column %', tbl, v_column;
    end if;
    v_category := case jsonb_typeof(v_class) when 'array' then v_class ->> 0 else v_class #>> '{}' end;
    insert into app_private.data_columns (schema_name, table_name, column_name, category, in_log)
    values (v_schema, v_table, v_column, v_category, coalesce(
      case jsonb_typeof(v_class) when 'array' then v_class ->> 1 end,
      case when v_category in ('secret', 'copy') then 'omit' when v_category = 'identifier' then 'mask' else 'keep' end))
    on conflict (schema_name, table_name, column_name) do update set category = excluded.category, in_log = excluded.in_log;
  end loop;
end
$$;

create or replace procedure app_private.set_audit_parent(tbl regclass, parent_column text, parent_table regclass)
language plpgsql
set search_path = pg_catalog
as $$
begin
  if not exists (select from pg_attribute where attrelid = tbl and attname = parent_column and not attisdropped) then
    raise exception 'set_audit_parent: % has no column %', tbl, parent_column;
  end if;
  insert into app_private.audit_parents (schema_name, table_name, parent_column, parent_table)
  select n.nspname, c.relname, parent_column, (select relname from pg_class where oid = parent_table)
  from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = tbl
  on conflict (schema_name, table_name) do update set parent_column = excluded.parent_column, parent_table = excluded.parent_table;
end
$$;

-- `j` with the non-null values of `mask` columns replaced by "[masked]" (any number of columns).
create or replace function app_private.mask_values(j jsonb, mask text[]) returns jsonb
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
declare
  v_column text;
begin
  foreach v_column in array mask loop
    if j ->> v_column is not null then
      j := jsonb_set(j, array[v_column], '"[masked]"');
    end if;
  end loop;
  return j;
end
$$;

-- What the log keeps of a row: `omit` columns left out, `mask` columns' non-null values replaced
-- by "[masked]". Tables mask one or two columns at most today: those cases are plain expressions
-- of immutable functions, with no sub-query and no SET clause, so the planner inlines the function
-- into the audit trigger's statement (a 1,000-row update runs it 2,000 times); more go through
-- mask_values. (jsonb_build_object is only stable: it would stop the inlining.)
create or replace function app_private.log_values(j jsonb, omit text[], mask text[]) returns jsonb
language sql immutable parallel safe
as $$
  select case
    when j is null then null
    when cardinality(mask) = 0 then j - omit
    when cardinality(mask) = 1 then
      case when j ->> mask[1] is null then j - omit else jsonb_set(j - omit, mask[1:1], '"[masked]"') end
    when cardinality(mask) = 2 then
      case when j ->> mask[1] is null
        then case when j ->> mask[2] is null then j - omit else jsonb_set(j - omit, mask[2:2], '"[masked]"') end
        else jsonb_set(case when j ->> mask[2] is null then j - omit else jsonb_set(j - omit, mask[2:2], '"[masked]"') end, mask[1:1], '"[masked]"')
      end
    else app_private.mask_values(j - omit, mask)
  end
$$;

------------------------------------------------------------------------------------------------
-- The classification of today's tables

call app_private.classify_columns('app_public.organizations', '{"name": "free_text", "slug": "none", "currency": "none", "file_content_types": "none"}');
call app_private.classify_columns('app_public.users', '{"email": "email", "name": "person_name"}');
call app_private.classify_columns('app_public.invitations', '{"email": "email"}');
call app_private.classify_columns('app_public.client_companies', '{"name": "free_text", "website": "free_text", "notes": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.contacts', '{"first_name": "person_name", "last_name": "person_name", "email": "email", "phone": "phone", "job_title": "person_detail"}');
call app_private.classify_columns('app_public.roles', '{"name": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.role_permissions', '{"permission_key": "none"}');
call app_private.classify_columns('app_public.deals', '{"title": "free_text", "lost_reason": "free_text"}');
call app_private.classify_columns('app_public.proposals', '{"title": "free_text", "notes": ["free_text", "mask"], "decided_by_name": "person_name"}');
call app_private.classify_columns('app_public.proposal_line_items', '{"description": "free_text"}');
call app_private.classify_columns('app_public.contracts', '{"title": "free_text", "terms": "free_text", "signer_name": "person_name"}');
call app_private.classify_columns('app_public.engagements', '{"name": "free_text"}');
call app_private.classify_columns('app_public.project_templates', '{"name": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.project_template_milestones', '{"name": "free_text"}');
call app_private.classify_columns('app_public.project_template_tasks', '{"title": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.projects', '{"name": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.milestones', '{"name": "free_text"}');
call app_private.classify_columns('app_public.tasks', '{"title": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.time_entries', '{"description": "free_text"}');
call app_private.classify_columns('app_public.threads', '{"subject": "free_text"}');
call app_private.classify_columns('app_public.messages', '{"body": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.invoice_schedules', '{"description": "free_text"}');
call app_private.classify_columns('app_public.invoices', '{"notes": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.invoice_line_items', '{"description": "free_text"}');
call app_private.classify_columns('app_public.payments', '{"reference": "free_text"}');
call app_private.classify_columns('app_public.vendors', '{"name": "person_name", "email": "email", "phone": "phone", "tax_id": "identifier", "notes": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.bills', '{"reference": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.file_objects', '{"name": "free_text", "content_type": "none", "status": "none", "scan_status": "none", "storage_key": "none"}');
call app_private.classify_columns('app_public.webhook_endpoints', '{"url": ["secret", "mask"], "description": "free_text", "event_types": "none", "disabled_reason": "none"}');
call app_private.classify_columns('app_public.webhook_deliveries', '{"event_type": "none", "payload": "copy", "status": "none", "last_error": ["free_text", "omit"], "source_table": "none"}');

call app_private.set_audit_parent('app_public.contacts', 'client_company_id', 'app_public.client_companies');
call app_private.set_audit_parent('app_public.role_permissions', 'role_id', 'app_public.roles');
call app_private.set_audit_parent('app_public.proposal_line_items', 'proposal_id', 'app_public.proposals');
call app_private.set_audit_parent('app_public.project_template_milestones', 'template_id', 'app_public.project_templates');
call app_private.set_audit_parent('app_public.project_template_tasks', 'template_id', 'app_public.project_templates');
call app_private.set_audit_parent('app_public.milestones', 'project_id', 'app_public.projects');
call app_private.set_audit_parent('app_public.tasks', 'project_id', 'app_public.projects');
call app_private.set_audit_parent('app_public.time_entries', 'engagement_id', 'app_public.engagements');
call app_private.set_audit_parent('app_public.projects', 'engagement_id', 'app_public.engagements');
call app_private.set_audit_parent('app_public.messages', 'thread_id', 'app_public.threads');
call app_private.set_audit_parent('app_public.invoice_line_items', 'invoice_id', 'app_public.invoices');
call app_private.set_audit_parent('app_public.payments', 'invoice_id', 'app_public.invoices');
call app_private.set_audit_parent('app_public.bills', 'vendor_id', 'app_public.vendors');
call app_private.set_audit_parent('app_public.webhook_deliveries', 'endpoint_id', 'app_public.webhook_endpoints');
--! EndIncluded functions/personal_data.sql
--! Included functions/activity_partitions.sql
-- The activity log, partitioned by month of occurred_at (declarative partitioning), so that it can
-- grow to hundreds of millions of events: each month is its own table with its own indexes,
-- writes go to the current month's, reads of a time window touch only its months, and retention
-- (sql/functions/retention.sql and later) removes whole months by dropping their partitions
-- instead of deleting rows.
--
-- The partitions live in the schema app_partitions, which no application role may use and the API
-- does not expose: the log is read and written through its parent, app_public.activity_events,
-- whose policy, privileges and triggers apply to every partition. A partition is created for each
-- month ahead of time (app_private.ensure_activity_partitions: the migration and the daily
-- maintenance keep three months ahead); a default partition takes any event outside them, so a
-- write never fails for want of a partition.
--
-- The primary key is (organization_id, id, occurred_at): a partitioned table's unique keys must
-- contain its partition key (the catalog check sql/checks/tenant_primary_keys.sql allows exactly
-- this suffix). Event ids stay unique on their own (random UUIDs), and the GraphQL API still finds
-- an event by organization and id (@unique).
--
-- Converting the table written by migration 000001 copies its rows once (events written before
-- `seq` existed get negative numbers in their time order, so they still come first). Append-only
-- holds throughout: the copy is made by the migration, inside its transaction, and the old table
-- is dropped with its rows in the same transaction.
-- Idempotent; re-included by later migrations.

create schema if not exists app_partitions;
revoke all on schema app_partitions from public;
comment on schema app_partitions is 'Partitions of partitioned tables (the months of app_public.activity_events). No application role uses this schema: the partitions are read and written through their parent.';

create or replace function app_private.activity_partition_name(month date) returns text
language sql immutable
set search_path = pg_catalog
as $$ select 'activity_events_' || to_char(month, 'YYYY_MM') $$;

-- Creates the month partitions from `from_month` to `months_ahead` months after the current one
-- (those missing). A month whose events sit in the default partition (maintenance stopped for
-- months) is refused with a clear error: move them first.
create or replace procedure app_private.ensure_activity_partitions(months_ahead integer default 3, from_month date default null)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_month date;
  v_name text;
begin
  for v_month in
    select generate_series(date_trunc('month', coalesce(from_month, now()::date))::date, (date_trunc('month', now()) + make_interval(months => months_ahead))::date, interval '1 month')::date
  loop
    v_name := app_private.activity_partition_name(v_month);
    continue when to_regclass(format('app_partitions.%I', v_name)) is not null;
    if exists (select from app_partitions.activity_events_default d where d.occurred_at >= v_month and d.occurred_at < v_month + interval '1 month') then
      raise exception 'The default partition of app_public.activity_events holds events of %: move them into a new partition for that month before creating it', to_char(v_month, 'YYYY-MM');
    end if;
    execute format('create table app_partitions.%I partition of app_public.activity_events for values from (%L) to (%L)',
      v_name, v_month::timestamptz, (v_month + interval '1 month')::timestamptz);
    execute format('alter table app_partitions.%I enable row level security, force row level security', v_name);
    -- Through the parent only: the parent's privileges and triggers decide (a partition's own
    -- would let its owner truncate a month).
    execute format('revoke update, delete, truncate on app_partitions.%I from current_user', v_name);
  end loop;
end
$$;

-- The daily maintenance's part (src/worker/tasks/daily_maintenance.ts): keeps three months of
-- partitions ahead. Returns how many it created.
create or replace function app_private.maintain_activity_partitions() returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_before integer := (select count(*) from pg_inherits i where i.inhparent = 'app_public.activity_events'::regclass);
begin
  call app_private.ensure_activity_partitions(3);
  return (select count(*) from pg_inherits i where i.inhparent = 'app_public.activity_events'::regclass) - v_before;
end
$$;
revoke all on function app_private.maintain_activity_partitions() from public;
grant execute on function app_private.maintain_activity_partitions() to :DATABASE_WORKER;
comment on function app_private.maintain_activity_partitions() is 'Creates the activity log''s month partitions up to three months ahead (daily maintenance); returns how many it created.';
comment on procedure app_private.ensure_activity_partitions(integer, date) is 'Creates the missing month partitions of app_public.activity_events, up to months_ahead months after the current one.';

-- The event's place in the log (sql/functions/time_travel.sql), and the columns a timeline reads;
-- added to the table of migration 000001 before it is converted.
create sequence if not exists app_private.activity_event_seq as bigint;
alter table app_public.activity_events
  add column if not exists seq bigint,
  add column if not exists changed_columns text[],
  add column if not exists parent_table text,
  add column if not exists parent_id uuid;

do $convert$
declare
  v_oldest date;
  v_function regprocedure;
begin
  if (select c.relkind from pg_class c where c.oid = 'app_public.activity_events'::regclass) = 'p' then
    return;
  end if;
  alter table app_public.activity_events rename to activity_events_unpartitioned;
  alter table app_public.activity_events_unpartitioned rename constraint activity_events_pkey to activity_events_unpartitioned_pkey;
  create table app_public.activity_events (
    organization_id uuid not null references app_public.organizations,
    id uuid not null default gen_random_uuid(),
    occurred_at timestamptz not null default now(),
    transaction_id bigint not null default (pg_current_xact_id()::text::bigint),
    actor_id uuid,
    action text not null,
    table_name text not null,
    record_id uuid not null,
    old_values jsonb,
    new_values jsonb,
    seq bigint not null default nextval('app_private.activity_event_seq'),
    changed_columns text[],
    parent_table text,
    parent_id uuid,
    constraint activity_events_pkey primary key (organization_id, id, occurred_at)
  ) partition by range (occurred_at);
  create table app_partitions.activity_events_default partition of app_public.activity_events default;
  alter table app_partitions.activity_events_default enable row level security, force row level security;
  revoke update, delete, truncate on app_partitions.activity_events_default from current_user;
  select date_trunc('month', min(occurred_at))::date into v_oldest from app_public.activity_events_unpartitioned;
  call app_private.ensure_activity_partitions(3, v_oldest);
  insert into app_public.activity_events
    (organization_id, id, occurred_at, transaction_id, actor_id, action, table_name, record_id, old_values, new_values, seq, changed_columns, parent_table, parent_id)
  select organization_id, id, occurred_at, transaction_id, actor_id, action, table_name, record_id, old_values, new_values,
    coalesce(seq, row_number() over (order by seq nulls first, occurred_at, transaction_id, id) - (select count(*) from app_public.activity_events_unpartitioned) - 1),
    changed_columns, parent_table, parent_id
  from app_public.activity_events_unpartitioned;
  -- Functions of the old table's row type go with it; their files are included after this one
  -- (sql/functions/retention.sql: record_activity; sql/functions/time_travel.sql).
  for v_function in
    select p.oid::regprocedure from pg_proc p
    where p.prorettype = 'app_public.activity_events_unpartitioned'::regtype
       or 'app_public.activity_events_unpartitioned'::regtype = any (p.proargtypes)
  loop
    execute format('drop function %s', v_function);
  end loop;
  drop table app_public.activity_events_unpartitioned;
end
$convert$;

alter table app_public.activity_events drop constraint if exists activity_events_action_check;
alter table app_public.activity_events add constraint activity_events_action_check
  check (action in ('insert', 'update', 'delete', 'soft_delete', 'restore', 'purge'));
create index if not exists activity_events_organization_id_occurred_at_idx on app_public.activity_events (organization_id, occurred_at desc, id);
create index if not exists activity_events_organization_id_transaction_id_idx on app_public.activity_events (organization_id, transaction_id);
create index if not exists activity_events_organization_id_table_name_record_id_seq_idx on app_public.activity_events (organization_id, table_name, record_id, seq);
create index if not exists activity_events_organization_id_parent_table_parent_id_seq_idx
  on app_public.activity_events (organization_id, parent_table, parent_id, seq) where parent_id is not null;

call app_private.force_rls('app_public.activity_events');
call app_private.attach_require_organization('app_public.activity_events');
alter table app_public.activity_events alter column organization_id drop default;
grant select on app_public.activity_events to :DATABASE_VISITOR;
revoke insert, update, delete, truncate on app_public.activity_events from :DATABASE_VISITOR, :DATABASE_WORKER;
-- The owner writes events (through the audit trigger and record_activity); it may rewrite values
-- and delete only through the erasure doors (sql/functions/erasure.sql), never truncate.
revoke update, delete, truncate on app_public.activity_events from current_user;
grant update (old_values, new_values), delete on app_public.activity_events to current_user;
drop trigger if exists tg_activity_events__append_only on app_public.activity_events;
create trigger tg_activity_events__append_only before update or delete on app_public.activity_events
  for each row execute function app_private.tg__append_only();
drop trigger if exists tg_activity_events__no_truncate on app_public.activity_events;
create trigger tg_activity_events__no_truncate before truncate on app_public.activity_events
  for each statement execute function app_private.tg__append_only();

comment on table app_public.activity_events is E'@behavior -insert -update -delete\n@primaryKey organization_id,id\nEvery change to the organization''s data: who (actor), what (table, row, action, values before and after, secrets left out, personal data as classified), when, in which transaction. Append-only. Partitioned by month of occurred_at.';
-- The API finds an event by organization and id (event ids are unique on their own), as before
-- the log was partitioned: the real key, which carries the partition key, is not offered.
comment on constraint activity_events_pkey on app_public.activity_events is '@behavior -single -node';
comment on column app_public.activity_events.actor_id is 'The signed-in user who made the change; null for the system (migrations, jobs without an actor). No foreign key: the log outlives what it names.';
comment on column app_public.activity_events.action is 'insert, update, delete, soft_delete, restore: a row changed (the audit trigger); purge: the retention job''s summary of the deleted records it purged.';
comment on column app_public.activity_events.seq is 'The event''s place in the log: a record''s events in seq order are in commit order; events of one transaction keep the order they were written in. Events written before it existed have negative numbers, in their time order.';
comment on column app_public.activity_events.changed_columns is 'For updates: the columns that changed (updated_at aside), masked columns included. Null for inserts and deletes.';
comment on column app_public.activity_events.parent_table is 'The table of the record this one belongs to (an invoice for its line items and payments, a project for its tasks); null when it has none.';
comment on column app_public.activity_events.parent_id is 'The id of the record this one belongs to (see parent_table).';
--! EndIncluded functions/activity_partitions.sql
--! Included functions/retention.sql
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
    json_build_object('organization_id', v_org, 'transaction_id', v_event.transaction_id),
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
  v_name text;
  v_purgeable text;
  v_purged jsonb := '{}';
  v_kept jsonb := '{}';
  v_pass integer;
  v_n integer;
  v_id uuid;
  v_summary jsonb;
begin
  select o.retention_days into v_days from app_public.organizations o where o.id = v_org;
  v_cutoff := now() - make_interval(days => v_days);
  loop
    v_pass := 0;
    foreach v_table in array v_tables loop
      v_name := (select c.relname::text from pg_class c where c.oid = v_table);
      v_purgeable := format('t.organization_id = $1 and t.deleted_at <= $2 and %s', app_private.purge_unreferenced(v_table));
      begin
        execute format('delete from %s t where %s', v_table, v_purgeable) using v_org, v_cutoff;
        get diagnostics v_n = row_count;
      exception when foreign_key_violation then
        -- A cascade reached a row that a live row references: row by row, keeping those.
        v_n := 0;
        for v_id in execute format('select t.id from %s t where %s order by t.id', v_table, v_purgeable) using v_org, v_cutoff loop
          begin
            execute format('delete from %s t where t.organization_id = $1 and t.id = $2', v_table) using v_org, v_id;
            v_n := v_n + 1;
          exception when foreign_key_violation then
            null;
          end;
        end loop;
      end;
      if v_n > 0 then
        v_purged := v_purged || jsonb_build_object(v_name, coalesce((v_purged ->> v_name)::integer, 0) + v_n);
        v_pass := v_pass + v_n;
      end if;
    end loop;
    exit when v_pass = 0;
  end loop;

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
--! EndIncluded functions/retention.sql
--! Included functions/activity.sql
-- Who reads which part of the activity log: an event is visible to exactly the members who may
-- read the rows of its table. A billing clerk without deals.read sees invoice events, never the
-- before/after values of a deal.
--
-- app_private.activity_read_rules holds one rule per audited table: either a permission
-- (`<area>.read`, checked with app_public.has_permission) or, for the foundation tables that have
-- no permission area, the lowest member role that reads them. app_private.create_tenant_policies
-- (sql/functions/tenant_tables.sql) registers every standard tenant table with its area, so a new
-- table's events follow its own read permission without further work; the catalog check
-- sql/checks/audited_tables_have_read_rule.sql fails the build for an audited table without a
-- rule (its events would be visible to nobody).
-- Idempotent; re-included by later migrations.

create table if not exists app_private.activity_read_rules (
  table_name text primary key,
  permission text references app_public.permissions (key),
  min_role app_public.member_role,
  constraint activity_read_rules_one_rule check ((permission is null) <> (min_role is null))
);
create index if not exists activity_read_rules_permission_idx on app_private.activity_read_rules (permission);
alter table app_private.activity_read_rules enable row level security;
alter table app_private.activity_read_rules force row level security;
comment on table app_private.activity_read_rules is 'Which members read an audited table''s events in app_public.activity_events: those holding `permission`, or (foundation tables) those with at least `min_role`.';

insert into app_private.activity_read_rules (table_name, permission, min_role) values
  ('organizations', null, 'viewer'),
  ('organization_members', null, 'viewer'),
  ('invitations', null, 'admin')
on conflict (table_name) do update set permission = excluded.permission, min_role = excluded.min_role;

-- The tables whose events the current user may read in the current organization. Called once per
-- query by the activity_events policy (wrapped in a sub-select), not per row.
create or replace function app_private.readable_activity_tables() returns text[]
language sql stable security definer
set search_path = pg_catalog
as $$
  select coalesce(array_agg(r.table_name order by r.table_name), '{}')
  from app_private.activity_read_rules r
  where case
    when r.permission is not null then app_public.has_permission(r.permission)
    else app_public.current_member_has_role(r.min_role)
  end
$$;
revoke all on function app_private.readable_activity_tables() from public;
grant execute on function app_private.readable_activity_tables() to :DATABASE_VISITOR;
comment on function app_private.readable_activity_tables() is 'Tables whose activity the current user may read in the current organization (app_private.activity_read_rules).';

-- Tables whose rows are copies of other tables' rows: they name the source in a `source_table`
-- column (webhook deliveries: sql/functions/copies.sql). Their rows, and their events here, are
-- read only by those who may read the source table too.
create or replace function app_private.copy_tables() returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(array_agg(c.relname::text order by c.relname), '{}')
  from pg_class c
  join pg_attribute a on a.attrelid = c.oid and a.attname = 'source_table' and not a.attisdropped
  where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p')
$$;
revoke all on function app_private.copy_tables() from public;
grant execute on function app_private.copy_tables() to :DATABASE_VISITOR;
comment on function app_private.copy_tables() is 'app_public tables holding copies of other tables'' rows (they have a source_table column).';

drop policy if exists select_members on app_public.activity_events;
drop policy if exists select_readable on app_public.activity_events;
create policy select_readable on app_public.activity_events for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and table_name = any ((select app_private.readable_activity_tables())::text[])
    and (table_name <> all ((select app_private.copy_tables())::text[])
      or coalesce(new_values, old_values) ->> 'source_table' = any ((select app_private.readable_activity_tables())::text[])
      -- events of copies recorded before copies named their source: admins and owners
      or (coalesce(new_values, old_values) ->> 'source_table' is null and (select app_public.current_member_has_role('admin')))));
comment on policy select_readable on app_public.activity_events is 'Members read the current organization''s events of the tables they may read (app_private.activity_read_rules): a role without deals.read sees no deal events; events of copies (webhook deliveries) also need their source table readable.';
--! EndIncluded functions/activity.sql
--! Included functions/time_travel.sql
-- Time travel over the activity log: every version of a record, the record as it was at a moment,
-- and what changed in the organization between two moments. Each reads app_public.activity_events
-- as the caller (SECURITY INVOKER), so its policy decides: a member reads the history of exactly
-- the tables whose rows they may read (sql/functions/activity.sql), in their organization.
--
-- The log keeps whole rows (new_values after the change, old_values before it; secrets and
-- `omit` columns left out, `mask` columns as "[masked]": sql/functions/personal_data.sql), so a
-- version is read, never rebuilt by replaying diffs, and `record_as_of` costs one index probe
-- whatever the number of versions.
--
-- Order: `seq` numbers events as they are written. Two transactions cannot change one row at the
-- same time (the second waits for the first's row lock and writes after it commits), so a
-- record's events in `seq` order are in commit order; within a transaction, statements and rows
-- keep the order they were written in. Events written before `seq` existed have negative
-- numbers, in their time order.
-- Idempotent; re-included by later migrations.

-- The columns they read (seq, changed_columns, parent_table, parent_id) and their indexes are
-- made with the partitioned log in sql/functions/activity_partitions.sql.

------------------------------------------------------------------------------------------------
-- What a timeline shows of an event

-- Each changed column with its value before and after: {"status": {"old": "draft", "new": "sent"}}.
-- Updates name their changed columns (masked ones read "[masked]" on both sides); an insert shows
-- every value it set, a delete every value it removed.
create or replace function app_public.activity_events_changes(e app_public.activity_events) returns jsonb
language sql stable
set search_path = pg_catalog
as $$
  select coalesce(jsonb_object_agg(c.col, jsonb_build_object('old', e.old_values -> c.col, 'new', e.new_values -> c.col) order by c.col), '{}')
  from (
    select unnest(e.changed_columns) as col
    where e.changed_columns is not null
    union all
    -- events without changed_columns: inserts, deletes, and updates written before the column
    select k.key
    from jsonb_each(coalesce(e.new_values, e.old_values)) as k
    where e.changed_columns is null and k.key <> 'updated_at'
      and k.value is distinct from (case when e.old_values is null or e.new_values is null then 'null'::jsonb else e.old_values -> k.key end)
  ) as c
$$;
revoke all on function app_public.activity_events_changes(app_public.activity_events) from public;
grant execute on function app_public.activity_events_changes(app_public.activity_events) to :DATABASE_VISITOR;
comment on function app_public.activity_events_changes(app_public.activity_events) is 'The columns this event changed, each with its old and new value: {"status": {"old": "draft", "new": "sent"}}. Inserts list the values they set, deletes the values they removed. Masked columns read "[masked]".';

-- The name of the member who made the change, as the caller sees users (their colleagues): null
-- for the system (no actor) and for someone who is no longer a member.
create or replace function app_public.activity_events_actor_name(e app_public.activity_events) returns text
language sql stable
set search_path = pg_catalog
as $$
  select u.name from app_public.users u where u.id = e.actor_id
$$;
revoke all on function app_public.activity_events_actor_name(app_public.activity_events) from public;
grant execute on function app_public.activity_events_actor_name(app_public.activity_events) to :DATABASE_VISITOR;
comment on function app_public.activity_events_actor_name(app_public.activity_events) is 'The name of the member who made the change. Null when the system made it (actorId null) or the person is no longer a member.';

------------------------------------------------------------------------------------------------
-- The questions

-- A table whose history may be asked for: one with a read rule for its events. Anything else is
-- refused with INVALID_VALUE (a typo should not look like a record without history).
create or replace function app_private.assert_history_table(table_name text) returns boolean
language plpgsql stable security definer
set search_path = pg_catalog
as $$
begin
  if not exists (select from app_private.activity_read_rules r where r.table_name = assert_history_table.table_name) then
    perform app_private.fail('INVALID_VALUE', format('%s is not a table with a history (use the SQL name, e.g. invoices)', coalesce(table_name, 'null')));
  end if;
  return true;
end
$$;
revoke all on function app_private.assert_history_table(text) from public;
grant execute on function app_private.assert_history_table(text) to :DATABASE_VISITOR;

create or replace function app_public.record_history(table_name text, record_id uuid, with_parts boolean default true)
returns setof app_public.activity_events
language sql stable
set search_path = pg_catalog
as $$
  select e.*
  from app_public.activity_events e
  where app_private.assert_history_table(record_history.table_name)
    and e.organization_id = (select app_public.current_org_id())
    and ((e.table_name = record_history.table_name and e.record_id = record_history.record_id)
      or (record_history.with_parts and e.parent_table = record_history.table_name and e.parent_id = record_history.record_id))
  order by e.seq
$$;
revoke all on function app_public.record_history(text, uuid, boolean) from public;
grant execute on function app_public.record_history(text, uuid, boolean) to :DATABASE_VISITOR;
comment on function app_public.record_history(text, uuid, boolean) is E'Every version of a record, oldest first in commit order: who changed what (changedColumns, changes), when. `tableName` is the SQL table name (invoices, tasks, ...). With `withParts` (the default) the events of its parts come too: an invoice''s line items and payments, a project''s tasks. Only tables you may read have a history for you.';

create or replace function app_public.record_as_of(table_name text, record_id uuid, at timestamptz) returns jsonb
language sql stable
set search_path = pg_catalog
as $$
  select case when e.action = 'delete' then null else e.new_values end
  from app_public.activity_events e
  where app_private.assert_history_table(record_as_of.table_name)
    and e.organization_id = (select app_public.current_org_id())
    and e.table_name = record_as_of.table_name and e.record_id = record_as_of.record_id
    and e.occurred_at <= record_as_of.at
  order by e.seq desc
  limit 1
$$;
revoke all on function app_public.record_as_of(text, uuid, timestamptz) from public;
grant execute on function app_public.record_as_of(text, uuid, timestamptz) to :DATABASE_VISITOR;
comment on function app_public.record_as_of(text, uuid, timestamptz) is E'The record as it was at `at` (its columns as JSON, as the activity log keeps them: secrets left out, masked columns "[masked]"), or null if it did not exist then (not yet created, or deleted for good). A soft-deleted record comes with its deletedAt. Times are those of the changes'' transactions.';

create or replace function app_public.activity_between(since timestamptz, until timestamptz)
returns setof app_public.activity_events
language sql stable
set search_path = pg_catalog
as $$
  select e.*
  from app_public.activity_events e
  where e.organization_id = (select app_public.current_org_id())
    and e.occurred_at >= activity_between.since and e.occurred_at < activity_between.until
  order by e.occurred_at, e.seq
$$;
revoke all on function app_public.activity_between(timestamptz, timestamptz) from public;
grant execute on function app_public.activity_between(timestamptz, timestamptz) to :DATABASE_VISITOR;
comment on function app_public.activity_between(timestamptz, timestamptz) is E'What changed in the organization from `since` (inclusive) to `until` (exclusive), oldest first: the events of every table you may read.';
--! EndIncluded functions/time_travel.sql
--! Included functions/triggers.sql
-- Trigger functions shared by every tenant table. They are attached by the procedures in
-- sql/functions/tenant_tables.sql, never by hand.

-- BEFORE UPDATE, per row: updated_at is the time of the last change, whatever the client sent.
create or replace function app_private.tg__updated_at() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
  new.updated_at := now();
  return new;
end
$$;

-- AFTER INSERT/UPDATE/DELETE, per statement, with transition tables old_rows/new_rows:
-- writes one app_public.activity_events row per changed row (who, organization, what,
-- before/after, when, transaction), then enqueues the outbox job `dispatch_activity` in the
-- same transaction: one per organization and transaction (job_key collapses the statements of
-- one transaction), so a rolled-back change never produces a job and a committed one always does.
-- Arguments: TG_ARGV[0] = the column holding the organization id ('organization_id', or 'id'
-- on app_public.organizations); TG_ARGV[1..] = secret columns, never copied into the event.
-- What is copied follows the table's classification (sql/functions/personal_data.sql): columns
-- classified `omit` are left out like secrets, `mask` columns read "[masked]". Each event also
-- gets its place in the log (seq: commit order for one record, statement order within a
-- transaction), the parent record it belongs to (app_private.audit_parents) and, for updates,
-- the columns that changed (masked ones included, omitted ones not).
-- An UPDATE that changes nothing but updated_at writes no event, nor does the purge of a deleted
-- organization (sql/functions/organization_deletion.sql).
-- Each row is turned into JSON once (`to_jsonb(new_rows.*)`: the `.*` means the row even when the
-- table has a column named like the alias), in a materialized step the event columns then read
-- (app_private.log_values is inlined, so an unmaterialized JSON would be built once per use).
-- SECURITY DEFINER: the acting role (the visitor) has no privilege on activity_events or
-- on the job queue; only this function writes there.
-- Its statements use generic plans (plan_cache_mode): they differ per table only in the values of
-- variables, and a custom plan would be made again for every statement that fires the trigger
-- (with the classification's arrays as constants, PL/pgSQL judged custom plans cheaper and planned
-- the event insert anew each time: a third of a single-row update's audit cost, measured).
create or replace function app_private.tg__audit() returns trigger
language plpgsql security definer
set search_path = pg_catalog
set plan_cache_mode = force_generic_plan
as $$
declare
  v_org_column text := tg_argv[0];
  v_omit text[] := coalesce(tg_argv[1:], '{}');
  v_mask text[];
  v_parent_column text;
  v_parent_table text;
  v_actor uuid := app_public.current_user_id();
  v_txid bigint := pg_current_xact_id()::text::bigint;
  v_orgs uuid[];
  v_nestloop text;
begin
  -- A deleted organization's purge deletes its log with its rows: no events for it.
  if current_setting('app.erasure', true) <> '' and app_private.erasing(null, 'organization') then
    return null;
  end if;
  -- The table's classification and parent, in one query per statement.
  select v_omit || coalesce(array_agg(d.column_name) filter (where d.in_log = 'omit'), '{}'),
    coalesce(array_agg(d.column_name order by d.column_name) filter (where d.in_log = 'mask'), '{}'),
    min(p.parent_column), min(p.parent_table)
  into v_omit, v_mask, v_parent_column, v_parent_table
  from (select) as statement
  left join app_private.data_columns d on d.schema_name = tg_table_schema and d.table_name = tg_table_name and d.in_log <> 'keep'
  left join app_private.audit_parents p on p.schema_name = tg_table_schema and p.table_name = tg_table_name;

  if tg_op = 'INSERT' then
    with rows as materialized (select to_jsonb(new_rows.*) as j from new_rows),
    events as (
      insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, old_values, new_values, transaction_id, parent_table, parent_id)
      select (r.j ->> v_org_column)::uuid, v_actor, 'insert', tg_table_name, (r.j ->> 'id')::uuid, null, app_private.log_values(r.j, v_omit, v_mask), v_txid,
        case when r.j ->> v_parent_column is not null then v_parent_table end, (r.j ->> v_parent_column)::uuid
      from rows as r
      returning organization_id
    )
    select array_agg(distinct organization_id) into v_orgs from events;
  elsif tg_op = 'DELETE' then
    with rows as materialized (select to_jsonb(old_rows.*) as j from old_rows),
    events as (
      insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, old_values, new_values, transaction_id, parent_table, parent_id)
      select (r.j ->> v_org_column)::uuid, v_actor, 'delete', tg_table_name, (r.j ->> 'id')::uuid, app_private.log_values(r.j, v_omit, v_mask), null, v_txid,
        case when r.j ->> v_parent_column is not null then v_parent_table end, (r.j ->> v_parent_column)::uuid
      from rows as r
      returning organization_id
    )
    select array_agg(distinct organization_id) into v_orgs from events;
  else
    -- Old and new rows are paired by id. PL/pgSQL keeps this statement's plan for the session: a
    -- plan made while updates changed one row each (a nested loop over the two transition tables)
    -- would pair a later 1,000-row update in n² steps (6× the time of the whole update, measured).
    -- Planned without nested loops, the pairing is a merge or hash join whatever the size; the
    -- setting is this transaction's and goes back right after.
    v_nestloop := current_setting('enable_nestloop');
    perform set_config('enable_nestloop', 'off', true);
    with pairs as materialized (
      select to_jsonb(old_rows.*) as o, to_jsonb(new_rows.*) as n
      from old_rows join new_rows on new_rows.id = old_rows.id
    ),
    events as (
      insert into app_public.activity_events (organization_id, actor_id, action, table_name, record_id, old_values, new_values, transaction_id, parent_table, parent_id, changed_columns)
      select (p.n ->> v_org_column)::uuid, v_actor,
        case
          when p.o ->> 'deleted_at' is null and p.n ->> 'deleted_at' is not null then 'soft_delete'
          when p.o ->> 'deleted_at' is not null and p.n ->> 'deleted_at' is null then 'restore'
          else 'update'
        end,
        tg_table_name, (p.n ->> 'id')::uuid, app_private.log_values(p.o, v_omit, v_mask), app_private.log_values(p.n, v_omit, v_mask), v_txid,
        case when p.n ->> v_parent_column is not null then v_parent_table end, (p.n ->> v_parent_column)::uuid,
        array(
          select c.key from jsonb_each(p.n) as c
          where c.key <> 'updated_at' and c.key <> all (v_omit) and c.value is distinct from p.o -> c.key
          order by c.key
        )
      from pairs p
      where (p.o - 'updated_at') is distinct from (p.n - 'updated_at')
      returning organization_id
    )
    select array_agg(distinct organization_id) into v_orgs from events;
    perform set_config('enable_nestloop', v_nestloop, true);
  end if;

  if v_orgs is not null then
    perform graphile_worker.add_jobs(array(
      select row(
        'dispatch_activity',
        json_build_object('organization_id', org, 'transaction_id', v_txid),
        null, null, null,
        format('dispatch_activity:%s:%s', org, v_txid),
        null, null
      )::graphile_worker.job_spec
      from unnest(v_orgs) as org
    ));
  end if;
  return null;
end
$$;

-- BEFORE UPDATE/DELETE per row and BEFORE TRUNCATE on append-only tables (activity_events):
-- a second lock behind the revoked privileges, for any role that might get them back.
create or replace function app_private.tg__append_only() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
  raise exception '% is append-only: rows cannot be changed or deleted', tg_table_name
    using errcode = '42501';
end
$$;
--! EndIncluded functions/triggers.sql
--! Included functions/erasure.sql
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
--     email records, and the job queue (jobs not yet run that carry a needle are removed); the
--     organization's ready exports expire at once (their zips are deleted);
--   - the log's events of the contact's own record lose every personal value;
--   - amounts, dates, statuses and references are never touched: invoices keep their totals and
--     lose the person.
-- Deleting a whole organization is sql/functions/organization_deletion.sql.
--
-- The activity log is append-only (sql/functions/triggers.sql, tg__append_only) for every role,
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
  -- (On a month of the log, tg_relid is the partition: sql/functions/activity_partitions.sql.)
  if tg_op = 'UPDATE' and app_private.erasing(old.organization_id)
     and (tg_relid = 'app_public.activity_events'::regclass or exists (select from pg_inherits i where i.inhrelid = tg_relid and i.inhparent = 'app_public.activity_events'::regclass))
     and (to_jsonb(new) - array['old_values', 'new_values']) = (to_jsonb(old) - array['old_values', 'new_values']) then
    return new;
  end if;
  -- The purge of a deleted organization (sql/functions/organization_deletion.sql) deletes its log.
  if tg_op = 'DELETE' and app_private.erasing(old.organization_id, 'organization')
     and (tg_relid = 'app_public.activity_events'::regclass or exists (select from pg_inherits i where i.inhrelid = tg_relid and i.inhparent = 'app_public.activity_events'::regclass)) then
    return old;
  end if;
  raise exception '% is append-only: rows cannot be changed or deleted', tg_table_name
    using errcode = '42501';
end
$$;
-- The owner may write the two value columns and delete; the trigger above decides when (only an
-- erasure, and only the purge of a deleted organization deletes).
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
    select d.table_name,
      string_agg(format(case
        when a.atttypid = 'jsonb'::regtype then '%1$I = app_private.redact_jsonb(%1$I, $2)'
        -- an email address column keeps a valid address, one per row: erased-<id>@erased.invalid
        when a.atttypid = 'app_public.email_address'::regtype then '%1$I = case when %1$I ~* $3 then format(''erased-%%s@erased.invalid'', id) else %1$I end'
        else '%1$I = app_private.redact_text(%1$I, $2)'
      end, d.column_name), ', ' order by d.column_name) as sets,
      string_agg(format('%I::text ~* $3', d.column_name), ' or ' order by d.column_name) as matches
    from app_private.data_columns d
    join pg_class c on c.relname = d.table_name and c.relnamespace = 'app_public'::regnamespace
    join pg_attribute a on a.attrelid = c.oid and a.attname = d.column_name
    where d.schema_name = 'app_public' and d.category in ('person_name', 'email', 'phone', 'address', 'identifier', 'person_detail', 'free_text', 'copy')
      and exists (select from pg_attribute o where o.attrelid = c.oid and o.attname = 'organization_id' and not o.attisdropped)
    group by d.table_name
    order by d.table_name
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

  -- Jobs of the organization that carry a needle and have not started: removed (an email to the
  -- erased person is not sent). A job running now keeps its payload until it ends; its error, if
  -- it failed, is redacted.
  delete from app_private.email_secrets s
  where s.organization_id = v_org and exists (
    select from graphile_worker._private_jobs j
    where j.key = 'send_email:' || s.message_key and j.locked_at is null and j.payload::text ~* v_pattern
  );
  delete from graphile_worker._private_jobs j
  where j.payload ->> 'organization_id' = v_org::text and j.locked_at is null
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

create or replace function app_private.erase_contact_data(contact_id uuid) returns jsonb
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_contact app_public.contacts;
  v_needles text[];
  v_counts jsonb;
begin
  select c.* into v_contact from app_public.contacts c where c.organization_id = v_org and c.id = erase_contact_data.contact_id for update;
  if not found then
    return '{}';
  end if;
  -- Every email, phone and full name the record ever had (its history too), longest first (a
  -- longer needle containing a shorter one is replaced whole). Anything shorter than 5
  -- characters is only erased from the contact's own record and events.
  select coalesce(array_agg(n order by length(n) desc, n), '{}') into v_needles
  from (
    select distinct trim(v) as n
    from (
      select v_contact.email::text as v
      union all select v_contact.phone
      union all select concat_ws(' ', v_contact.first_name, v_contact.last_name)
      union all
      select x.j ->> k
      from app_public.activity_events e
      cross join lateral (values (e.old_values), (e.new_values)) as x(j)
      cross join unnest(array['email', 'phone']) as k
      where e.organization_id = v_org and e.table_name = 'contacts' and e.record_id = v_contact.id
      union all
      select concat_ws(' ', x.j ->> 'first_name', x.j ->> 'last_name')
      from app_public.activity_events e
      cross join lateral (values (e.old_values), (e.new_values)) as x(j)
      where e.organization_id = v_org and e.table_name = 'contacts' and e.record_id = v_contact.id and x.j is not null
    ) as values_held
    where length(trim(v)) >= 5 and trim(v) <> '[erased]'
  ) as needles;

  update app_public.contacts c
  set first_name = 'Erased', last_name = 'contact', email = null, phone = null, job_title = null, is_primary = false
  where c.organization_id = v_org and c.id = v_contact.id;
  delete from app_public.client_portal_access p where p.organization_id = v_org and p.contact_id = v_contact.id;

  v_counts := jsonb_build_object('contacts', 1) || app_private.redact_organization(v_needles, 'contacts', v_contact.id);
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
  v_erasure app_public.erasures;
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
  -- One request per contact at a time: asking again returns the pending one.
  select e.* into v_erasure from app_public.erasures e
  where e.organization_id = v_org and e.scope = 'contact' and e.subject_id = erase_contact.contact_id and e.status = 'pending';
  if found then
    return v_erasure;
  end if;
  insert into app_public.erasures (organization_id, scope, subject_id, requested_by)
  values (v_org, 'contact', erase_contact.contact_id, app_public.current_user_id())
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

-- Queues the erasure of `user_id` in the current organization (the caller has checked who may).
create or replace function app_private.request_user_erasure(user_id uuid) returns app_public.erasures
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_erasure app_public.erasures;
begin
  select e.* into v_erasure from app_public.erasures e
  where e.organization_id = v_org and e.scope = 'user' and e.subject_id = request_user_erasure.user_id and e.status = 'pending';
  if found then
    return v_erasure;
  end if;
  insert into app_public.erasures (organization_id, scope, subject_id, requested_by)
  values (v_org, 'user', request_user_erasure.user_id, app_public.current_user_id())
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
  v_erasure := app_private.request_user_erasure(v_member.user_id);
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
    perform app_private.request_user_erasure(v_user);
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
--! EndIncluded functions/erasure.sql
--! Included functions/status_machine.sql
-- Status machines: which status changes a record may make, as rows a DBA can read and change.
--
--   select from_status, to_status, stamp_column from app_private.status_transitions
--   where table_name = 'invoices' order by 1, 2;
--
-- `from_status = '*new*'` lists the statuses a row may be created in. `stamp_column`, when set,
-- is stamped with now() when the row enters `to_status` (sent_at, signed_at, ...).
-- app_private.attach_status_machine(table) adds the trigger that enforces them; anything else is
-- refused with INVALID_TRANSITION.

create table if not exists app_private.status_transitions (
  table_name text not null,
  from_status text not null,
  to_status text not null,
  stamp_column text,
  primary key (table_name, from_status, to_status)
);
alter table app_private.status_transitions enable row level security;
alter table app_private.status_transitions force row level security;
comment on table app_private.status_transitions is 'Allowed status changes per table (from_status *new*: allowed initial statuses), and the timestamp column each change stamps.';

-- BEFORE UPDATE OF <status> per row: the change must be allowed; stamps its timestamp.
-- AFTER INSERT per row: the row must start in an allowed status (after row-level security, so a
-- row the caller may not insert at all is refused by RLS first).
-- TG_ARGV[0]: the status column. SECURITY DEFINER to read the transition table, which nobody
-- else may.
create or replace function app_private.tg__status_transition() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_column text := coalesce(tg_argv[0], 'status');
  v_from text := case when tg_op = 'INSERT' then '*new*' else to_jsonb(old) ->> v_column end;
  v_to text := to_jsonb(new) ->> v_column;
  v_stamp text;
begin
  if tg_op = 'UPDATE' and v_from is not distinct from v_to then
    return new;
  end if;
  select t.stamp_column into v_stamp
  from app_private.status_transitions t
  where t.table_name = tg_table_name and t.from_status = v_from and t.to_status = v_to;
  if not found then
    perform app_private.fail('INVALID_TRANSITION', case
      when tg_op = 'INSERT' then format('A new %s cannot start as %s.', app_private.singular_label(tg_table_name), v_to)
      else format('A %s cannot go from %s to %s.', app_private.singular_label(tg_table_name), v_from, v_to)
    end);
  end if;
  if tg_op = 'INSERT' then
    return null;
  end if;
  if v_stamp is not null then
    new := jsonb_populate_record(new, jsonb_build_object(v_stamp, now()));
  end if;
  return new;
end
$$;

-- "client_companies" -> "client company", for messages.
create or replace function app_private.singular_label(table_name text) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select replace(regexp_replace(regexp_replace(table_name, 'ies$', 'y'), '([^s])s$', '\1'), '_', ' ')
$$;

create or replace procedure app_private.attach_status_machine(tbl regclass, status_column text default 'status')
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
begin
  if not exists (select from app_private.status_transitions where table_name = v_rel) then
    raise exception 'no status transitions defined for %', v_rel;
  end if;
  execute format('drop trigger if exists %I on %s', format('tg_%s__status_transition', v_rel), tbl);
  execute format('create trigger %I before update of %I on %s for each row execute function app_private.tg__status_transition(%L)',
    format('tg_%s__status_transition', v_rel), status_column, tbl, status_column);
  execute format('drop trigger if exists %I on %s', format('tg_%s__status_initial', v_rel), tbl);
  execute format('create trigger %I after insert on %s for each row execute function app_private.tg__status_transition(%L)',
    format('tg_%s__status_initial', v_rel), tbl, status_column);
end
$$;

-- Records that freeze once they leave their editable statuses (a sent invoice, a signed
-- contract, an approved bill): app_private.attach_edit_lock(table, array['draft']) adds a BEFORE
-- UPDATE trigger refusing, with NOT_EDITABLE, any change to a column the visitor may update
-- while the row's status is not one of `editable_statuses`. The columns are those granted to
-- the visitor when it is attached (so call it after make_tenant_table), plus `also_locked`
-- (e.g. deleted_at: a sent invoice cannot be deleted). Changes the lifecycle functions and
-- triggers make (status, totals, stamps) are not the visitor's columns and pass.
create or replace function app_private.tg__edit_lock() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_status text := to_jsonb(old) ->> tg_argv[0];
  v_editable text[] := string_to_array(tg_argv[1], ',');
  v_locked text[] := string_to_array(tg_argv[2], ',');
  v_old jsonb := to_jsonb(old);
  v_new jsonb := to_jsonb(new);
  v_column text;
begin
  if v_status = any (v_editable) or app_private.erasing(new.organization_id) then
    return new; -- (an erasure redacts text of finished records too: sql/functions/erasure.sql)
  end if;
  foreach v_column in array v_locked loop
    if v_old -> v_column is distinct from v_new -> v_column then
      perform app_private.fail('NOT_EDITABLE', format('A %s that is %s can no longer be changed (%s).',
        app_private.singular_label(tg_table_name), v_status, v_column));
    end if;
  end loop;
  return new;
end
$$;

create or replace procedure app_private.attach_edit_lock(tbl regclass, editable_statuses text[], status_column text default 'status', also_locked text[] default '{}')
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
  v_locked text[];
begin
  select array_agg(attname::text order by attnum) into v_locked
  from pg_attribute
  where attrelid = tbl and attnum > 0 and not attisdropped
    and (has_column_privilege(':DATABASE_VISITOR', tbl, attname, 'UPDATE') or attname = any (also_locked));
  execute format('drop trigger if exists %I on %s', format('tg_%s__edit_lock', v_rel), tbl);
  execute format('create trigger %I before update on %s for each row execute function app_private.tg__edit_lock(%L, %L, %L)',
    format('tg_%s__edit_lock', v_rel), tbl, status_column, array_to_string(editable_statuses, ','), array_to_string(v_locked, ','));
end
$$;
--! EndIncluded functions/status_machine.sql
--! Included functions/line_items.sql
-- Line items (proposal_line_items, invoice_line_items) and the totals of their documents.
--
-- A line's amount is a generated column (quantity × unit price, rounded to cents). The
-- document's subtotal is kept by this trigger: after every insert, update or delete of a line
-- it is recomputed from the lines, so it can never drift and is never typed in (the visitor
-- has no privilege on it). Tax, total and balance are generated columns of the document.
-- Lines may only change while their document is a draft (NOT_EDITABLE otherwise).
-- Lock order (sql/functions/lock_order.sql): a line inserted or moved has already locked its
-- document (tg_<lines>__lock_parent, attached with the totals), so the lock taken here is held.
--
-- TG_ARGV[0]: the document table (e.g. app_public.invoices); TG_ARGV[1]: the line's column
-- naming it (e.g. invoice_id). SECURITY DEFINER: the visitor may not write subtotal itself.
create or replace function app_private.tg__line_item_totals() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_parent regclass := tg_argv[0]::regclass;
  v_fk text := tg_argv[1];
  v_row jsonb;
  v_status text;
  v_org uuid;
  v_doc uuid;
begin
  if tg_op = 'UPDATE' and (to_jsonb(old) - 'updated_at') = (to_jsonb(new) - 'updated_at') then
    return null; -- nothing changed
  end if;
  if app_private.erasing(coalesce(new.organization_id, old.organization_id)) then
    return null; -- an erasure redacts a description, or deletes the organization (sql/functions/erasure.sql)
  end if;
  foreach v_row in array array_remove(array[
    case when tg_op in ('INSERT', 'UPDATE') then to_jsonb(new) end,
    case when tg_op = 'DELETE' or (tg_op = 'UPDATE' and (to_jsonb(old) ->> v_fk) is distinct from (to_jsonb(new) ->> v_fk)) then to_jsonb(old) end
  ], null) loop
    v_org := (v_row ->> 'organization_id')::uuid;
    v_doc := (v_row ->> v_fk)::uuid;
    -- Lock the document: concurrent line changes of one document are applied one at a time.
    execute format('select status::text from %s where organization_id = $1 and id = $2 for update', v_parent)
      into v_status using v_org, v_doc;
    continue when v_status is null; -- the document itself is being deleted
    if v_status <> 'draft' then
      perform app_private.fail('NOT_EDITABLE', format('The lines of a %s that is %s can no longer be changed.',
        app_private.singular_label((select relname from pg_class where oid = v_parent)), v_status));
    end if;
    execute format(
      'update %1$s d set subtotal = (select coalesce(sum(l.amount), 0) from %2$s l where l.organization_id = $1 and l.%3$I = $2)
       where d.organization_id = $1 and d.id = $2',
      v_parent, format('%I.%I', tg_table_schema, tg_table_name), v_fk)
      using v_org, v_doc;
  end loop;
  return null;
end
$$;

create or replace procedure app_private.attach_line_item_totals(tbl regclass, document regclass, document_column text)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
begin
  execute format('drop trigger if exists %I on %s', format('tg_%s__totals', v_rel), tbl);
  execute format('create trigger %I after insert or update or delete on %s for each row execute function app_private.tg__line_item_totals(%L, %L)',
    format('tg_%s__totals', v_rel), tbl, document::text, document_column);
  call app_private.attach_parent_lock(tbl, document, document_column);
end
$$;
--! EndIncluded functions/line_items.sql
--! Included functions/delivery.sql
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

-- Time entries. BEFORE INSERT: a rate left at 0 takes the engagement's hourly rate.
-- AFTER INSERT OR UPDATE (so row-level security has admitted the row first): the task must belong
-- to the entry's engagement; once invoiced (invoice_id set) an entry no longer changes
-- (NOT_EDITABLE) until its invoice is cancelled. SECURITY DEFINER: reads engagements, projects
-- and tasks whatever the caller may read.
create or replace function app_private.tg__time_entry_rate() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if new.rate = 0 then
    new.rate := coalesce((
      select e.hourly_rate from app_public.engagements e where e.organization_id = new.organization_id and e.id = new.engagement_id
    ), 0);
  end if;
  return new;
end
$$;

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

drop trigger if exists tg_time_entries__rate on app_public.time_entries;
create trigger tg_time_entries__rate before insert on app_public.time_entries
  for each row execute function app_private.tg__time_entry_rate();
drop trigger if exists tg_time_entries__rules on app_public.time_entries;
create trigger tg_time_entries__rules after insert or update on app_public.time_entries
  for each row execute function app_private.tg__time_entry_rules();
--! EndIncluded functions/delivery.sql
--! Included functions/members.sql
-- Membership rules that policies alone cannot express. Who may change members at all is in the
-- policies on app_public.organization_members (owners and admins); these triggers add:
--   * only an owner may grant the owner role, or change or remove an owner       (OWNER_REQUIRED)
--   * an organization always keeps at least one owner, even under concurrency     (LAST_OWNER)

-- BEFORE UPDATE OR DELETE on organization_members, per row. SECURITY DEFINER so that it sees
-- (and locks) every owner of the organization, whatever the acting user can see; nobody can call
-- it directly. Changes made through the API or by the worker (their session logs in as the
-- authenticator or the worker) are checked; maintenance by the owner role is trusted.
create or replace function app_private.tg_organization_members__guard_owners() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_checked boolean := session_user in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name);
begin
  if tg_op = 'DELETE' and app_private.erasing(old.organization_id, 'organization') then
    return old; -- the purge of a deleted organization (sql/functions/organization_deletion.sql)
  end if;
  if tg_op = 'UPDATE' and (new.user_id <> old.user_id or new.organization_id <> old.organization_id) then
    perform app_private.fail('IMMUTABLE', 'A membership cannot be moved to another user or organization.');
  end if;
  if v_checked and (old.role = 'owner' or (tg_op = 'UPDATE' and new.role = 'owner'))
     and app_public.current_member_role() is distinct from 'owner' then
    perform app_private.fail('OWNER_REQUIRED', 'Only an owner may grant, change or remove the owner role.');
  end if;
  if old.role = 'owner' and (tg_op = 'DELETE' or new.role <> 'owner') then
    -- Lock the organization, so that concurrent changes to its owners queue up, then count.
    perform 1 from app_public.organizations o where o.id = old.organization_id for no key update;
    if not exists (
      select 1 from app_public.organization_members m
      where m.organization_id = old.organization_id and m.role = 'owner' and m.id <> old.id
    ) then
      perform app_private.fail('LAST_OWNER', 'An organization must keep at least one owner; make someone else owner first.');
    end if;
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;
--! EndIncluded functions/members.sql
--! Included functions/organization_deletion.sql
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
  v_pass_deleted bigint;
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
  -- RESTRICT keys, app_private.purge_unreferenced), until a pass deletes nothing.
  loop
    v_pass_deleted := 0;
    for v_table in select app_private.organization_tables() loop
      execute format('delete from %s t where t.organization_id = $1 and %s', v_table, app_private.purge_unreferenced(v_table)) using v_org.id;
      get diagnostics v_n = row_count;
      if v_n > 0 then
        v_pass_deleted := v_pass_deleted + v_n;
        v_counts := jsonb_set(v_counts, array[v_table::text], to_jsonb(coalesce((v_counts ->> v_table::text)::bigint, 0) + v_n));
      end if;
    end loop;
    exit when v_pass_deleted = 0;
  end loop;
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
--! EndIncluded functions/organization_deletion.sql
--! Included errors.sql
-- Error codes: the one list of errors a client can get, each with a stable code, the SQLSTATE
-- that carries it out of PostgreSQL, and the HTTP status the API answers with.
-- SQL raises them by name: `perform app_private.fail('LAST_OWNER', 'An organization must keep an owner');`
-- The API maps the SQLSTATE back to the code (src/http/errors.ts loads this table at start), and
-- docs/ERRORS.md lists the same rows (tests/docs.test.ts checks they agree).
-- Re-included by later migrations whenever a code is added; every statement is idempotent.

create table if not exists app_private.error_codes (
  code text primary key check (code ~ '^[A-Z][A-Z_]*$'),
  sqlstate text not null unique check (sqlstate ~ '^[0-9A-Z]{5}$'),
  http_status int not null check (http_status between 400 and 599),
  description text not null
);
alter table app_private.error_codes enable row level security;
alter table app_private.error_codes force row level security;
comment on table app_private.error_codes is 'Stable error codes: SQLSTATE carried by PostgreSQL, code and HTTP status returned by the API.';

insert into app_private.error_codes (code, sqlstate, http_status, description) values
  -- Raised by PostgreSQL itself
  ('FORBIDDEN', '42501', 403, 'The current user may not do this (permission denied or row-level security).'),
  ('ALREADY_EXISTS', '23505', 409, 'A record with these unique values already exists.'),
  ('INVALID_REFERENCE', '23503', 422, 'A referenced record does not exist in this organization, or is still referenced.'),
  ('CONSTRAINT_VIOLATION', '23514', 422, 'A value breaks a rule of the data model (check constraint).'),
  ('REQUIRED_VALUE', '23502', 422, 'A required value is missing.'),
  ('INVALID_INPUT', '22P02', 400, 'A value has the wrong format (e.g. not a UUID or number).'),
  ('INVALID_VALUE', '22023', 400, 'A value is outside what is allowed.'),
  ('VALUE_TOO_LONG', '22001', 400, 'A text value is longer than allowed.'),
  ('RETRY', '40001', 409, 'The transaction conflicted with another one; retry it.'),
  ('DEADLOCK', '40P01', 409, 'The transaction deadlocked with another one; retry it.'),
  -- Raised by Atrium's functions and triggers (class AT)
  ('UNAUTHENTICATED', 'AT401', 401, 'Sign in first: this needs a signed-in user.'),
  ('NO_ORGANIZATION', 'AT402', 403, 'Choose an organization first (switchOrganization): this needs one.'),
  ('NOT_PERMITTED', 'AT403', 403, 'Your role in this organization does not allow this.'),
  ('NOT_FOUND', 'AT404', 404, 'No such record in this organization (or it is not visible to you).'),
  ('INVALID_CREDENTIALS', 'AT410', 401, 'Email or password is wrong.'),
  ('INVALID_REFRESH_TOKEN', 'AT411', 401, 'The refresh token is unknown, expired, revoked or was already used; sign in again.'),
  ('EMAIL_TAKEN', 'AT412', 409, 'An account with this email already exists.'),
  ('WEAK_PASSWORD', 'AT413', 400, 'The password must be 8 to 72 characters long.'),
  ('INVALID_EMAIL', 'AT414', 400, 'The email address is not valid.'),
  ('TOO_MANY_ATTEMPTS', 'AT417', 429, 'Too many failed sign-ins for this account from your network address: wait before the next attempt (extensions.retryAfterSeconds).'),
  ('LAST_OWNER', 'AT420', 409, 'An organization must keep at least one owner.'),
  ('OWNER_REQUIRED', 'AT421', 403, 'Only an owner may grant, change or remove the owner role.'),
  ('INVITATION_INVALID', 'AT422', 404, 'The invitation is unknown, expired, revoked, already used, or for another email.'),
  ('ALREADY_MEMBER', 'AT423', 409, 'This user is already a member of the organization.'),
  ('NOT_RESTORABLE', 'AT430', 409, 'The record is not deleted, or its retention window has passed.'),
  ('IMMUTABLE', 'AT440', 403, 'This record cannot be changed or deleted.'),
  ('INVALID_TRANSITION', 'AT450', 409, 'The record''s status cannot change that way (see app_private.status_transitions).'),
  ('NOT_EDITABLE', 'AT451', 409, 'The record has left its editable status (e.g. a sent invoice, a signed contract) and can no longer be changed.'),
  ('HAS_LIVE_ENGAGEMENTS', 'AT452', 409, 'The client company still has active or on-hold engagements; complete or cancel them first.'),
  ('OVERPAYMENT', 'AT460', 422, 'The payment is larger than the invoice''s balance.'),
  ('NOT_PAYABLE', 'AT461', 409, 'The invoice does not take payments in its status (only sent, viewed or overdue invoices do).'),
  ('EMPTY_DOCUMENT', 'AT462', 422, 'A proposal or invoice needs at least one line and a total above zero before it is sent.'),
  ('EXPIRED', 'AT463', 409, 'The proposal''s validity date has passed.'),
  ('INVALID_EVENT_TYPE', 'AT470', 422, 'A webhook endpoint names an event type that does not exist (see webhookEventTypes).'),
  ('NOT_RETRYABLE', 'AT471', 409, 'Only failed or cancelled deliveries of an enabled endpoint, whose payload is still kept, can be sent again.'),
  ('UNKNOWN_TASK', 'AT472', 422, 'The task is not one that other services may queue (see app_private.producer_tasks).'),
  ('INTERNAL', 'AT500', 500, 'Unexpected error.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- Raise a catalogued error. Unknown codes are a bug and raise INTERNAL with the code in the message.
create or replace function app_private.fail(code text, message text) returns void
language plpgsql stable security definer
set search_path = pg_catalog
as $$
declare
  v_sqlstate text;
begin
  select e.sqlstate into v_sqlstate from app_private.error_codes e where e.code = fail.code;
  if v_sqlstate is null then
    raise exception 'unknown error code %: %', code, message using errcode = 'AT500';
  end if;
  raise exception using message = message, errcode = v_sqlstate;
end
$$;
comment on function app_private.fail(text, text) is 'Raises the catalogued error `code` (app_private.error_codes) with a human message.';

-- Password reset (sql/functions/password_reset.sql).
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('RESET_TOKEN_INVALID', 'AT415', 400, 'The password-reset token is unknown, was replaced by a newer one, or was already used; ask for a new one.'),
  ('RESET_TOKEN_EXPIRED', 'AT416', 400, 'The password-reset token has expired; ask for a new one.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- The API edge: a request's statements run at most STATEMENT_TIMEOUT_MS (set per transaction
-- by the API, src/http/auth.ts); PostgreSQL cancels a longer one with 57014.
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('QUERY_TIMEOUT', '57014', 503, 'The request ran longer than the server allows (STATEMENT_TIMEOUT_MS) and was stopped; ask for less, or retry later.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- Permissions that cannot be used to gain more (sql/functions/permissions.sql, sql/functions/copies.sql).
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('PERMISSION_NOT_HELD', 'AT541', 403, 'This would pass on permissions (or data) you do not hold yourself: through roles and webhooks you may grant only what you hold.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;

-- Input values (sql/functions/value_domains.sql): errors PostgreSQL raises itself about a value
-- it cannot take answer a catalogued code too, never INTERNAL.
-- More SQLSTATEs for a code: the catalogue above holds one SQLSTATE per code; these map further
-- ones onto existing codes, each with the message the API answers (PostgreSQL's own would quote
-- SQL). src/http/errors.ts loads both; docs/ERRORS.md lists them (tests/docs.test.ts).
create table if not exists app_private.error_sqlstates (
  sqlstate text primary key check (sqlstate ~ '^[0-9A-Z]{5}$'),
  code text not null references app_private.error_codes (code),
  message text not null
);
create index if not exists error_sqlstates_code_idx on app_private.error_sqlstates (code);
alter table app_private.error_sqlstates enable row level security;
alter table app_private.error_sqlstates force row level security;
comment on table app_private.error_sqlstates is 'SQLSTATEs PostgreSQL raises about values it cannot take, mapped onto catalogued codes (app_private.error_codes), with the message the API answers.';

insert into app_private.error_sqlstates (sqlstate, code, message) values
  ('22003', 'INVALID_VALUE', 'A number is too large for its field (or not finite).'),
  ('22008', 'INVALID_VALUE', 'A date or time does not exist (e.g. 2024-02-30) or is out of range.'),
  ('22007', 'INVALID_INPUT', 'A date or time has the wrong format (use YYYY-MM-DD, or ISO 8601 for a point in time).'),
  ('22021', 'INVALID_VALUE', 'A text contains a character that cannot be stored (the NUL character, \u0000).'),
  ('22P05', 'INVALID_VALUE', 'A text contains a character that cannot be stored (the NUL character, \u0000).')
on conflict (sqlstate) do update set code = excluded.code, message = excluded.message;

-- Domain rules: a value outside a domain (app_public.money_amount, …) is refused by PostgreSQL
-- with SQLSTATE 23514 naming the domain and the constraint; the API answers this code and
-- message instead of CONSTRAINT_VIOLATION. Every CHECK of an app_public domain has a row here
-- (sql/checks/domain_rules_catalogued.sql).
create table if not exists app_private.domain_rules (
  domain_name text not null check (domain_name ~ '^[a-z_]+\.[a-z_]+$'),
  constraint_name text not null,
  code text not null references app_private.error_codes (code),
  message text not null,
  primary key (domain_name, constraint_name)
);
create index if not exists domain_rules_code_idx on app_private.domain_rules (code);
alter table app_private.domain_rules enable row level security;
alter table app_private.domain_rules force row level security;
comment on table app_private.domain_rules is 'The code and message the API answers when a value breaks a rule (CHECK) of an app_public domain.';

insert into app_private.domain_rules (domain_name, constraint_name, code, message) values
  ('app_public.money_amount', 'money_amount_finite', 'INVALID_VALUE', 'An amount of money must be a finite number below 1,000,000,000,000 (with at most two decimals).'),
  ('app_public.quantity', 'quantity_finite', 'INVALID_VALUE', 'A quantity must be a finite number below 10,000,000,000 (with at most two decimals).'),
  ('app_public.percentage', 'percentage_range', 'INVALID_VALUE', 'A percentage must be a number from 0 to 100.'),
  ('app_public.business_date', 'business_date_range', 'INVALID_VALUE', 'A date must be between 1900-01-01 and 2999-12-31.'),
  ('app_public.business_timestamp', 'business_timestamp_range', 'INVALID_VALUE', 'A point in time must be between the years 1900 and 2999.'),
  ('app_public.email_address', 'email_address_format', 'INVALID_EMAIL', 'An email address must look like name@example.com (at most 320 characters, no spaces inside).')
on conflict (domain_name, constraint_name) do update set code = excluded.code, message = excluded.message;

-- Sign-up by email (sql/functions/registration.sql): confirming a registration.
insert into app_private.error_codes (code, sqlstate, http_status, description) values
  ('REGISTRATION_TOKEN_INVALID', 'AT491', 400, 'The confirmation token is unknown, was replaced by a newer one, or was already used; sign up again.'),
  ('REGISTRATION_TOKEN_EXPIRED', 'AT492', 400, 'The confirmation token has expired; sign up again.')
on conflict (code) do update
  set sqlstate = excluded.sqlstate, http_status = excluded.http_status, description = excluded.description;
--! EndIncluded errors.sql
--! Included functions/webhooks.sql
-- Webhooks: an organization registers endpoints (URL, event types); every matching domain event
-- is POSTed to them as JSON signed with HMAC-SHA256 by the job `deliver_webhook`
-- (src/worker/tasks/deliver_webhook.ts), with retries and backoff, a delivery log the
-- organization reads, and automatic disabling of an endpoint that keeps failing.
--
-- The path of an event (docs/DATA_FLOWS.md, "Webhooks"):
--   a change commits → its audit trigger enqueued `dispatch_activity` in the same transaction →
--   `dispatch_activity` calls app_private.queue_webhook_deliveries(transaction): the
--   transaction's activity events that are domain events (app_private.webhook_event_rules) become
--   one app_public.webhook_deliveries row per subscribed endpoint — unique per (endpoint, event),
--   so a retried dispatch creates nothing twice — and one `deliver_webhook` job each (job key per
--   delivery) → `deliver_webhook` signs and POSTs it, then records the attempt
--   (app_private.record_webhook_attempt).
--
-- Who may do what: reading endpoints and deliveries needs webhooks.read; creating, changing,
-- deleting endpoints, rotating secrets and retrying deliveries needs webhooks.write (a special
-- permission: owners and admins by default, since an endpoint receives the organization's data).
-- Signing secrets live in app_private.webhook_secrets: shown once, when created or rotated.
-- Idempotent; re-included by later migrations.

-- The catalogue of domain events: which activity events are which webhook events. An `insert`
-- rule matches new rows of the table; a status rule matches rows entering `to_status` (inserted in
-- it, or updated into it from another status).
create table if not exists app_private.webhook_event_rules (
  event_type text primary key check (event_type ~ '^[a-z_]+\.[a-z_]+$'),
  table_name text not null,
  status_column text,
  to_status text,
  description text not null,
  constraint webhook_event_rules_status check ((status_column is null) = (to_status is null))
);
alter table app_private.webhook_event_rules enable row level security;
alter table app_private.webhook_event_rules force row level security;
comment on table app_private.webhook_event_rules is 'Domain events sent to webhooks: new rows of table_name, or rows whose status_column enters to_status.';

insert into app_private.webhook_event_rules (event_type, table_name, status_column, to_status, description) values
  ('client_company.created', 'client_companies', null, null, 'A client company was added.'),
  ('deal.won', 'deals', 'stage', 'won', 'A deal was won.'),
  ('deal.lost', 'deals', 'stage', 'lost', 'A deal was lost.'),
  ('proposal.sent', 'proposals', 'status', 'sent', 'A proposal was sent to the client.'),
  ('proposal.accepted', 'proposals', 'status', 'accepted', 'The client accepted a proposal.'),
  ('proposal.rejected', 'proposals', 'status', 'rejected', 'The client rejected a proposal.'),
  ('contract.signed', 'contracts', 'status', 'signed', 'A contract was signed.'),
  ('engagement.started', 'engagements', null, null, 'An engagement started (a contract was signed).'),
  ('invoice.sent', 'invoices', 'status', 'sent', 'An invoice was sent.'),
  ('invoice.paid', 'invoices', 'status', 'paid', 'An invoice was paid in full.'),
  ('invoice.overdue', 'invoices', 'status', 'overdue', 'An invoice passed its due date unpaid.'),
  ('invoice.cancelled', 'invoices', 'status', 'cancelled', 'An invoice was cancelled.'),
  ('payment.recorded', 'payments', null, null, 'A payment was recorded against an invoice.'),
  ('bill.approved', 'bills', 'status', 'approved', 'A bill was approved for payment.'),
  ('bill.paid', 'bills', 'status', 'paid', 'A bill was paid.')
on conflict (event_type) do update set table_name = excluded.table_name, status_column = excluded.status_column,
  to_status = excluded.to_status, description = excluded.description;

do $$
begin
  if not exists (select from pg_type where typname = 'webhook_event_type' and typnamespace = 'app_public'::regnamespace) then
    create type app_public.webhook_event_type as (event_type text, description text);
  end if;
  if not exists (select from pg_type where typname = 'webhook_endpoint_secret' and typnamespace = 'app_public'::regnamespace) then
    create type app_public.webhook_endpoint_secret as (endpoint_id uuid, secret text);
  end if;
end
$$;
comment on type app_public.webhook_event_type is 'A domain event a webhook endpoint can subscribe to.';
comment on type app_public.webhook_endpoint_secret is 'A webhook endpoint''s signing secret, shown only once (when created or rotated).';

create or replace function app_public.webhook_event_types() returns setof app_public.webhook_event_type
language sql stable security definer
set search_path = pg_catalog
as $$
  select row(r.event_type, r.description)::app_public.webhook_event_type
  from app_private.webhook_event_rules r
  order by r.event_type
$$;
comment on function app_public.webhook_event_types() is 'The events webhook endpoints can subscribe to (`*` subscribes to all of them).';

-- Endpoints ---------------------------------------------------------------------------------------

create table if not exists app_public.webhook_endpoints (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  url text not null check (url ~ '^https?://[^\s/?#@]+(/\S*)?$' and length(url) <= 2000),
  description text check (length(description) <= 500),
  event_types text[] not null check (cardinality(event_types) between 1 and 100),
  enabled boolean not null default true,
  disable_after_failures integer not null default 25 check (disable_after_failures between 1 and 1000),
  consecutive_failures integer not null default 0 check (consecutive_failures >= 0),
  disabled_at timestamptz,
  disabled_reason text,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id)
);
create index if not exists webhook_endpoints_organization_id_created_at_idx on app_public.webhook_endpoints (organization_id, created_at);
comment on table app_public.webhook_endpoints is E'@behavior -insert -delete\nA URL that receives the organization''s domain events as signed JSON POSTs. Create one with createWebhookEndpoint (which returns its signing secret once).';
comment on column app_public.webhook_endpoints.event_types is 'The event types it receives (see webhookEventTypes), or `*` for all.';
comment on column app_public.webhook_endpoints.enabled is 'Disabled endpoints receive nothing. Set automatically after `disable_after_failures` failed attempts in a row (or a 410 Gone answer); set it back to true to resume.';
comment on column app_public.webhook_endpoints.consecutive_failures is 'Failed delivery attempts since the last success.';

-- Signing secrets: never in app_public, never in the activity log.
create table if not exists app_private.webhook_secrets (
  organization_id uuid not null,
  endpoint_id uuid not null,
  secret text not null,
  created_at timestamptz not null default now(),
  primary key (organization_id, endpoint_id),
  foreign key (organization_id, endpoint_id) references app_public.webhook_endpoints on delete cascade
);
alter table app_private.webhook_secrets enable row level security;
alter table app_private.webhook_secrets force row level security;
comment on table app_private.webhook_secrets is 'The HMAC-SHA256 signing secret of each webhook endpoint (readable by SECURITY DEFINER functions only).';

-- Event types must be known (or `*`); re-enabling an endpoint clears its failure record, disabling
-- it by hand stamps when. No other rows are read, so this may run BEFORE the row is written.
create or replace function app_private.tg_webhook_endpoints__check() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_unknown text;
begin
  select string_agg(t, ', ') into v_unknown
  from unnest(new.event_types) as t
  where t <> '*' and not exists (select from app_private.webhook_event_rules r where r.event_type = t);
  if v_unknown is not null then
    perform app_private.fail('INVALID_EVENT_TYPE', format('Unknown webhook event type(s): %s. See webhookEventTypes for the list, or use *.', v_unknown));
  end if;
  if tg_op = 'UPDATE' and new.enabled and not old.enabled then
    new.consecutive_failures := 0;
    new.disabled_at := null;
    new.disabled_reason := null;
  elsif tg_op = 'UPDATE' and not new.enabled and old.enabled and new.disabled_at is null then
    new.disabled_at := now();
    new.disabled_reason := coalesce(new.disabled_reason, 'Disabled by a member.');
  end if;
  return new;
end
$$;
revoke all on function app_private.tg_webhook_endpoints__check() from public;
drop trigger if exists tg_webhook_endpoints__check on app_public.webhook_endpoints;
create trigger tg_webhook_endpoints__check before insert or update on app_public.webhook_endpoints
  for each row execute function app_private.tg_webhook_endpoints__check();

call app_private.make_tenant_table('app_public.webhook_endpoints', 'webhooks',
  soft_delete_as => 'webhook_endpoint',
  readonly_columns => array['consecutive_failures', 'disabled_at', 'disabled_reason', 'created_by'],
  insertable => false);

-- A new signing secret: "whsec_" and 32 random bytes, base64url.
create or replace function app_private.new_webhook_secret() returns text
language sql volatile
set search_path = pg_catalog
as $$
  select 'whsec_' || app_private.random_token()
$$;
revoke all on function app_private.new_webhook_secret() from public;

create or replace function app_public.create_webhook_endpoint(url text, event_types text[], description text default null)
returns app_public.webhook_endpoint_secret
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_endpoint app_public.webhook_endpoints;
  v_secret text := app_private.new_webhook_secret();
begin
  perform app_private.require_permission('webhooks.write', 'add webhook endpoints');
  insert into app_public.webhook_endpoints (organization_id, url, event_types, description, created_by)
  values (app_public.current_org_id(), create_webhook_endpoint.url, create_webhook_endpoint.event_types,
    create_webhook_endpoint.description, app_public.current_user_id())
  returning * into v_endpoint;
  insert into app_private.webhook_secrets (organization_id, endpoint_id, secret) values (v_endpoint.organization_id, v_endpoint.id, v_secret);
  return row(v_endpoint.id, v_secret)::app_public.webhook_endpoint_secret;
end
$$;
comment on function app_public.create_webhook_endpoint(text, text[], text) is 'Registers a webhook endpoint for the given event types (or *). Returns its signing secret, shown only this once.';

create or replace function app_public.rotate_webhook_secret(id uuid) returns app_public.webhook_endpoint_secret
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_secret text := app_private.new_webhook_secret();
  v_org uuid;
begin
  perform app_private.require_permission('webhooks.write', 'rotate webhook secrets');
  select e.organization_id into v_org from app_public.webhook_endpoints e
  where e.organization_id = app_public.current_org_id() and e.id = rotate_webhook_secret.id and e.deleted_at is null;
  if v_org is null then
    perform app_private.fail('NOT_FOUND', 'No such webhook endpoint in this organization.');
  end if;
  insert into app_private.webhook_secrets (organization_id, endpoint_id, secret) values (v_org, rotate_webhook_secret.id, v_secret)
  on conflict (organization_id, endpoint_id) do update set secret = excluded.secret, created_at = now();
  return row(rotate_webhook_secret.id, v_secret)::app_public.webhook_endpoint_secret;
end
$$;
comment on function app_public.rotate_webhook_secret(uuid) is 'Replaces a webhook endpoint''s signing secret; returns the new one, shown only this once. Deliveries from now on are signed with it.';

-- Deliveries --------------------------------------------------------------------------------------

create table if not exists app_public.webhook_deliveries (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  endpoint_id uuid not null,
  event_type text not null,
  activity_event_id uuid,
  payload jsonb not null,
  status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed', 'cancelled')),
  attempts integer not null default 0 check (attempts >= 0),
  last_attempt_at timestamptz,
  response_code integer,
  last_error text,
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  foreign key (organization_id, endpoint_id) references app_public.webhook_endpoints on delete cascade,
  constraint webhook_deliveries_one_per_event unique (organization_id, endpoint_id, activity_event_id, event_type)
);
create index if not exists webhook_deliveries_organization_id_created_at_idx on app_public.webhook_deliveries (organization_id, created_at desc);
create index if not exists webhook_deliveries_organization_id_status_idx on app_public.webhook_deliveries (organization_id, status);
comment on table app_public.webhook_deliveries is E'@behavior -insert -update -delete\nThe delivery log: one row per event sent (or being sent) to an endpoint, with its status, attempts, last error and the endpoint''s last response code.';
comment on column app_public.webhook_deliveries.status is 'pending (being delivered or waiting to retry), succeeded (a 2xx answer), failed (gave up after the last attempt), cancelled (the endpoint was disabled or deleted first).';
comment on column app_public.webhook_deliveries.payload is 'The JSON body POSTed (the same on every attempt; its `id` is this delivery''s id, for receivers to ignore repeats). Null once retention removed it (payload_removed_at).';

-- Retention (sql/functions/retention_growing.sql): past the organization's
-- webhook_payload_retention_days a finished delivery keeps its row (status, times, attempts,
-- response code: the delivery log) but loses its payload and last_error, and payload_removed_at
-- says when. A pending delivery keeps both, whatever its age.
alter table app_public.webhook_deliveries alter column payload drop not null;
alter table app_public.webhook_deliveries add column if not exists payload_removed_at timestamptz;
comment on column app_public.webhook_deliveries.payload_removed_at is 'When the payload and last error were removed, the organization''s webhook_payload_retention_days after the event (null: still kept). Such a delivery cannot be sent again.';
alter table app_public.webhook_deliveries drop constraint if exists webhook_deliveries_payload_kept_or_removed;
alter table app_public.webhook_deliveries add constraint webhook_deliveries_payload_kept_or_removed
  check ((payload is null) = (payload_removed_at is not null)) not valid;
alter table app_public.webhook_deliveries validate constraint webhook_deliveries_payload_kept_or_removed;
-- The deliveries whose payload is still kept, oldest first: where the retention looks, without
-- walking past the ones it has already stripped.
create index if not exists webhook_deliveries_payload_kept_idx on app_public.webhook_deliveries (organization_id, created_at)
  where payload is not null;

-- The payload is large and the same as the event it carries: left out of the activity log. So is
-- the last error: it may quote the endpoint's URL or its answer, which retention removes too.
call app_private.make_tenant_table('app_public.webhook_deliveries', 'webhooks',
  secret_columns => array['payload', 'last_error'], insertable => false, updatable => false);

-- The job for one delivery: a job key per delivery, so queueing it twice runs it once; a fair
-- priority, so one organization's flood of events does not hold up another's.
-- (plpgsql: the job queue's schema is installed after the migrations.)
create or replace function app_private.enqueue_webhook_delivery(organization_id uuid, delivery_id uuid) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  perform graphile_worker.add_job(
    'deliver_webhook',
    json_build_object('organization_id', organization_id, 'delivery_id', delivery_id),
    job_key => 'deliver_webhook:' || delivery_id,
    max_attempts => 10,
    priority => app_private.fair_job_priority(organization_id) -- sql/functions/jobs.sql
  );
end
$$;
revoke all on function app_private.enqueue_webhook_delivery(uuid, uuid) from public;

-- Called by dispatch_activity (worker, inside the organization): the transaction's domain events
-- become deliveries to the subscribed, enabled endpoints, each with its job. Returns how many
-- deliveries were created (0 when a retried dispatch finds them already there).
create or replace function app_private.queue_webhook_deliveries(transaction_id bigint) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_count integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker queues webhook deliveries.');
  elsif v_org is null then
    perform app_private.fail('NO_ORGANIZATION', 'Webhook deliveries are queued inside one organization (app.org_id).');
  end if;
  with events as (
    select e.id, r.event_type, e.occurred_at, e.table_name, e.record_id, e.new_values,
      case when e.action = 'update' then (
        select jsonb_object_agg(o.key, o.value) from jsonb_each(e.old_values) o
        where o.key <> 'updated_at' and o.value is distinct from e.new_values -> o.key
      ) end as previous
    from app_public.activity_events e
    join app_private.webhook_event_rules r on r.table_name = e.table_name
    where e.organization_id = v_org
      and e.transaction_id = queue_webhook_deliveries.transaction_id
      and (
        (r.to_status is null and e.action = 'insert')
        or (r.to_status is not null and e.new_values ->> r.status_column = r.to_status and (
          e.action = 'insert'
          or (e.action = 'update' and e.old_values ->> r.status_column is distinct from r.to_status)
        ))
      )
  ),
  deliveries as (
    insert into app_public.webhook_deliveries (organization_id, id, endpoint_id, event_type, activity_event_id, payload)
    select v_org, d.id, w.id, ev.event_type, ev.id,
      jsonb_build_object(
        'id', d.id,
        'type', ev.event_type,
        'created_at', ev.occurred_at,
        'organization_id', v_org,
        'data', jsonb_build_object('table', ev.table_name, 'id', ev.record_id, 'object', ev.new_values, 'previous', ev.previous)
      )
    from events ev
    join app_public.webhook_endpoints w on w.organization_id = v_org and w.enabled and w.deleted_at is null
      and (ev.event_type = any (w.event_types) or '*' = any (w.event_types))
      and ev.occurred_at >= w.created_at -- an endpoint receives what happens after it was registered
    cross join lateral (select gen_random_uuid() as id) d
    on conflict on constraint webhook_deliveries_one_per_event do nothing
    returning organization_id, id
  )
  select count(*)::integer into v_count
  from deliveries d, lateral app_private.enqueue_webhook_delivery(d.organization_id, d.id);
  return v_count;
end
$$;
revoke all on function app_private.queue_webhook_deliveries(bigint) from public;
grant execute on function app_private.queue_webhook_deliveries(bigint) to :DATABASE_WORKER;

-- What deliver_webhook needs for one delivery (worker, inside the organization): the delivery,
-- its endpoint's URL, state and signing secret. No row: the delivery does not exist (here).
create or replace function app_private.webhook_delivery_target(delivery_id uuid)
returns table (status text, attempts integer, url text, endpoint_live boolean, secret text, event_type text, payload jsonb)
language plpgsql stable security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker delivers webhooks.');
  end if;
  return query
    select d.status, d.attempts, w.url, w.enabled and w.deleted_at is null, s.secret, d.event_type, d.payload
    from app_public.webhook_deliveries d
    join app_public.webhook_endpoints w on w.organization_id = d.organization_id and w.id = d.endpoint_id
    join app_private.webhook_secrets s on s.organization_id = d.organization_id and s.endpoint_id = d.endpoint_id
    where d.organization_id = app_public.current_org_id() and d.id = webhook_delivery_target.delivery_id;
end
$$;
revoke all on function app_private.webhook_delivery_target(uuid) from public;
grant execute on function app_private.webhook_delivery_target(uuid) to :DATABASE_WORKER;

-- Records one attempt of a pending delivery (worker, inside the organization):
--   outcome 'succeeded'  a 2xx answer: the delivery is done, the endpoint's failure count resets;
--   outcome 'failed'     anything else: attempts + 1 and the error; the endpoint's consecutive
--                        failures + 1, and at `disable_after_failures` (or on `gone`, a 410
--                        answer) the endpoint is disabled and its pending deliveries cancelled;
--                        `final` (the job's last attempt) marks the delivery failed;
--   outcome 'cancelled'  the endpoint was disabled or deleted before the attempt.
-- Returns the delivery's status afterwards ('pending' means: retry).
create or replace function app_private.record_webhook_attempt(
  delivery_id uuid, outcome text, response_code integer default null, error text default null,
  final boolean default false, gone boolean default false
) returns text
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_delivery app_public.webhook_deliveries;
  v_endpoint app_public.webhook_endpoints;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker delivers webhooks.');
  end if;
  if outcome not in ('succeeded', 'failed', 'cancelled') then
    raise exception 'unknown outcome %', outcome using errcode = '22023';
  end if;
  select * into v_delivery from app_public.webhook_deliveries d
  where d.organization_id = v_org and d.id = record_webhook_attempt.delivery_id
  for update;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such webhook delivery in this organization.');
  end if;
  if v_delivery.status <> 'pending' then
    return v_delivery.status; -- recorded already (a retried job): change nothing
  end if;

  if outcome = 'cancelled' then
    update app_public.webhook_deliveries d set status = 'cancelled', last_error = coalesce(record_webhook_attempt.error, 'The endpoint is disabled or deleted.')
    where d.organization_id = v_org and d.id = v_delivery.id;
    return 'cancelled';
  end if;

  update app_public.webhook_deliveries d set
    attempts = d.attempts + 1,
    last_attempt_at = now(),
    response_code = record_webhook_attempt.response_code,
    last_error = case when outcome = 'failed' then left(record_webhook_attempt.error, 2000) end,
    delivered_at = case when outcome = 'succeeded' then now() end,
    status = case when outcome = 'succeeded' then 'succeeded' when final then 'failed' else 'pending' end
  where d.organization_id = v_org and d.id = v_delivery.id
  returning * into v_delivery;

  update app_public.webhook_endpoints w set
    consecutive_failures = case when outcome = 'succeeded' then 0 else w.consecutive_failures + 1 end
  where w.organization_id = v_org and w.id = v_delivery.endpoint_id
  returning * into v_endpoint;

  if outcome = 'failed' and v_endpoint.enabled and (gone or v_endpoint.consecutive_failures >= v_endpoint.disable_after_failures) then
    update app_public.webhook_endpoints w set enabled = false, disabled_at = now(),
      disabled_reason = case when gone then 'The endpoint answered 410 Gone.'
        else format('%s delivery attempts failed in a row (last: %s).', w.consecutive_failures, left(record_webhook_attempt.error, 500)) end
    where w.organization_id = v_org and w.id = v_endpoint.id;
    update app_public.webhook_deliveries d set status = 'cancelled', last_error = coalesce(d.last_error, 'The endpoint was disabled.')
    where d.organization_id = v_org and d.endpoint_id = v_endpoint.id and d.status = 'pending' and d.id <> v_delivery.id;
    if v_delivery.status = 'pending' then
      update app_public.webhook_deliveries d set status = 'failed' where d.organization_id = v_org and d.id = v_delivery.id
      returning * into v_delivery;
    end if;
  end if;
  return v_delivery.status;
end
$$;
revoke all on function app_private.record_webhook_attempt(uuid, text, integer, text, boolean, boolean) from public;
grant execute on function app_private.record_webhook_attempt(uuid, text, integer, text, boolean, boolean) to :DATABASE_WORKER;

-- Members: send a delivery again, or a test event -------------------------------------------------

create or replace function app_public.retry_webhook_delivery(id uuid) returns app_public.webhook_deliveries
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_delivery app_public.webhook_deliveries;
begin
  perform app_private.require_permission('webhooks.write', 'retry webhook deliveries');
  select * into v_delivery from app_public.webhook_deliveries d
  where d.organization_id = app_public.current_org_id() and d.id = retry_webhook_delivery.id
    and d.source_table = any (app_private.readable_activity_tables()) -- sql/functions/copies.sql
  for update;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such webhook delivery in this organization.');
  elsif v_delivery.status not in ('failed', 'cancelled') then
    perform app_private.fail('NOT_RETRYABLE', format('Only failed or cancelled deliveries can be retried; this one is %s.', v_delivery.status));
  elsif v_delivery.payload_removed_at is not null then
    perform app_private.fail('NOT_RETRYABLE', 'This delivery''s payload was removed after the organization''s webhook payload retention window; it cannot be sent again.');
  elsif not exists (
    select from app_public.webhook_endpoints w
    where w.organization_id = v_delivery.organization_id and w.id = v_delivery.endpoint_id and w.enabled and w.deleted_at is null
  ) then
    perform app_private.fail('NOT_RETRYABLE', 'The endpoint is disabled or deleted; enable it first.');
  end if;
  update app_public.webhook_deliveries d set status = 'pending', last_error = null
  where d.organization_id = v_delivery.organization_id and d.id = v_delivery.id
  returning * into v_delivery;
  perform app_private.enqueue_webhook_delivery(v_delivery.organization_id, v_delivery.id);
  return v_delivery;
end
$$;
comment on function app_public.retry_webhook_delivery(uuid) is 'Sends a failed or cancelled delivery again (its endpoint must be enabled).';

create or replace function app_public.send_test_webhook(endpoint_id uuid) returns app_public.webhook_deliveries
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_endpoint app_public.webhook_endpoints;
  v_delivery app_public.webhook_deliveries;
  v_id uuid := gen_random_uuid();
begin
  perform app_private.require_permission('webhooks.write', 'send test webhooks');
  select * into v_endpoint from app_public.webhook_endpoints w
  where w.organization_id = app_public.current_org_id() and w.id = send_test_webhook.endpoint_id and w.deleted_at is null;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such webhook endpoint in this organization.');
  elsif not v_endpoint.enabled then
    perform app_private.fail('NOT_RETRYABLE', 'The endpoint is disabled; enable it first.');
  end if;
  insert into app_public.webhook_deliveries (organization_id, id, endpoint_id, event_type, payload)
  values (v_endpoint.organization_id, v_id, v_endpoint.id, 'ping', jsonb_build_object(
    'id', v_id, 'type', 'ping', 'created_at', now(), 'organization_id', v_endpoint.organization_id,
    'data', jsonb_build_object('endpoint_id', v_endpoint.id)))
  returning * into v_delivery;
  perform app_private.enqueue_webhook_delivery(v_delivery.organization_id, v_delivery.id);
  return v_delivery;
end
$$;
comment on function app_public.send_test_webhook(uuid) is 'Sends a `ping` event to an endpoint, to check it receives and verifies deliveries.';

do $$
declare
  f text;
begin
  foreach f in array array[
    'app_public.webhook_event_types()',
    'app_public.create_webhook_endpoint(text, text[], text)',
    'app_public.rotate_webhook_secret(uuid)',
    'app_public.retry_webhook_delivery(uuid)',
    'app_public.send_test_webhook(uuid)'
  ] loop
    execute format('revoke all on function %s from public', f);
    execute format('grant execute on function %s to :DATABASE_VISITOR', f);
  end loop;
end
$$;
--! EndIncluded functions/webhooks.sql
--! Included functions/copies.sql
-- Copies of rows read only by the readers of their source. Data leaves its table through side
-- doors: the activity log (old and new values: sql/functions/activity.sql), webhook deliveries
-- (the payload is the row) and webhook endpoints (which receive those payloads). Each door is
-- held to the rule of the table the data comes from, `<area>.read` as recorded in
-- app_private.activity_read_rules (make_tenant_table registers every table's area there):
--
--   * a webhook delivery names its source table (`source_table`, set by the trigger below from
--     its event type; a ping's source is the endpoint itself). Its row — payload, event type,
--     times — and its events in the activity log are read by members holding webhooks.read AND
--     the read permission of the source: a member with webhooks.read alone sees the pings and
--     nothing of deals, invoices, payments or contracts (the standard select policy does this for
--     every table with a source_table column: app_private.create_tenant_policies);
--   * subscribing an endpoint to events (creating it, or changing its URL or event types) needs
--     the read permission of every source table it would receive (`*`: of all of them), or
--     PERMISSION_NOT_HELD: webhooks.write must not be a way to mail oneself the deals.
--   * retrying a delivery finds only the deliveries one may read (sql/functions/webhooks.sql).
-- Emails and jobs are not readable through the API at all (app_private, graphile_worker).
-- Idempotent; re-included by later migrations.

alter table app_public.webhook_deliveries add column if not exists source_table text;
comment on column app_public.webhook_deliveries.source_table is 'The table whose row the payload carries (from the event type; webhook_endpoints for a ping). Only members who may read that table see the delivery.';

-- The source of a delivery: the table of its event type, or the endpoint itself for `ping`.
create or replace function app_private.tg_webhook_deliveries__source() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  new.source_table := coalesce(
    (select r.table_name from app_private.webhook_event_rules r where r.event_type = new.event_type),
    'webhook_endpoints');
  return new;
end
$$;
drop trigger if exists tg_webhook_deliveries__source on app_public.webhook_deliveries;
create trigger tg_webhook_deliveries__source before insert or update of event_type, source_table on app_public.webhook_deliveries
  for each row execute function app_private.tg_webhook_deliveries__source();

-- Deliveries made before they named their source (no audit events: nothing else changes).
do $$
begin
  if exists (select from app_public.webhook_deliveries d where d.source_table is null) then
    alter table app_public.webhook_deliveries disable trigger tg_webhook_deliveries__audit_update;
    update app_public.webhook_deliveries d
    set source_table = coalesce((select r.table_name from app_private.webhook_event_rules r where r.event_type = d.event_type), 'webhook_endpoints')
    where d.source_table is null;
    alter table app_public.webhook_deliveries enable trigger tg_webhook_deliveries__audit_update;
  end if;
end
$$;
alter table app_public.webhook_deliveries alter column source_table set not null;

-- The select policy now asks for the source too (it is made for every table with source_table).
call app_private.create_tenant_policies('app_public.webhook_deliveries', 'webhooks', false, insertable => false, updatable => false);

-- An endpoint receives copies of the rows its events carry: who subscribes it must read them.
create or replace function app_private.tg_webhook_endpoints__sources_readable() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_missing text;
begin
  if session_user not in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name)
     or (tg_op = 'UPDATE' and new.url = old.url and new.event_types = old.event_types) then
    return new;
  end if;
  select string_agg(distinct coalesce(rr.permission, format('the %s role', rr.min_role), r.table_name), ', '
    order by coalesce(rr.permission, format('the %s role', rr.min_role), r.table_name)) into v_missing
  from app_private.webhook_event_rules r
  left join app_private.activity_read_rules rr on rr.table_name = r.table_name
  where (r.event_type = any (new.event_types) or '*' = any (new.event_types))
    and r.table_name <> all (app_private.readable_activity_tables());
  if v_missing is not null then
    perform app_private.fail('PERMISSION_NOT_HELD', format(
      'A webhook endpoint receives the rows its events carry: to subscribe it to these events you need %s.', v_missing));
  end if;
  return new;
end
$$;
drop trigger if exists tg_webhook_endpoints__sources_readable on app_public.webhook_endpoints;
create trigger tg_webhook_endpoints__sources_readable before insert or update of url, event_types on app_public.webhook_endpoints
  for each row execute function app_private.tg_webhook_endpoints__sources_readable();
--! EndIncluded functions/copies.sql
--! Included functions/jobs.sql
-- The job queue seen from SQL: how producers queue work, how it is shared fairly between
-- organizations, and how operators see and retry what failed. The engine is graphile-worker
-- (schema graphile_worker, owned by the worker role); tasks are in src/worker/tasks/.
-- docs/DATA_FLOWS.md ("Producing jobs", "Fairness", "Failures") explains each with examples.
-- Idempotent; re-included by later migrations. (Functions that name the queue's own schema are
-- plpgsql: that schema is installed after the migrations run.)

-- Tasks other services may queue with app_private.enqueue_job (the rest are queued by Atrium's
-- own triggers and functions).
create table if not exists app_private.producer_tasks (
  task text primary key check (task ~ '^[a-z_]+$'),
  description text not null
);
alter table app_private.producer_tasks enable row level security;
alter table app_private.producer_tasks force row level security;
comment on table app_private.producer_tasks is 'Tasks other services may queue with app_private.enqueue_job().';

insert into app_private.producer_tasks (task, description) values
  ('echo', 'Diagnostics: logs that it ran, with its payload''s keys (checks the path from a producer to the worker; used to measure the queue).')
on conflict (task) do update set description = excluded.description;

-- Fairness: how many jobs each organization queued in the current minute. A job's priority is
-- that count (plus the previous minute's; graphile-worker runs lower numbers first), so each
-- organization's n-th recent job gets priority n: the worker takes the organizations' first jobs,
-- then their second ones, and so on (round robin between organizations, however deep the backlog).
-- An organization that queues 10,000 jobs at once sends them at priorities 0 to 9,999, while another
-- organization's single job still gets priority 0 and runs next. (Capped at 32,000: the column is
-- a smallint.)
create table if not exists app_private.job_enqueue_counts (
  organization_id uuid not null,
  minute timestamptz not null,
  jobs integer not null default 0,
  primary key (organization_id, minute)
);
create index if not exists job_enqueue_counts_minute_idx on app_private.job_enqueue_counts (minute);
alter table app_private.job_enqueue_counts enable row level security;
alter table app_private.job_enqueue_counts force row level security;
comment on table app_private.job_enqueue_counts is 'Jobs queued per organization per minute: the basis of fair priorities (app_private.fair_job_priority). Rows older than a day are removed, a thousand at a time, by the same function now and then, and by the daily retention (app_private.purge_system_rows).';

-- Counts `jobs` more jobs of the organization in the current minute and returns how many it had
-- queued before them, this minute and the previous one: the basis of their fair priorities.
create or replace function app_private.count_queued_jobs(organization_id uuid, jobs integer default 1) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_before integer;
  v_previous integer;
begin
  insert into app_private.job_enqueue_counts as c (organization_id, minute, jobs)
  values (count_queued_jobs.organization_id, date_trunc('minute', now()), count_queued_jobs.jobs)
  on conflict on constraint job_enqueue_counts_pkey do update set jobs = c.jobs + excluded.jobs
  returning c.jobs - count_queued_jobs.jobs into v_before;
  -- The previous minute counts too: a busy organization does not start again at priority 0 when
  -- the clock passes a minute (its backlog is still queued), while a quiet one stays at 0.
  select coalesce(sum(c.jobs), 0) into v_previous
  from app_private.job_enqueue_counts c
  where c.organization_id = count_queued_jobs.organization_id and c.minute = date_trunc('minute', now()) - interval '1 minute';
  -- Now and then (one call in 1,000), up to 1,000 rows older than a day go, oldest first: a
  -- bounded delete in the producer's transaction, which keeps up with one new row per
  -- organization and minute; the daily retention removes what is left
  -- (sql/functions/retention_growing.sql).
  if random() < 0.001 then
    with batch as materialized (
      select o.organization_id, o.minute from app_private.job_enqueue_counts o
      where o.minute < now() - interval '1 day'
      order by o.minute limit 1000 for update skip locked)
    delete from app_private.job_enqueue_counts c using batch b where c.organization_id = b.organization_id and c.minute = b.minute;
  end if;
  return v_before + v_previous;
end
$$;
revoke all on function app_private.count_queued_jobs(uuid, integer) from public;
comment on function app_private.count_queued_jobs(uuid, integer) is 'Adds `jobs` to the organization''s count of queued jobs this minute; returns the jobs it queued before them (this minute and the previous one).';

-- The fair priority of the organization's next job(s) (the first of them, when several).
create or replace function app_private.fair_job_priority(organization_id uuid, jobs integer default 1) returns integer
language sql volatile security definer
set search_path = pg_catalog
as $$
  select least(app_private.count_queued_jobs(organization_id, jobs), 32000)
$$;
revoke all on function app_private.fair_job_priority(uuid, integer) from public;
comment on function app_private.fair_job_priority(uuid, integer) is 'The priority for the next job(s) of an organization: the number of jobs it queued this minute and the previous one (lower runs first; at most 32,000).';

-- The producers' API, for many jobs of one task and one organization in one call (one fair-priority
-- count and one insert for all of them: what a service queuing in bulk should use). Each payload
-- (a JSON object) gets the organization_id; job_keys, when given, has one key or null per payload
-- (graphile-worker's job_key, prefixed with task and organization so tenants never collide; keys
-- must differ within a call). The jobs' priorities rise through the batch exactly as if they had
-- been queued one by one. Returns the ids of the jobs (for keys already queued: the existing job's).
create or replace function app_private.enqueue_jobs(
  task text,
  organization_id uuid,
  payloads jsonb[],
  run_at timestamptz default null,
  job_keys text[] default null,
  max_attempts integer default 10
) returns setof bigint
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_count integer := coalesce(cardinality(payloads), 0);
  v_before integer;
begin
  if not exists (select from app_private.producer_tasks t where t.task = enqueue_jobs.task) then
    perform app_private.fail('UNKNOWN_TASK', format('Other services may not queue %L; see app_private.producer_tasks for the tasks they may.', task));
  end if;
  if not exists (select from app_public.organizations o where o.id = enqueue_jobs.organization_id) then
    raise exception 'no organization %', organization_id using errcode = '22023';
  end if;
  if max_attempts is null or max_attempts not between 1 and 25 then
    raise exception 'max_attempts must be from 1 to 25' using errcode = '22023';
  end if;
  if v_count > 10000 then
    raise exception 'at most 10,000 jobs per call (got %)', v_count using errcode = '22023';
  end if;
  if exists (select from unnest(payloads) p where p is null or jsonb_typeof(p) <> 'object') then
    raise exception 'payload must be a JSON object (every one of them)' using errcode = '22023';
  end if;
  if job_keys is not null then
    if cardinality(job_keys) <> v_count then
      raise exception 'job_keys has % entries for % payloads: give one key (or null) per payload', cardinality(job_keys), v_count using errcode = '22023';
    end if;
    if (select count(k) <> count(distinct k) from unnest(job_keys) k) then
      raise exception 'job_keys must differ within one call' using errcode = '22023';
    end if;
  end if;
  if v_count = 0 then
    return;
  end if;
  v_before := app_private.count_queued_jobs(organization_id, v_count);
  return query
  select j.id
  from graphile_worker.add_jobs(array(
    select row(
      task,
      (p.payload || jsonb_build_object('organization_id', organization_id))::json,
      null,
      run_at,
      max_attempts,
      case when job_keys[p.n] is null then null else format('%s:%s:%s', task, organization_id, job_keys[p.n]) end,
      least(v_before + p.n - 1, 32000),
      null
    )::graphile_worker.job_spec
    from unnest(payloads) with ordinality as p(payload, n)
    order by p.n
  )) j;
end
$$;
revoke all on function app_private.enqueue_jobs(text, uuid, jsonb[], timestamptz, text[], integer) from public;
grant execute on function app_private.enqueue_jobs(text, uuid, jsonb[], timestamptz, text[], integer) to :DATABASE_PRODUCER, :DATABASE_WORKER;
comment on function app_private.enqueue_jobs(text, uuid, jsonb[], timestamptz, text[], integer) is 'Queues many jobs of one task for one organization in one call (other services, role DATABASE_PRODUCER): fair priorities as if queued one by one, optional job keys. Returns the job ids.';

-- The producers' API for one job: queue `task` for `organization_id`. The payload (a JSON object)
-- gets the organization_id; `job_key` collapses duplicates (graphile-worker's job_key, prefixed
-- with the organization so tenants never collide). Returns the job id.
create or replace function app_private.enqueue_job(
  task text,
  organization_id uuid,
  payload jsonb default '{}',
  run_at timestamptz default null,
  job_key text default null,
  max_attempts integer default 10
) returns bigint
language sql volatile security definer
set search_path = pg_catalog
as $$
  select app_private.enqueue_jobs(task, organization_id, array[payload], run_at, case when job_key is null then null else array[job_key] end, max_attempts)
$$;
revoke all on function app_private.enqueue_job(text, uuid, jsonb, timestamptz, text, integer) from public;
grant execute on function app_private.enqueue_job(text, uuid, jsonb, timestamptz, text, integer) to :DATABASE_PRODUCER, :DATABASE_WORKER;
comment on function app_private.enqueue_job(text, uuid, jsonb, timestamptz, text, integer) is 'Queues a job for other services (role DATABASE_PRODUCER): a task from app_private.producer_tasks, for one organization, with a fair priority. Returns the job id. Many jobs at once: app_private.enqueue_jobs.';
grant usage on schema app_private to :DATABASE_PRODUCER;

-- Operators: the queue at a glance, and what failed for good --------------------------------------

-- Per task: jobs waiting (run_at passed), scheduled (run_at ahead), running (locked),
-- retrying (failed at least once, attempts left) and failed (no attempts left).
create or replace function app_private.job_queue_depth()
returns table (task text, waiting bigint, scheduled bigint, running bigint, retrying bigint, failed bigint)
language plpgsql stable
set search_path = pg_catalog
as $$
begin
  return query
    select t.identifier::text,
      count(*) filter (where j.locked_at is null and j.attempts < j.max_attempts and j.run_at <= now()),
      count(*) filter (where j.locked_at is null and j.attempts < j.max_attempts and j.run_at > now()),
      count(*) filter (where j.locked_at is not null),
      count(*) filter (where j.locked_at is null and j.attempts > 0 and j.attempts < j.max_attempts),
      count(*) filter (where j.locked_at is null and j.attempts >= j.max_attempts)
    from graphile_worker._private_jobs j
    join graphile_worker._private_tasks t on t.id = j.task_id
    group by t.identifier
    order by 1;
end
$$;
revoke all on function app_private.job_queue_depth() from public;
grant execute on function app_private.job_queue_depth() to :DATABASE_WORKER;

-- Jobs that used up their attempts, with their last error: they stay in the queue, visible here,
-- until retried (app_private.retry_failed_jobs) or removed.
create or replace function app_private.failed_jobs()
returns table (id bigint, task text, organization_id uuid, attempts integer, max_attempts integer, last_error text, created_at timestamptz, updated_at timestamptz, payload json)
language plpgsql stable
set search_path = pg_catalog
as $$
begin
  return query
    select j.id, t.identifier::text, (j.payload ->> 'organization_id')::uuid, j.attempts::integer, j.max_attempts::integer,
      j.last_error, j.created_at, j.updated_at, j.payload
    from graphile_worker._private_jobs j
    join graphile_worker._private_tasks t on t.id = j.task_id
    where j.attempts >= j.max_attempts and j.locked_at is null
    order by j.updated_at desc, j.id;
end
$$;
revoke all on function app_private.failed_jobs() from public;
grant execute on function app_private.failed_jobs() to :DATABASE_WORKER;

-- Runs failed jobs again now, with a fresh set of attempts: the given ids, or every failed job
-- when `ids` is null. Returns the ids retried.
create or replace function app_private.retry_failed_jobs(ids bigint[] default null) returns setof bigint
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_ids bigint[];
begin
  select array_agg(f.id) into v_ids from app_private.failed_jobs() f where ids is null or f.id = any (ids);
  if v_ids is null then
    return;
  end if;
  return query select r.id from graphile_worker.reschedule_jobs(v_ids, run_at => now(), attempts => 0) r order by r.id;
end
$$;
revoke all on function app_private.retry_failed_jobs(bigint[]) from public;
grant execute on function app_private.retry_failed_jobs(bigint[]) to :DATABASE_WORKER;
--! EndIncluded functions/jobs.sql
--! Included functions/retention_growing.sql
-- Retention of the tables that grow with use (every one but the activity log). Nothing here is
-- a soft-deleted record (those: sql/functions/retention.sql); these are logs, tokens and
-- counters that are only needed for a while, some of them holding personal data.
--
-- Per organization (its own data; owners and admins set the windows through the API, like every
-- organization setting, app_public.organizations):
--   webhook_payload_retention_days  a finished webhook delivery keeps its row, the delivery log,
--                                   but loses its payload (a copy of a record) and last_error
--                                   that many days after its event; payload_removed_at says when
--   email_log_retention_days        the organization's rows of the email send log
--                                   (app_private.email_messages: recipient addresses) are deleted
--                                   that many days after their last attempt
--   failed_job_retention_days       the organization's jobs that failed for good (their payloads
--                                   name recipients and records) are removed that many days after
--                                   their last attempt
-- Each is an app_public.retention_window: 1 to 365 days, default 30 (refused otherwise with
-- INVALID_VALUE and the rule's message: app_private.domain_rules).
--
-- System-wide (fixed windows, each tied to what makes the rows meaningful):
--   sessions             30 days after the session ended (expired or revoked). An ended session
--                        can do nothing (app_public.current_user_id, app_private.refresh); its row
--                        is the record of how it ended (revoked_reason 'refresh token reused' is
--                        the trace of a detected theft). Its used refresh tokens go with it.
--   used_refresh_tokens  the refresh-token TTL after their use (app_private.refresh_token_ttl():
--                        REFRESH_TOKEN_TTL_SECONDS, set by the worker as by the API). A token is
--                        issued before it is used, so by then it has expired on its own: presenting
--                        it could not sign anyone in, and reuse detection is only needed while a
--                        rotated token could still have been valid.
--   password_reset_tokens a day after they expire (1 hour after issue): until then a late click
--                        hears RESET_TOKEN_EXPIRED rather than RESET_TOKEN_INVALID.
--   registrations        a day after they expire (24 hours after the request), as
--                        app_private.purge_expired_secrets does (sql/functions/registration.sql).
--   email_secrets        once expired (their links no longer work).
--   login_throttle       a day after the last failure: app_private.login forgets failures older
--                        than a day, so such a row counts nothing any more.
--   job_enqueue_counts   after a day: fair priorities read the current and previous minute only
--                        (app_private.count_queued_jobs); the day is for operators.
--   activity_dispatches  7 days after the dispatch, once no job of that dispatch is left (a
--                        dispatch_activity job retries for about 4 days: 25 attempts, backoff up to
--                        e^10 s ≈ 6 h). Transaction ids never repeat, so nothing asks again.
--   email_messages       account emails (no organization): 30 days after the last attempt.
--   failed jobs          jobs without an organization: 30 days after their last attempt.
-- An email_messages row is the idempotency record of its message_key (a retried send_email job
-- does not send twice): it is deleted only once no job with that key is left (pending or failed).
-- Every key names a one-time event (an invitation, a reset, a sign-up, a document leaving draft,
-- which never returns to draft), so no new job asks for a deleted key.
--
-- Failed jobs: graphile-worker's own cleanup (WorkerUtils.cleanup, DELETE_PERMAFAILED_JOBS) deletes
-- every failed job at once, whatever its age or organization, in one statement; that does not
-- fit. The jobs to remove are chosen here — read from graphile_worker._private_jobs, as
-- app_private.failed_jobs() reads them (the public view graphile_worker.jobs has no payload, and
-- the payload names the organization) — and removed through graphile-worker's SQL API,
-- graphile_worker.complete_jobs(ids), which skips any job a worker holds. (Atrium uses no named
-- job queues, and task identifiers are few and fixed: GC_JOB_QUEUES and GC_TASK_IDENTIFIERS have
-- nothing to collect.)
--
-- Batches: each call removes (or strips) at most `batch_size` rows, chosen through an index once
-- (a materialized CTE: a sub-select with LIMIT and SKIP LOCKED that the plan ran again would
-- skip the rows this statement just changed and take further ones), and returns how many. The
-- worker calls again, each call its own short transaction, until a call returns fewer
-- (src/worker/retention.ts: 1,000 rows a batch, at most 1,000 batches per rule and run). Conditions are re-checked on every call, so a run that stops half-way, or runs twice,
-- leaves nothing inconsistent and the next run goes on. Only the worker's session may call them.
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- The windows an organization sets

do $$
begin
  if to_regtype('app_public.retention_window') is null then
    create domain app_public.retention_window as integer;
  end if;
end
$$;
alter domain app_public.retention_window drop constraint if exists retention_window_range;
alter domain app_public.retention_window add constraint retention_window_range check (value between 1 and 365);
comment on domain app_public.retention_window is 'How many days data is kept before retention removes it: 1 to 365.';

insert into app_private.domain_rules (domain_name, constraint_name, code, message) values
  ('app_public.retention_window', 'retention_window_range', 'INVALID_VALUE', 'A retention window is a whole number of days from 1 to 365.')
on conflict (domain_name, constraint_name) do update set code = excluded.code, message = excluded.message;

alter table app_public.organizations
  add column if not exists webhook_payload_retention_days app_public.retention_window not null default 30,
  add column if not exists email_log_retention_days app_public.retention_window not null default 30,
  add column if not exists failed_job_retention_days app_public.retention_window not null default 30;
comment on column app_public.organizations.webhook_payload_retention_days is 'Days a webhook delivery keeps its payload and last error after its event (1 to 365, default 30); the delivery log itself stays.';
comment on column app_public.organizations.email_log_retention_days is 'Days the record of an email sent for the organization (recipient, when, how) is kept after its last attempt (1 to 365, default 30).';
comment on column app_public.organizations.failed_job_retention_days is 'Days a job of the organization that failed for good is kept for inspection and retry after its last attempt (1 to 365, default 30).';
-- Owners and admins change them (policy update_current_by_admins), as every setting.
grant update (webhook_payload_retention_days, email_log_retention_days, failed_job_retention_days) on app_public.organizations to :DATABASE_VISITOR;

------------------------------------------------------------------------------------------------
-- Indexes the batches take their rows through (oldest first)

create index if not exists sessions_ended_at_idx on app_private.sessions ((least(revoked_at, expires_at)));
create index if not exists used_refresh_tokens_used_at_idx on app_private.used_refresh_tokens (used_at);
create index if not exists password_reset_tokens_expires_at_idx on app_private.password_reset_tokens (expires_at);
create index if not exists login_throttle_last_failed_at_idx on app_private.login_throttle (last_failed_at);
create index if not exists activity_dispatches_dispatched_at_idx on app_private.activity_dispatches (dispatched_at);
create index if not exists email_messages_organization_id_last_attempt_at_idx on app_private.email_messages (organization_id, last_attempt_at);

------------------------------------------------------------------------------------------------
-- The rules

create or replace function app_private.require_retention_batch(batch_size integer) returns void
language plpgsql immutable
set search_path = pg_catalog
as $$
begin
  if batch_size is null or batch_size not between 1 and 10000 then
    raise exception 'batch_size must be from 1 to 10,000 (got %)', batch_size using errcode = '22023';
  end if;
end
$$;

-- No job (pending, running or failed) is left with this key.
create or replace function app_private.no_job_with_key(job_key text) returns boolean
language plpgsql stable
set search_path = pg_catalog
as $$
begin
  return not exists (select from graphile_worker.jobs j where j.key = job_key);
end
$$;

-- The organization a job names in its payload (organization_id), or null.
create or replace function app_private.job_organization(payload json) returns uuid
language sql immutable
set search_path = pg_catalog
as $$
  select case when payload ->> 'organization_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    then (payload ->> 'organization_id')::uuid end
$$;

-- The system-wide rules, by name, in the order the daily run applies them.
create or replace function app_private.system_retention_rules() returns setof text
language sql immutable
set search_path = pg_catalog
as $$
  select unnest(array['sessions', 'used_refresh_tokens', 'password_reset_tokens', 'registrations', 'email_secrets',
    'login_throttle', 'job_enqueue_counts', 'activity_dispatches', 'account_email_messages', 'failed_jobs'])
$$;

-- One batch of system-wide `rule` (see the top of this file). Returns how many rows went.
create or replace function app_private.purge_system_rows(rule text, batch_size integer) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_n integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker applies retention.');
  end if;
  perform app_private.require_retention_batch(batch_size);
  case rule
  when 'sessions' then
    with batch as materialized (
      select o.id from app_private.sessions o
      where least(o.revoked_at, o.expires_at) < now() - interval '30 days'
      order by least(o.revoked_at, o.expires_at) limit batch_size for update skip locked)
    delete from app_private.sessions s using batch b where s.id = b.id;
  when 'used_refresh_tokens' then
    with batch as materialized (
      select o.token_hash from app_private.used_refresh_tokens o
      where o.used_at < now() - app_private.refresh_token_ttl()
      order by o.used_at limit batch_size for update skip locked)
    delete from app_private.used_refresh_tokens t using batch b where t.token_hash = b.token_hash;
  when 'password_reset_tokens' then
    with batch as materialized (
      select o.id from app_private.password_reset_tokens o
      where o.expires_at < now() - interval '1 day'
      order by o.expires_at limit batch_size for update skip locked)
    delete from app_private.password_reset_tokens t using batch b where t.id = b.id;
  when 'registrations' then
    with batch as materialized (
      select o.id from app_private.registrations o
      where o.expires_at < now() - interval '1 day'
      order by o.expires_at limit batch_size for update skip locked)
    delete from app_private.registrations r using batch b where r.id = b.id;
  when 'email_secrets' then
    with batch as materialized (
      select o.message_key from app_private.email_secrets o
      where o.expires_at <= now()
      order by o.expires_at limit batch_size for update skip locked)
    delete from app_private.email_secrets s using batch b where s.message_key = b.message_key;
  when 'login_throttle' then
    with batch as materialized (
      select o.email, o.client from app_private.login_throttle o
      where o.last_failed_at < now() - interval '1 day'
      order by o.last_failed_at limit batch_size for update skip locked)
    delete from app_private.login_throttle t using batch b where t.email = b.email and t.client = b.client;
  when 'job_enqueue_counts' then
    with batch as materialized (
      select o.organization_id, o.minute from app_private.job_enqueue_counts o
      where o.minute < now() - interval '1 day'
      order by o.minute limit batch_size for update skip locked)
    delete from app_private.job_enqueue_counts c using batch b where c.organization_id = b.organization_id and c.minute = b.minute;
  when 'activity_dispatches' then
    with batch as materialized (
      select o.organization_id, o.transaction_id from app_private.activity_dispatches o
      where o.dispatched_at < now() - interval '7 days'
        and app_private.no_job_with_key(format('dispatch_activity:%s:%s', o.organization_id, o.transaction_id))
      order by o.dispatched_at limit batch_size for update skip locked)
    delete from app_private.activity_dispatches d using batch b where d.organization_id = b.organization_id and d.transaction_id = b.transaction_id;
  when 'account_email_messages' then
    with batch as materialized (
      select o.message_key from app_private.email_messages o
      where o.organization_id is null and o.last_attempt_at < now() - interval '30 days'
        and app_private.no_job_with_key('send_email:' || o.message_key)
      order by o.last_attempt_at limit batch_size for update skip locked)
    delete from app_private.email_messages m using batch b where m.message_key = b.message_key;
  when 'failed_jobs' then
    -- Each organization's failed jobs after its own window; jobs without one after 30 days.
    select count(*) into v_n from graphile_worker.complete_jobs(array(
      select j.id from graphile_worker._private_jobs j
      left join app_public.organizations o on o.id = app_private.job_organization(j.payload)
      where j.attempts >= j.max_attempts and j.locked_at is null
        and j.updated_at < now() - make_interval(days => coalesce(o.failed_job_retention_days, 30))
      order by j.updated_at, j.id limit batch_size));
    return v_n;
  else
    raise exception 'unknown retention rule %', rule using errcode = '22023';
  end case;
  get diagnostics v_n = row_count;
  return v_n;
end
$$;

-- The per-organization rules, by name.
create or replace function app_private.tenant_retention_rules() returns setof text
language sql immutable
set search_path = pg_catalog
as $$
  select unnest(array['webhook_payloads', 'email_messages'])
$$;

-- One batch of per-organization `rule`, inside the current organization (the worker's tenant
-- transaction), with that organization's window. Returns how many rows were stripped or deleted.
create or replace function app_private.purge_tenant_rows(rule text, batch_size integer) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  v_settings app_public.organizations;
  v_n integer;
begin
  perform app_private.require_retention_batch(batch_size);
  select o.* into v_settings from app_public.organizations o where o.id = v_org;
  case rule
  when 'webhook_payloads' then
    -- Finished deliveries only: a pending one still needs its payload (and a failed or cancelled
    -- one can be retried until this happens: app_public.retry_webhook_delivery).
    with batch as materialized (
      select o.id from app_public.webhook_deliveries o
      where o.organization_id = v_org and o.payload is not null and o.status <> 'pending'
        and o.created_at < now() - make_interval(days => v_settings.webhook_payload_retention_days)
      order by o.created_at limit batch_size for update skip locked)
    update app_public.webhook_deliveries d set payload = null, last_error = null, payload_removed_at = now()
    from batch b where d.organization_id = v_org and d.id = b.id;
  when 'email_messages' then
    with batch as materialized (
      select o.message_key from app_private.email_messages o
      where o.organization_id = v_org
        and o.last_attempt_at < now() - make_interval(days => v_settings.email_log_retention_days)
        and app_private.no_job_with_key('send_email:' || o.message_key)
      order by o.last_attempt_at limit batch_size for update skip locked)
    delete from app_private.email_messages m using batch b where m.message_key = b.message_key;
  else
    raise exception 'unknown retention rule %', rule using errcode = '22023';
  end case;
  get diagnostics v_n = row_count;
  return v_n;
end
$$;

revoke all on function
  app_private.require_retention_batch(integer),
  app_private.no_job_with_key(text),
  app_private.job_organization(json),
  app_private.system_retention_rules(),
  app_private.purge_system_rows(text, integer),
  app_private.tenant_retention_rules(),
  app_private.purge_tenant_rows(text, integer)
from public;
grant execute on function
  app_private.system_retention_rules(),
  app_private.purge_system_rows(text, integer),
  app_private.tenant_retention_rules(),
  app_private.purge_tenant_rows(text, integer)
to :DATABASE_WORKER;
--! EndIncluded functions/retention_growing.sql
--! Included functions/data_exports.sql
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
-- `kind` is 'organization' today; exports of one person's data ('contact', 'user') will name the
-- person in subject_id (the check below ties the two together).
-- Idempotent; re-included by later migrations.

create table if not exists app_public.data_exports (
  organization_id uuid not null references app_public.organizations on delete cascade,
  id uuid not null default gen_random_uuid(),
  kind text not null default 'organization' constraint data_exports_kind check (kind in ('organization')),
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
comment on table app_public.data_exports is 'Exports of the organization''s data (one zip each), requested by owners and admins, made by a job, downloadable until they expire.';
comment on column app_public.data_exports.kind is 'What is exported: organization (everything). Exports of one person (contact, user) will name them in subjectId.';
comment on column app_public.data_exports.status is 'requested → running → ready → expired, or failed (see failureReason).';
comment on column app_public.data_exports.valid_days is 'How many days the export stays downloadable once ready (1 to 30).';
comment on column app_public.data_exports.storage_key is 'Where the zip is stored (made by the server).';
comment on column app_public.data_exports.row_counts is 'Rows per table in the export.';

call app_private.assert_tenant_shape('app_public.data_exports');
call app_private.force_rls('app_public.data_exports');
call app_private.attach_updated_at('app_public.data_exports');
call app_private.attach_audit('app_public.data_exports');
call app_private.attach_email_normalizer('app_public.data_exports');
call app_private.classify_columns('app_public.data_exports', '{"kind": "none", "status": "none", "failure_reason": "free_text", "storage_key": "none", "row_counts": "none"}');
alter table app_public.data_exports alter column requested_by set default app_public.current_user_id();

-- Only owners and admins see exports (an export holds every row of the organization); nobody
-- writes them directly: request_organization_export and the job's functions do.
drop policy if exists select_by_admins on app_public.data_exports;
create policy select_by_admins on app_public.data_exports for select to :DATABASE_VISITOR
  using (organization_id = (select app_public.current_org_id()) and (select app_public.current_member_has_role('admin')));
comment on policy select_by_admins on app_public.data_exports is 'Owners and admins read the current organization''s exports.';
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
    -- The audit trigger's arguments: org column, then the secret columns (sql/functions/tenant_tables.sql).
    select t.tgrelid as oid, s.col
    from pg_trigger t
    cross join lateral unnest((string_to_array(encode(t.tgargs, 'escape'), '\000'))[2:]) as s(col)
    where t.tgname like 'tg\_%\_\_audit\_insert' and not t.tgisinternal
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

-- The schema an export was made with: the last committed migration.
create or replace function app_private.schema_migration(out filename text, out hash text)
language sql stable security definer
set search_path = pg_catalog
as $$
  select m.filename, m.hash from graphile_migrate.migrations m order by m.date desc, m.filename desc limit 1
$$;

------------------------------------------------------------------------------------------------
-- Requesting an export

create or replace function app_public.request_organization_export(valid_days integer default 7) returns app_public.data_exports
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_export app_public.data_exports;
begin
  perform app_private.require_member_role('admin', 'export the organization''s data');
  if request_organization_export.valid_days is null or request_organization_export.valid_days not between 1 and 30 then
    perform app_private.fail('INVALID_VALUE', 'validDays must be between 1 and 30.');
  end if;
  -- One export of an organization at a time: a request while one is on its way answers that one.
  -- One that did not finish within a day (its job failed without saying so: the database was
  -- away on its last attempt) is failed now, so it cannot block every later request.
  perform pg_advisory_xact_lock(hashtextextended('data_exports:' || app_public.current_org_id()::text, 0));
  update app_public.data_exports e set status = 'failed', failure_reason = 'It did not finish within a day.'
  where e.organization_id = app_public.current_org_id() and e.status in ('requested', 'running') and e.created_at < now() - interval '1 day';
  select * into v_export from app_public.data_exports e
  where e.organization_id = app_public.current_org_id() and e.kind = 'organization' and e.status in ('requested', 'running');
  if found then
    return v_export;
  end if;
  v_export.id := gen_random_uuid();
  insert into app_public.data_exports (organization_id, id, kind, valid_days, requested_by, storage_key)
  values (app_public.current_org_id(), v_export.id, 'organization', request_organization_export.valid_days, app_public.current_user_id(),
    format('exports/%s/%s.zip', app_public.current_org_id(), v_export.id))
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
begin
  update app_public.data_exports e
  set status = 'ready', ready_at = now(), expires_at = now() + make_interval(days => e.valid_days),
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
    perform app_private.enqueue_email(
      'data_export_ready',
      v_user.email,
      jsonb_build_object(
        'name', v_user.name,
        'organization_name', (select o.name from app_public.organizations o where o.id = v_org),
        'export_id', v_export.id,
        'expires_at', to_char(v_export.expires_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')
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
  app_private.schema_migration(),
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
  app_private.schema_migration(),
  app_private.start_data_export(uuid),
  app_private.finish_data_export(uuid, bigint, jsonb),
  app_private.fail_data_export(uuid, text),
  app_private.expire_data_export(uuid)
to :DATABASE_WORKER;

------------------------------------------------------------------------------------------------
-- Import (`import-organization`, src/export/import.ts): what the imported rows imply, set by the
-- owner at the end of the import's transaction. Nothing else may run it.
--   * the invoice counter continues after the highest imported invoice number;
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
-- only ever deletes exports/<organization>/<export>.zip.
create or replace function app_private.tg_data_exports__delete_object() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  perform graphile_worker.add_job(
    'data_export_delete_object',
    json_build_object('organization_id', o.organization_id, 'export_id', o.id),
    job_key => format('data_export_delete_object:%s', o.id),
    max_attempts => 50
  )
  from old_rows o;
  return null;
end
$$;
drop trigger if exists tg_data_exports__delete_object on app_public.data_exports;
create trigger tg_data_exports__delete_object after delete on app_public.data_exports
  referencing old table as old_rows for each statement execute function app_private.tg_data_exports__delete_object();
--! EndIncluded functions/data_exports.sql
--! Included functions/email.sql
-- Transactional email: the outbox side in SQL. Writes that should send an email enqueue a
-- `send_email` job in their own transaction (src/worker/tasks/send_email.ts sends it):
--   invitation      app_public.invite_member                    (sql/functions/auth.sql)
--   password_reset  app_private.request_password_reset          (sql/functions/password_reset.sql)
--   proposal_sent   a proposal goes draft → sent                 (trigger below)
--   invoice_sent    an invoice goes draft → sent                 (trigger below)
-- A rolled-back write therefore never emails anyone, and a committed one always has its job.
--
-- A message's one-time secret (the token of an invitation, password-reset or sign-up link) never
-- travels in the job: the job carries ids, and the secret waits in app_private.email_secrets,
-- which only the worker reads (app_private.email_secret), inside the transaction that claims the
-- message. It is deleted when the message is recorded as sent, when its invitation, reset or
-- sign-up is replaced, revoked or used (app_private.cancel_email), and once it expires. So no
-- token sits in graphile-worker's job rows, reaches its log lines or a job's last_error.
--
-- Each message has an idempotency key, `message_key` (e.g. invitation:<invitation id>), used as
-- the job key (enqueuing it again while pending collapses into one job) and as the primary key of
-- app_private.email_messages, where the worker records each message: it claims the key before
-- sending and marks it sent afterwards, so a retried job never sends a message recorded as sent.
-- The one window left — the SMTP server accepted the message but the worker died before
-- recording it — sends it again on retry, with the same Message-ID (docs/DATA_FLOWS.md, "Email").
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- The send log. Only the worker writes it, through the two functions below; nobody reads it
-- through the API. Message bodies are not kept (they may hold tokens), only what identifies
-- them.

create table if not exists app_private.email_messages (
  message_key text primary key check (length(message_key) between 1 and 300),
  organization_id uuid references app_public.organizations,
  template text not null check (template ~ '^[a-z][a-z0-9_]*$'),
  recipient text not null check (length(recipient) <= 320),
  attempts integer not null default 1 check (attempts >= 1),
  first_attempt_at timestamptz not null default now(),
  last_attempt_at timestamptz not null default now(),
  sent_at timestamptz,
  message_id text,
  transport text check (transport in ('smtp', 'folder')),
  transport_detail text,
  check ((sent_at is null) = (message_id is null))
);
create index if not exists email_messages_organization_id_idx on app_private.email_messages (organization_id);
call app_private.force_rls('app_private.email_messages');
comment on table app_private.email_messages is 'Every email the worker has tried to send (task send_email), by idempotency key: attempts, and when and how it was sent. No bodies.';
comment on column app_private.email_messages.organization_id is 'The organization the email is about; null for account emails (password reset).';
comment on column app_private.email_messages.transport_detail is 'SMTP: the server''s final answer; folder: the .eml file written.';

-- The one-time secrets of messages waiting to be sent, by message key (see the top of this file).
-- Nobody is granted anything on it: the owner's SECURITY DEFINER functions below write and read
-- it, the worker through app_private.email_secret only.
create table if not exists app_private.email_secrets (
  message_key text primary key check (length(message_key) between 1 and 300),
  organization_id uuid references app_public.organizations on delete cascade,
  secrets jsonb not null check (jsonb_typeof(secrets) = 'object'),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null
);
create index if not exists email_secrets_organization_id_idx on app_private.email_secrets (organization_id);
create index if not exists email_secrets_expires_at_idx on app_private.email_secrets (expires_at);
call app_private.force_rls('app_private.email_secrets');
comment on table app_private.email_secrets is 'One-time secrets (link tokens) of emails not yet sent, by message key: read by the worker inside the send, deleted once sent, replaced, revoked or expired. Never in a job payload.';

-- Drops the secret and the pending job of a message that must not go out any more (its link was
-- replaced, revoked or used). A job a worker already holds finds no secret and sends nothing.
create or replace function app_private.cancel_email(message_key text) returns void
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  perform graphile_worker.remove_job('send_email:' || cancel_email.message_key);
  delete from app_private.email_secrets s where s.message_key = cancel_email.message_key;
end
$$;
comment on function app_private.cancel_email(text) is 'Cancels a queued email: removes its pending job and deletes its one-time secret.';

-- Enqueue one email, in the caller's transaction. Called only by Atrium's own SECURITY DEFINER
-- functions and triggers (granted to nobody). `data` fills the template's placeholders and goes
-- into the job; `secrets` (e.g. {"token": …}) fill the others and never do: they are kept in
-- app_private.email_secrets until `secrets_expire_at`, and the job only says it has some.
-- A key that looks like a secret in `data` is refused (a bug: it would sit in the job row).
drop function if exists app_private.enqueue_email(text, text, jsonb, text, uuid); -- before secrets
create or replace function app_private.enqueue_email(
  template text, recipient text, data jsonb, message_key text, organization_id uuid default null,
  secrets jsonb default null, secrets_expire_at timestamptz default null
) returns void
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  if exists (select from jsonb_object_keys(coalesce(enqueue_email.data, '{}')) k where k ~* '(token|password|secret)') then
    perform app_private.fail('INTERNAL', format('enqueue_email(%s): secrets go in `secrets`, never in `data` (it is stored in the job)', enqueue_email.template));
  end if;
  if enqueue_email.secrets is not null then
    if enqueue_email.secrets_expire_at is null then
      perform app_private.fail('INTERNAL', format('enqueue_email(%s): secrets need secrets_expire_at', enqueue_email.template));
    end if;
    -- Expired secrets of other messages go at the same time (their links no longer work).
    delete from app_private.email_secrets s where s.expires_at <= now();
    insert into app_private.email_secrets as s (message_key, organization_id, secrets, expires_at)
    values (enqueue_email.message_key, enqueue_email.organization_id, enqueue_email.secrets, enqueue_email.secrets_expire_at)
    on conflict on constraint email_secrets_pkey do update
      set organization_id = excluded.organization_id, secrets = excluded.secrets, created_at = now(), expires_at = excluded.expires_at;
  end if;
  perform graphile_worker.add_job(
    'send_email',
    json_strip_nulls(json_build_object(
      'organization_id', enqueue_email.organization_id,
      'template', enqueue_email.template,
      'to', enqueue_email.recipient,
      'data', enqueue_email.data,
      'message_key', enqueue_email.message_key,
      'has_secrets', case when enqueue_email.secrets is not null then true end
    )),
    job_key => 'send_email:' || enqueue_email.message_key,
    max_attempts => 12
  );
end
$$;
comment on function app_private.enqueue_email(text, text, jsonb, text, uuid, jsonb, timestamptz) is 'Enqueues the send_email job of one message in the current transaction (job key send_email:<message_key>); its one-time secrets wait in app_private.email_secrets, not in the job.';

-- The worker, before sending: records an attempt at `message_key` in the current organization
-- (app.org_id; none for account emails). Returns the attempt's number (1 the first time; more
-- means an earlier attempt did not record its outcome), or null when the message was already
-- sent (the job is a retry or a duplicate: send nothing). Only the worker's session may call it.
create or replace function app_private.claim_email(message_key text, template text, recipient text) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v app_private.email_messages;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker sends emails.');
  end if;
  -- An email about an organization that was deleted (sql/functions/organization_deletion.sql) is
  -- not sent: its job was taken before the purge.
  if v_org is not null and not exists (select from app_public.organizations o where o.id = v_org) then
    return null;
  end if;
  insert into app_private.email_messages as m (message_key, organization_id, template, recipient)
  values (claim_email.message_key, v_org, claim_email.template, claim_email.recipient)
  on conflict on constraint email_messages_pkey do update
    set attempts = m.attempts + 1, last_attempt_at = now()
    where m.sent_at is null and m.organization_id is not distinct from v_org
  returning m.* into v;
  if v.message_key is null then
    -- Either sent already, or the key belongs to another organization (never reused across them).
    select m.* into v from app_private.email_messages m where m.message_key = claim_email.message_key;
    if v.organization_id is distinct from v_org then
      perform app_private.fail('NOT_PERMITTED', 'This email belongs to another organization.');
    end if;
    return null;
  end if;
  return v.attempts;
end
$$;
comment on function app_private.claim_email(text, text, text) is 'Worker only: records an attempt to send message_key; returns the attempt number, or null when it already went out.';

-- The worker, after the transport accepted the message.
create or replace function app_private.record_email_sent(message_key text, message_id text, transport text, transport_detail text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker sends emails.');
  end if;
  update app_private.email_messages m
  set sent_at = now(), message_id = record_email_sent.message_id, transport = record_email_sent.transport,
      transport_detail = left(record_email_sent.transport_detail, 1000)
  where m.message_key = record_email_sent.message_key
    and m.organization_id is not distinct from app_public.current_org_id()
    and m.sent_at is null;
  -- Sent: its one-time secret is needed no more.
  delete from app_private.email_secrets s
  where s.message_key = record_email_sent.message_key
    and s.organization_id is not distinct from app_public.current_org_id();
end
$$;
comment on function app_private.record_email_sent(text, text, text, text) is 'Worker only: marks message_key as sent (Message-ID, transport, SMTP answer or file) and deletes its one-time secret.';

-- The worker, inside the transaction that claims a message: its one-time secrets (a JSON object),
-- or null when there are none any more (sent, replaced, revoked or expired: send nothing). Only
-- the worker's session may call it, and only for a message of the current organization.
create or replace function app_private.email_secret(message_key text) returns jsonb
language plpgsql stable security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker reads the secrets of emails.');
  end if;
  return (
    select s.secrets from app_private.email_secrets s
    where s.message_key = email_secret.message_key
      and s.organization_id is not distinct from app_public.current_org_id()
      and s.expires_at > now()
  );
end
$$;
comment on function app_private.email_secret(text) is 'Worker only: the one-time secrets of a message waiting to be sent, or null when it must not go out any more.';

revoke all on function
  app_private.cancel_email(text),
  app_private.enqueue_email(text, text, jsonb, text, uuid, jsonb, timestamptz),
  app_private.claim_email(text, text, text),
  app_private.record_email_sent(text, text, text, text),
  app_private.email_secret(text)
from public;
grant execute on function
  app_private.claim_email(text, text, text),
  app_private.record_email_sent(text, text, text, text),
  app_private.email_secret(text)
to :DATABASE_WORKER;

-- An invitation that is revoked (deleted) or replaced by a new one (inviteMember again) takes its
-- email along while it is still waiting in the queue, and its token with it: nobody receives a
-- link that no longer works.
-- AFTER DELETE per row; SECURITY DEFINER because the queue is not the visitor's.
create or replace function app_private.tg_invitations__cancel_email() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if old.accepted_at is null then
    perform app_private.cancel_email(format('invitation:%s', old.id));
  end if;
  return null;
end
$$;

drop trigger if exists tg_invitations__cancel_email on app_public.invitations;
create trigger tg_invitations__cancel_email after delete on app_public.invitations
  for each row execute function app_private.tg_invitations__cancel_email();

------------------------------------------------------------------------------------------------
-- Proposals and invoices sent to the client: one email to each primary contact of the client
-- company who has an email address (contacts.is_primary; deleted contacts excluded). A client
-- without one gets no email — the document is still sent (visible in the client portal).

create or replace function app_private.format_money(amount numeric, currency text) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select to_char(amount, 'FM999G999G999G990D00') || ' ' || currency
$$;

create or replace function app_private.format_day(day date) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select to_char(day, 'FMMonth FMDD, YYYY')
$$;

-- The client company's primary contacts with an email address.
create or replace function app_private.email_contacts_of(organization_id uuid, client_company_id uuid)
returns table (contact_id uuid, email text, name text)
language sql stable
set search_path = pg_catalog
as $$
  select c.id, c.email, c.first_name
  from app_public.contacts c
  where c.organization_id = email_contacts_of.organization_id
    and c.client_company_id = email_contacts_of.client_company_id
    and c.is_primary and c.email is not null and c.deleted_at is null
  order by c.created_at, c.id
$$;

-- AFTER UPDATE OF status on proposals, when a draft becomes sent. SECURITY DEFINER: it reads the
-- client's contacts and the organization whatever the sender may read, and enqueues jobs; it only
-- touches rows of the proposal's own organization.
create or replace function app_private.tg_proposals__email_sent() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_client text;
begin
  select o.* into v_org from app_public.organizations o where o.id = new.organization_id;
  select cc.name into v_client from app_public.client_companies cc where cc.organization_id = new.organization_id and cc.id = new.client_company_id;
  perform app_private.enqueue_email(
    'proposal_sent',
    r.email,
    jsonb_build_object(
      'contact_name', r.name,
      'organization_name', v_org.name,
      'client_name', v_client,
      'proposal_id', new.id,
      'proposal_title', new.title,
      'total', app_private.format_money(new.total, v_org.currency),
      'validity', case when new.valid_until is null then '' else format('It is valid until %s.', app_private.format_day(new.valid_until)) end
    ),
    format('proposal_sent:%s:%s', new.id, r.contact_id),
    new.organization_id
  )
  from app_private.email_contacts_of(new.organization_id, new.client_company_id) r;
  return null;
end
$$;

drop trigger if exists tg_proposals__email_sent on app_public.proposals;
create trigger tg_proposals__email_sent after update of status on app_public.proposals
  for each row when (old.status = 'draft' and new.status = 'sent')
  execute function app_private.tg_proposals__email_sent();

-- AFTER UPDATE OF status on invoices, when a draft becomes sent (sendInvoice: numbered, dated).
create or replace function app_private.tg_invoices__email_sent() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_client text;
begin
  select o.* into v_org from app_public.organizations o where o.id = new.organization_id;
  select cc.name into v_client from app_public.client_companies cc where cc.organization_id = new.organization_id and cc.id = new.client_company_id;
  perform app_private.enqueue_email(
    'invoice_sent',
    r.email,
    jsonb_build_object(
      'contact_name', r.name,
      'organization_name', v_org.name,
      'client_name', v_client,
      'invoice_id', new.id,
      'invoice_number', new.number,
      'total', app_private.format_money(new.total, v_org.currency),
      'amount_due', app_private.format_money(new.balance, v_org.currency),
      'issued_on', app_private.format_day(new.issued_on),
      'due_on', app_private.format_day(new.due_on)
    ),
    format('invoice_sent:%s:%s', new.id, r.contact_id),
    new.organization_id
  )
  from app_private.email_contacts_of(new.organization_id, new.client_company_id) r;
  return null;
end
$$;

drop trigger if exists tg_invoices__email_sent on app_public.invoices;
create trigger tg_invoices__email_sent after update of status on app_public.invoices
  for each row when (old.status = 'draft' and new.status = 'sent')
  execute function app_private.tg_invoices__email_sent();

revoke all on function
  app_private.format_money(numeric, text),
  app_private.format_day(date),
  app_private.email_contacts_of(uuid, uuid),
  app_private.tg_proposals__email_sent(),
  app_private.tg_invoices__email_sent(),
  app_private.tg_invitations__cancel_email()
from public;
--! EndIncluded functions/email.sql
