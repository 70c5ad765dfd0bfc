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
-- Arguments, written by app_private.attach_audit (sql/functions/tenant_tables.sql) from the
-- table's classification (sql/functions/personal_data.sql), so that no statement looks it up:
--   TG_ARGV[0]  the column holding the organization id ('organization_id', or 'id' on
--               app_public.organizations)
--   TG_ARGV[1]  the secret columns (array literal): never copied into the event
--   TG_ARGV[2]  the columns left out of the event (array literal): the secrets and the columns
--               classified `omit`
--   TG_ARGV[3]  the columns classified `mask` (array literal, sorted): a non-null value reads
--               "[masked]"
--   TG_ARGV[4], TG_ARGV[5]  the column naming the parent record and the parent's table
--               (app_private.audit_parents), or '' when the table has none
-- Each event also gets its place in the log (seq: commit order for one record, statement order
-- within a transaction), the parent record it belongs to and, for updates, the columns that
-- changed (masked ones included, omitted ones not).
-- An UPDATE that changes nothing but updated_at writes no event, nor does the purge of a deleted
-- organization (sql/functions/organization_deletion.sql).
-- Each row is turned into JSON once (`to_jsonb(new_rows.*)`: the `.*` means the row even when the
-- table has a column named like the alias), in a materialized step the event columns then read
-- (app_private.log_values is inlined, so an unmaterialized JSON would be built once per use).
-- SECURITY DEFINER: the acting role (the visitor) has no privilege on activity_events or
-- on the job queue; only this function writes there.
-- The event statements use generic plans (plan_cache_mode, set for them only): they differ per
-- table only in the values of variables, and a custom plan would be made again for every
-- statement that fires the trigger (with the classification's arrays as constants, PL/pgSQL
-- judged custom plans cheaper and planned the event insert anew each time: a third of a
-- single-row update's audit cost, measured). The setting goes back before the outbox step: set for
-- the whole function it reached graphile_worker's own statements, whose generic plans scanned the
-- whole job table (measured on PostgreSQL 18).
-- The outbox job is added with job_key_mode 'unsafe_dedupe': its key names this transaction, so no
-- worker can have seen or started a job with that key, and a later statement of the same
-- transaction only finds its own uncommitted job, which stays as it is (the mode's risk, acting on
-- a job that already started, cannot arise). It costs two statements against add_jobs' four.
create or replace function app_private.tg__audit() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org_column text := tg_argv[0];
  v_omit text[];
  v_mask text[];
  v_parent_column text;
  v_parent_table text;
  v_actor uuid;
  v_txid bigint;
  v_orgs uuid[];
  v_nestloop text;
  v_plan_cache_mode text;
  v_org uuid;
begin
  -- A deleted organization's purge deletes its log with its rows: no events for it.
  if current_setting('app.erasure', true) <> '' and app_private.erasing(null, 'organization') then
    return null;
  end if;
  if tg_nargs <> 6 then
    raise exception 'The audit trigger of %.% was not attached by app_private.attach_audit (it takes 6 arguments, got %)', tg_table_schema, tg_table_name, tg_nargs;
  end if;
  v_omit := tg_argv[2]::text[];
  v_mask := tg_argv[3]::text[];
  v_parent_column := nullif(tg_argv[4], '');
  v_parent_table := nullif(tg_argv[5], '');
  v_actor := app_public.current_user_id();
  v_txid := pg_current_xact_id()::text::bigint;
  v_plan_cache_mode := current_setting('plan_cache_mode');
  perform set_config('plan_cache_mode', 'force_generic_plan', true);

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
  perform set_config('plan_cache_mode', v_plan_cache_mode, true);

  if v_orgs is not null then
    foreach v_org in array v_orgs loop
      perform graphile_worker.add_job('dispatch_activity',
        json_build_object('organization_id', v_org, 'transaction_id', v_txid, 'occurred_at', now()),
        job_key => format('dispatch_activity:%s:%s', v_org, v_txid),
        job_key_mode => 'unsafe_dedupe');
    end loop;
  end if;
  return null;
end
$$;

-- The append-only trigger of the activity log (app_private.tg__append_only: BEFORE UPDATE/DELETE
-- per row and BEFORE TRUNCATE) is defined in sql/functions/erasure.sql, with the one door an
-- erasure opens; it was defined here first, and is no longer, so that including this file again
-- cannot put back the version without the door.
