--! Previous: sha1:48a4f31239b7ee1ccf97d62020e39deec5aa8456
--! Hash: sha1:5b8e3cbabaa22eee46abe7cc98296a21bb15be27
--! Message: Activity log months created without waiting long for a lock: both locks up front, stepping back and retrying

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';

set local statement_timeout = '60s';

-- The activity log's months are created without ever waiting long for a lock: both locks up front,
-- 200 ms each, stepping back and retrying (no deadlock with a transaction that read the log and
-- then changes an organization; seen in CI).
--! Included functions/activity_partitions.sql
-- The activity log, partitioned by month of occurred_at (declarative partitioning), so that it can
-- grow to hundreds of millions of events: each month is its own table with its own indexes,
-- writes go to the current month's, reads of a time window touch only its months, and retention
-- (sql/functions/activity_retention.sql) removes whole months by dropping their partitions
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
-- Each lock is waited for 200 ms at most (see below); the caller's own setting is back after.
set lock_timeout = '200ms'
as $$
declare
  v_month date;
  v_name text;
  v_attempt integer;
begin
  for v_month in
    select generate_series(date_trunc('month', coalesce(from_month, now()::date))::date, (date_trunc('month', now()) + make_interval(months => months_ahead))::date, interval '1 month')::date
  loop
    v_name := app_private.activity_partition_name(v_month);
    continue when to_regclass(format('app_partitions.%I', v_name)) is not null;
    -- Creating a month needs an ACCESS EXCLUSIVE lock on the log (and its foreign key's lock on
    -- app_public.organizations). Both are taken up front, in the order writers take theirs (a
    -- change of an organization, then its events), and never waited for long: a transaction that
    -- read the log and then changes an organization would otherwise deadlock with this one (seen
    -- under test load), and writers would queue behind a waiting ACCESS EXCLUSIVE. When a lock is
    -- not granted within lock_timeout, this month's attempt is rolled back (its locks released, so
    -- the other transaction goes on) and retried after a pause; after 50 attempts (about 15 s) a
    -- clear error.
    v_attempt := 0;
    loop
      v_attempt := v_attempt + 1;
      begin
        lock table app_public.organizations in share row exclusive mode;
        lock table app_public.activity_events in access exclusive mode;
        exit when to_regclass(format('app_partitions.%I', v_name)) is not null;
        if exists (select from app_partitions.activity_events_default d where d.occurred_at >= v_month and d.occurred_at < v_month + interval '1 month') then
          raise exception 'The default partition of app_public.activity_events holds events of %: move them into a new partition for that month before creating it', to_char(v_month, 'YYYY-MM');
        end if;
        execute format('create table app_partitions.%I partition of app_public.activity_events for values from (%L) to (%L)',
          v_name, v_month::timestamptz, (v_month + interval '1 month')::timestamptz);
        execute format('alter table app_partitions.%I enable row level security, force row level security', v_name);
        -- Through the parent only: the parent's privileges and triggers decide (a partition's own
        -- would let its owner truncate a month).
        execute format('revoke update, delete, truncate on app_partitions.%I from current_user', v_name);
        exit;
      exception when lock_not_available or deadlock_detected then
        if v_attempt >= 50 then
          raise exception 'Could not create the activity log''s partition for %: its locks stayed taken by other transactions (% attempts)', to_char(v_month, 'YYYY-MM'), v_attempt
            using errcode = 'lock_not_available', hint = 'Retry when the long transactions on app_public.activity_events or app_public.organizations have ended (pg_stat_activity).';
        end if;
        perform pg_sleep(0.05 + random() * 0.2);
      end;
    end loop;
  end loop;
end
$$;
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

-- Replaced only when its list changed: adding it checks every event of the log.
do $action_check$
begin
  if (select pg_get_constraintdef(c.oid) from pg_constraint c
      where c.conrelid = 'app_public.activity_events'::regclass and c.conname = 'activity_events_action_check')
     is distinct from $def$CHECK ((action = ANY (ARRAY['insert'::text, 'update'::text, 'delete'::text, 'soft_delete'::text, 'restore'::text, 'purge'::text])))$def$ then
    alter table app_public.activity_events drop constraint if exists activity_events_action_check;
    alter table app_public.activity_events add constraint activity_events_action_check
      check (action in ('insert', 'update', 'delete', 'soft_delete', 'restore', 'purge'));
  end if;
end
$action_check$;
-- The time index orders the events of one moment by seq, as the timeline does (newest first:
-- occurred_at desc, seq desc; activity_between: oldest first), so a page of a window is read in
-- order from the index, however many events a bulk transaction wrote at the same instant. (Until
-- migration 000027 it ended in id: a page then had to sort all the events of its instant.)
-- The indexes below exist since migrations 000023 and 000027 (the drop: since 000027), so a
-- migration re-including this file builds or drops nothing; a partitioned table's index cannot
-- be built concurrently anyway (its partitions' can, one by one).
-- squawk-ignore require-concurrent-index-creation
create index if not exists activity_events_organization_id_occurred_at_seq_idx on app_public.activity_events (organization_id, occurred_at, seq);
-- squawk-ignore require-concurrent-index-deletion
drop index if exists app_public.activity_events_organization_id_occurred_at_idx;
-- squawk-ignore require-concurrent-index-creation
create index if not exists activity_events_organization_id_transaction_id_idx on app_public.activity_events (organization_id, transaction_id);
-- squawk-ignore require-concurrent-index-creation
create index if not exists activity_events_organization_id_table_name_record_id_seq_idx on app_public.activity_events (organization_id, table_name, record_id, seq);
-- squawk-ignore require-concurrent-index-creation
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
