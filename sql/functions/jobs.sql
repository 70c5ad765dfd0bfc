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
