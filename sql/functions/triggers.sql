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
