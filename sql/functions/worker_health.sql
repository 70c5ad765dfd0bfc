-- Worker heartbeats and the recovery of jobs held by dead workers.
--
-- graphile-worker locks a job while a worker runs it and only takes back locks older than 4 hours,
-- so a worker killed mid-job (SIGKILL, OOM, a lost machine) would leave its job stuck that long.
-- Atrium's workers each record a heartbeat (src/worker/heartbeat.ts): their pool id (the
-- `locked_by` of every job they take), host, pid and when they were last seen. Every heartbeat
-- also sweeps: a worker not seen for `stale_after` is dead, its row is removed and
-- graphile_worker.force_unlock_workers() frees its jobs, which run again at once (their attempt
-- counted). Locks held by a pool that has no heartbeat row at all are freed once they are older
-- than `stale_after` too (a worker that died before its first heartbeat).
-- Defaults: a heartbeat every 10 s, dead after 45 s (WORKER_HEARTBEAT_INTERVAL_MS,
-- WORKER_STALE_AFTER_MS), so a killed worker's job runs again within about a minute. A worker
-- that was only paused learns from its next heartbeat that it was declared dead, and is fenced
-- from the jobs it held (src/worker/fencing.ts; the arithmetic: docs/DATA_FLOWS.md).
-- Idempotent; re-included by later migrations.

create table if not exists app_private.worker_heartbeats (
  worker_id text primary key,
  hostname text not null,
  pid integer not null,
  started_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now()
);
alter table app_private.worker_heartbeats enable row level security;
alter table app_private.worker_heartbeats force row level security;
comment on table app_private.worker_heartbeats is 'Running job workers (graphile-worker pool id = locked_by of their jobs) and when each was last seen.';
revoke all on app_private.worker_heartbeats from public;
grant select, insert, update, delete on app_private.worker_heartbeats to :DATABASE_WORKER;
drop policy if exists worker_all_select on app_private.worker_heartbeats;
drop policy if exists worker_all_insert on app_private.worker_heartbeats;
drop policy if exists worker_all_update on app_private.worker_heartbeats;
drop policy if exists worker_all_delete on app_private.worker_heartbeats;
create policy worker_all_select on app_private.worker_heartbeats for select to :DATABASE_WORKER using (true);
create policy worker_all_insert on app_private.worker_heartbeats for insert to :DATABASE_WORKER with check (true);
create policy worker_all_update on app_private.worker_heartbeats for update to :DATABASE_WORKER using (true) with check (true);
create policy worker_all_delete on app_private.worker_heartbeats for delete to :DATABASE_WORKER using (true);
comment on policy worker_all_select on app_private.worker_heartbeats is 'Workers see every worker''s heartbeat (to find dead ones).';
comment on policy worker_all_insert on app_private.worker_heartbeats is 'A worker registers itself.';
comment on policy worker_all_update on app_private.worker_heartbeats is 'A worker records that it is alive.';
comment on policy worker_all_delete on app_private.worker_heartbeats is 'A worker removes itself on shutdown, or a dead worker''s row when sweeping.';

-- Records that `worker_id` is alive.
create or replace function app_private.worker_heartbeat(worker_id text, hostname text, pid integer) returns void
language sql volatile
set search_path = pg_catalog
as $$
  insert into app_private.worker_heartbeats as h (worker_id, hostname, pid)
  values (worker_id, hostname, pid)
  on conflict on constraint worker_heartbeats_pkey do update set last_seen_at = now(), hostname = excluded.hostname, pid = excluded.pid
$$;
revoke all on function app_private.worker_heartbeat(text, text, integer) from public;
grant execute on function app_private.worker_heartbeat(text, text, integer) to :DATABASE_WORKER;

-- Records that `worker_id` is alive and says whether it still counts as alive. `register`: the
-- pool's first heartbeat, which creates its row. Afterwards only an existing row is touched, and
-- false means the row is gone: another worker declared this one dead (recover_stale_workers) and
-- its jobs run elsewhere. The worker then stops acting for the jobs it held and starts afresh
-- under a new pool id (src/worker/heartbeat.ts, src/worker/fencing.ts) — a swept worker never
-- brings its row back. (The three-argument form above, which re-creates the row, stays for
-- workers of earlier versions.)
create or replace function app_private.worker_heartbeat(worker_id text, hostname text, pid integer, register boolean) returns boolean
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  if register then
    insert into app_private.worker_heartbeats as h (worker_id, hostname, pid)
    values (worker_heartbeat.worker_id, worker_heartbeat.hostname, worker_heartbeat.pid)
    on conflict on constraint worker_heartbeats_pkey do update set last_seen_at = now(), hostname = excluded.hostname, pid = excluded.pid;
    return true;
  end if;
  update app_private.worker_heartbeats h
  set last_seen_at = now(), hostname = worker_heartbeat.hostname, pid = worker_heartbeat.pid
  where h.worker_id = worker_heartbeat.worker_id;
  return found;
end
$$;
revoke all on function app_private.worker_heartbeat(text, text, integer, boolean) from public;
grant execute on function app_private.worker_heartbeat(text, text, integer, boolean) to :DATABASE_WORKER;

-- Frees the jobs of workers not seen for `stale_after` (and of lock holders that never had a
-- heartbeat, once their locks are that old). Returns one row per dead worker with how many jobs
-- it held. Safe to run from every worker at once.
create or replace function app_private.recover_stale_workers(stale_after interval)
returns table (worker_id text, last_seen_at timestamptz, jobs_unlocked integer)
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_gone text[];
  v_seen timestamptz[];
  v_orphans text[];
  v_dead text[];
begin
  if stale_after < interval '1 second' then
    raise exception 'stale_after must be at least 1 second' using errcode = '22023';
  end if;
  with gone as (
    delete from app_private.worker_heartbeats h
    where h.last_seen_at < now() - stale_after
    returning h.worker_id, h.last_seen_at
  )
  select coalesce(array_agg(g.worker_id order by g.worker_id), '{}'), coalesce(array_agg(g.last_seen_at order by g.worker_id), '{}')
  into v_gone, v_seen
  from gone g;
  select coalesce(array_agg(distinct j.locked_by), '{}') into v_orphans
  from graphile_worker._private_jobs j
  where j.locked_by is not null and j.locked_at < now() - stale_after
    and j.locked_by <> all (v_gone)
    and not exists (select from app_private.worker_heartbeats h where h.worker_id = j.locked_by);
  v_dead := v_gone || v_orphans;
  if cardinality(v_dead) = 0 then
    return;
  end if;
  return query
    select d.worker_id, d.last_seen_at, (select count(*)::integer from graphile_worker._private_jobs j where j.locked_by = d.worker_id)
    from (
      select g.worker_id, g.last_seen_at from unnest(v_gone, v_seen) as g(worker_id, last_seen_at)
      union all
      select o.worker_id, null::timestamptz from unnest(v_orphans) as o(worker_id)
    ) d
    order by 1;
  perform graphile_worker.force_unlock_workers(v_dead);
end
$$;
revoke all on function app_private.recover_stale_workers(interval) from public;
grant execute on function app_private.recover_stale_workers(interval) to :DATABASE_WORKER;
