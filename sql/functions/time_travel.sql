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
-- (No SET clause: the planner inlines the function into the caller's query, so a page of it
-- reads only that page through the index. Every name is qualified.)
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
-- (No SET clause: the planner inlines the function into the caller's query, so a page of it
-- reads only that page through the index. Every name is qualified.)
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
