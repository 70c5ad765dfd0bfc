--! Previous: sha1:86217bc09d1d248659ed63dc2d94220cfb5ef1ab
--! Hash: sha1:8eefa640b1baed70724c44ced6a7a1cc372d6545
--! Message: Fair job priorities count the previous minute

-- Fair job priorities count the previous minute too, so a busy organization's backlog does not
-- jump back to priority 0 at each new minute (sql/functions/jobs.sql).
--! Included functions/jobs.sql
-- The job queue seen from SQL: how producers queue work, how it is shared fairly between
-- organizations, and how operators see and retry what failed. The engine is graphile-worker
-- (schema graphile_worker, owned by the worker role); tasks are in src/worker/tasks/.
-- docs/DATA_FLOWS.md ("Producing jobs", "Fairness", "Failures") explains each with examples.
-- Idempotent; re-included by later migrations. (plpgsql throughout: the queue's own schema is
-- installed after the migrations run.)

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
  ('echo', 'Diagnostics: logs its payload (checks the path from a producer to the worker; used to measure the queue).')
on conflict (task) do update set description = excluded.description;

-- Fairness: how many jobs each organization queued in the current minute. A job's priority is
-- that count (plus the previous minute's) / 100 (graphile-worker runs lower numbers first), so an
-- organization that queues 10,000 jobs at once sends the first 100 at priority 0, the next 100 at 1, and so on, while
-- another organization's single job still gets priority 0 and runs after at most ~100 of them.
create table if not exists app_private.job_enqueue_counts (
  organization_id uuid not null,
  minute timestamptz not null,
  jobs integer not null default 0,
  primary key (organization_id, minute)
);
alter table app_private.job_enqueue_counts enable row level security;
alter table app_private.job_enqueue_counts force row level security;
comment on table app_private.job_enqueue_counts is 'Jobs queued per organization per minute: the basis of fair priorities (app_private.fair_job_priority). Rows older than a day are removed by the same function.';

create or replace function app_private.fair_job_priority(organization_id uuid, jobs integer default 1) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_before integer;
  v_previous integer;
begin
  insert into app_private.job_enqueue_counts as c (organization_id, minute, jobs)
  values (fair_job_priority.organization_id, date_trunc('minute', now()), fair_job_priority.jobs)
  on conflict on constraint job_enqueue_counts_pkey do update set jobs = c.jobs + excluded.jobs
  returning c.jobs - fair_job_priority.jobs into v_before;
  -- The previous minute counts too: a busy organization does not start again at priority 0 when
  -- the clock passes a minute (its backlog is still queued), while a quiet one stays at 0.
  select coalesce(sum(c.jobs), 0) into v_previous
  from app_private.job_enqueue_counts c
  where c.organization_id = fair_job_priority.organization_id and c.minute = date_trunc('minute', now()) - interval '1 minute';
  if random() < 0.001 then
    delete from app_private.job_enqueue_counts c where c.minute < now() - interval '1 day';
  end if;
  return least((v_before + v_previous) / 100, 32000);
end
$$;
revoke all on function app_private.fair_job_priority(uuid, integer) from public;
comment on function app_private.fair_job_priority(uuid, integer) is 'The priority for the next job(s) of an organization: jobs it queued this minute / 100 (lower runs first).';

-- The producers' API: queue `task` for `organization_id`. The payload (a JSON object) gets the
-- organization_id; `job_key` collapses duplicates (graphile-worker's job_key, prefixed with the
-- organization so tenants never collide). Returns the job id.
create or replace function app_private.enqueue_job(
  task text,
  organization_id uuid,
  payload jsonb default '{}',
  run_at timestamptz default null,
  job_key text default null,
  max_attempts integer default 10
) returns bigint
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_id bigint;
begin
  if not exists (select from app_private.producer_tasks t where t.task = enqueue_job.task) then
    perform app_private.fail('UNKNOWN_TASK', format('Other services may not queue %L; see app_private.producer_tasks for the tasks they may.', task));
  end if;
  if payload is null or jsonb_typeof(payload) <> 'object' then
    raise exception 'payload must be a JSON object' using errcode = '22023';
  end if;
  if not exists (select from app_public.organizations o where o.id = enqueue_job.organization_id) then
    raise exception 'no organization %', organization_id using errcode = '22023';
  end if;
  if max_attempts is null or max_attempts not between 1 and 25 then
    raise exception 'max_attempts must be from 1 to 25' using errcode = '22023';
  end if;
  select j.id into v_id
  from graphile_worker.add_job(
    task,
    (payload || jsonb_build_object('organization_id', organization_id))::json,
    run_at => run_at,
    job_key => case when job_key is null then null else format('%s:%s:%s', task, organization_id, job_key) end,
    max_attempts => max_attempts,
    priority => app_private.fair_job_priority(organization_id)
  ) j;
  return v_id;
end
$$;
revoke all on function app_private.enqueue_job(text, uuid, jsonb, timestamptz, text, integer) from public;
grant execute on function app_private.enqueue_job(text, uuid, jsonb, timestamptz, text, integer) to :DATABASE_PRODUCER, :DATABASE_WORKER;
comment on function app_private.enqueue_job(text, uuid, jsonb, timestamptz, text, integer) is 'Queues a job for other services (role DATABASE_PRODUCER): a task from app_private.producer_tasks, for one organization, with a fair priority. Returns the job id.';
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
