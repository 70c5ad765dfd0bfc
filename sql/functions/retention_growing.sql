-- Retention of the tables that grow with use (the activity log's rules are in
-- sql/functions/activity_retention.sql; its rule 'activity_events' runs here). Nothing here is
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
-- and, with a fixed window, its invitations never accepted, 30 days after they expired (rule
-- expired_invitations).
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
create index if not exists invitations_organization_id_expires_at_idx on app_public.invitations (organization_id, expires_at) where accepted_at is null;
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
  select unnest(array['webhook_payloads', 'email_messages', 'expired_invitations', 'activity_events'])
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
  when 'expired_invitations' then
    -- An invitation never accepted is useless once expired (accepting answers
    -- INVITATION_INVALID); 30 days later it goes with the address it was sent to. (An accepted
    -- one stays: it records who invited the member.)
    with batch as materialized (
      select o.id from app_public.invitations o
      where o.organization_id = v_org and o.accepted_at is null and o.expires_at < now() - interval '30 days'
      order by o.expires_at limit batch_size for update skip locked)
    delete from app_public.invitations i using batch b where i.organization_id = v_org and i.id = b.id;
  when 'activity_events' then
    -- The activity log's expired events, through its retention door
    -- (sql/functions/activity_retention.sql).
    return app_private.purge_expired_activity(batch_size);
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
