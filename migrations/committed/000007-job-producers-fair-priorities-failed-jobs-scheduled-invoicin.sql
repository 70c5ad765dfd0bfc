--! Previous: sha1:75621c7f5c0567884deb823df53fa6a1e31aec38
--! Hash: sha1:876e5194857cb645e7830c425548cccd787aca61
--! Message: Job producers, fair priorities, failed jobs; scheduled invoicing; retention purge

-- Jobs for other services (role DATABASE_PRODUCER, app_private.enqueue_job), fair priorities per
-- organization, queue depth and failed jobs for operators (sql/functions/jobs.sql).
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
  ('NOT_RETRYABLE', 'AT471', 409, 'Only failed or cancelled deliveries of an enabled endpoint can be sent again.'),
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
--! EndIncluded errors.sql
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
-- that count / 100 (graphile-worker runs lower numbers first), so an organization that queues
-- 10,000 jobs at once sends the first 100 at priority 0, the next 100 at 1, and so on, while
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
begin
  insert into app_private.job_enqueue_counts as c (organization_id, minute, jobs)
  values (fair_job_priority.organization_id, date_trunc('minute', now()), fair_job_priority.jobs)
  on conflict on constraint job_enqueue_counts_pkey do update set jobs = c.jobs + excluded.jobs
  returning c.jobs - fair_job_priority.jobs into v_before;
  if random() < 0.001 then
    delete from app_private.job_enqueue_counts c where c.minute < now() - interval '1 day';
  end if;
  return least(v_before / 100, 32000);
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
comment on column app_public.webhook_deliveries.payload is 'The JSON body POSTed (the same on every attempt; its `id` is this delivery''s id, for receivers to ignore repeats).';

-- The payload is large and the same as the event it carries: left out of the activity log.
call app_private.make_tenant_table('app_public.webhook_deliveries', 'webhooks',
  secret_columns => array['payload'], insertable => false, updatable => false);

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
  for update;
  if not found then
    perform app_private.fail('NOT_FOUND', 'No such webhook delivery in this organization.');
  elsif v_delivery.status not in ('failed', 'cancelled') then
    perform app_private.fail('NOT_RETRYABLE', format('Only failed or cancelled deliveries can be retried; this one is %s.', v_delivery.status));
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

-- Scheduled invoicing and the retention purge (docs/DATA_FLOWS.md).
--! Included functions/invoice_schedules.sql
-- Scheduled invoicing: invoices generated from app_public.invoice_schedules by the job worker
-- (src/worker/tasks/scheduled_invoicing.ts fans out, tenant_invoicing.ts runs one organization):
--
--   recurring  one invoice per period: the period starting on next_run_on, then every week,
--              month, quarter or year after it, up to and including `day`; a run that comes late
--              (the worker was down) bills every missed period, each on its own invoice. Periods
--              are counted from the schedule's anchor (anchor_on), so month ends do not drift:
--              Jan 31, Feb 28, Mar 31. A period starting after ends_on is not billed: the
--              schedule then becomes inactive.
--   fixed      one invoice on next_run_on, then the schedule becomes inactive.
--   milestone  one invoice once its milestone is reached, then the schedule becomes inactive.
--
-- Exactly once per period: each invoice carries its schedule and period_start, and the unique
-- constraint invoices_organization_id_schedule_id_period_start_key admits one invoice per
-- schedule and period, whatever runs concurrently. The generator also locks each due schedule
-- (FOR UPDATE) before billing it, so a second run waits, then finds the schedule advanced and
-- bills nothing (tests/invoice-schedules.test.ts, two parallel connections).
--
-- An invoice is a draft with one line (the schedule's description and amount, for the period)
-- and the schedule's tax rate. With auto_send the generator sends it at once through
-- app_public.send_invoice, in the same transaction: the gapless number, issue and due dates
-- (issue date + the organization's payment_terms_days), status stamps, audit event and outbox job
-- are exactly those of a person sending it.
-- Only schedules of live engagements (active or on hold, not deleted) bill; soft-deleted or
-- inactive schedules never do. Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- Columns

alter table app_public.invoice_schedules
  add column if not exists auto_send boolean not null default false,
  add column if not exists tax_rate numeric(5,2) not null default 0 check (tax_rate between 0 and 100),
  add column if not exists anchor_on date;
comment on column app_public.invoice_schedules.auto_send is 'Send each generated invoice at once (numbered, dated, due after the organization''s payment terms); otherwise it stays a draft to review and send.';
comment on column app_public.invoice_schedules.tax_rate is 'Tax rate (percent) of the invoices it generates.';
comment on column app_public.invoice_schedules.anchor_on is 'Recurring schedules: the date periods are counted from (kept by the database: the first next_run_on, and any next_run_on moved off its rhythm).';
comment on column app_public.invoice_schedules.next_run_on is 'Recurring: the start of the next period to bill; fixed: the billing date. Advanced by the invoicing job.';
comment on column app_public.invoice_schedules.active is 'Inactive schedules bill nothing; a fixed or milestone schedule, or a recurring one past ends_on, becomes inactive once it has billed.';
-- The visitor sets auto_send and tax_rate like the other schedule fields; anchor_on is the
-- database's (no privilege, like last_invoiced_at).
grant insert (auto_send, tax_rate), update (auto_send, tax_rate) on app_public.invoice_schedules to :DATABASE_VISITOR;

alter table app_public.invoices
  add column if not exists period_start date,
  add column if not exists period_end date;
comment on column app_public.invoices.period_start is 'Invoices generated by a schedule: the start of the period billed (recurring), the billing date (fixed) or the day the milestone was reached. One invoice per schedule and period.';
comment on column app_public.invoices.period_end is 'Recurring schedules: the last day of the period billed.';
alter table app_public.invoices drop constraint if exists invoices_schedule_period_check;
alter table app_public.invoices add constraint invoices_schedule_period_check
  check ((schedule_id is null) = (period_start is null) and period_end >= period_start);
-- Exactly once per period: the one rule every concurrent or repeated run meets.
do $$
begin
  if not exists (select from pg_constraint where conname = 'invoices_organization_id_schedule_id_period_start_key' and conrelid = 'app_public.invoices'::regclass) then
    alter table app_public.invoices
      add constraint invoices_organization_id_schedule_id_period_start_key unique (organization_id, schedule_id, period_start);
  end if;
end
$$;
-- period_start and period_end get no visitor privilege: only the generator writes them (like
-- schedule_id, a read-only column of invoices).

------------------------------------------------------------------------------------------------
-- Periods

-- The length of one period of a recurring schedule.
create or replace function app_private.schedule_step(frequency app_public.schedule_frequency) returns interval
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select case frequency
    when 'weekly' then interval '7 days'
    when 'monthly' then interval '1 month'
    when 'quarterly' then interval '3 months'
    when 'yearly' then interval '1 year'
  end
$$;

-- The first period start after `after` of a schedule anchored on `anchor`: anchor + n steps for
-- the smallest such n, each counted from the anchor (never from the previous, possibly clamped,
-- start), so a schedule anchored on the 31st bills on the 31st of every month that has one.
create or replace function app_private.schedule_next_start(anchor date, frequency app_public.schedule_frequency, after date) returns date
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
declare
  v_step interval := app_private.schedule_step(frequency);
  -- A lower bound for n: no period is longer than this many days.
  v_n integer := greatest(0, (after - anchor) / case frequency when 'weekly' then 7 when 'monthly' then 31 when 'quarterly' then 92 else 366 end - 1);
begin
  while (anchor + v_n * v_step)::date <= after loop
    v_n := v_n + 1;
  end loop;
  return (anchor + v_n * v_step)::date;
end
$$;

-- BEFORE INSERT OR UPDATE OF next_run_on, frequency, kind: keeps anchor_on. A new recurring
-- schedule is anchored on its next_run_on; moving next_run_on to a date off the anchor's rhythm
-- (or changing the frequency so that it is) re-anchors it there. The generator only moves
-- next_run_on along the rhythm, which keeps the anchor. SECURITY DEFINER so that the visitor
-- needs no privilege on the period helpers.
create or replace function app_private.tg__invoice_schedule_anchor() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if new.kind <> 'recurring' or new.next_run_on is null then
    new.anchor_on := null;
  elsif tg_op = 'INSERT' or new.anchor_on is null or new.anchor_on > new.next_run_on
     or app_private.schedule_next_start(new.anchor_on, new.frequency, new.next_run_on - 1) <> new.next_run_on then
    new.anchor_on := new.next_run_on;
  end if;
  return new;
end
$$;

drop trigger if exists tg_invoice_schedules__anchor on app_public.invoice_schedules;
create trigger tg_invoice_schedules__anchor before insert or update of next_run_on, frequency, kind on app_public.invoice_schedules
  for each row execute function app_private.tg__invoice_schedule_anchor();
-- Schedules made before the column existed.
update app_public.invoice_schedules s set anchor_on = s.next_run_on
where s.kind = 'recurring' and s.anchor_on is null and s.next_run_on is not null;

------------------------------------------------------------------------------------------------
-- Generating

-- Is schedule `s` due on `day`? Active, not deleted, its engagement live (active or on hold, not
-- deleted), and: a date schedule's next_run_on has come; a milestone schedule's milestone is
-- reached. One definition for the fan-out and the generator.
create or replace function app_private.invoice_schedule_is_due(s app_public.invoice_schedules, day date) returns boolean
language sql stable
set search_path = pg_catalog
as $$
  select s.active and s.deleted_at is null
    and exists (
      select from app_public.engagements e
      where e.organization_id = s.organization_id and e.id = s.engagement_id
        and e.deleted_at is null and e.status in ('active', 'on_hold')
    )
    and case
      when s.kind = 'milestone' then exists (
        select from app_public.milestones m
        where m.organization_id = s.organization_id and m.id = s.milestone_id and m.status = 'reached'
      )
      else s.next_run_on <= day
    end
$$;

-- One invoice of schedule `s` for the period [period_start, period_end]: a draft with one line,
-- sent at once when the schedule says so. Returns its id, or null when that period already has
-- its invoice (the unique constraint decides, so concurrent runs cannot both create it).
create or replace function app_private.create_scheduled_invoice(s app_public.invoice_schedules, period_start date, period_end date, label text) returns uuid
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v_id uuid;
begin
  insert into app_public.invoices (organization_id, client_company_id, engagement_id, schedule_id, period_start, period_end, tax_rate)
  select s.organization_id, e.client_company_id, e.id, s.id, create_scheduled_invoice.period_start, create_scheduled_invoice.period_end, s.tax_rate
  from app_public.engagements e
  where e.organization_id = s.organization_id and e.id = s.engagement_id
  on conflict on constraint invoices_organization_id_schedule_id_period_start_key do nothing
  returning id into v_id;
  if v_id is null then
    return null;
  end if;
  insert into app_public.invoice_line_items (organization_id, invoice_id, position, description, quantity, unit_price)
  values (s.organization_id, v_id, 1, left(s.description || coalesce(', ' || label, ''), 1000), 1, s.amount);
  if s.auto_send then
    perform app_public.send_invoice(v_id);
  end if;
  return v_id;
end
$$;

-- Bills every due period of the current organization's schedules up to `day` (see the top of
-- this file) and returns how many invoices it created. Only the worker's session, inside one
-- organization; a second run for the same day creates nothing.
create or replace function app_private.generate_scheduled_invoices(day date) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_private.require_worker_in_organization();
  s app_public.invoice_schedules;
  v_start date;
  v_next date;
  v_last date;
  v_created integer := 0;
  v_before integer;
begin
  -- Locked in id order (two runs never deadlock); a row changed by a concurrent run is re-read
  -- and re-checked after its lock is granted, so a schedule that run advanced is no longer due.
  for s in
    select t.* from app_public.invoice_schedules t
    where t.organization_id = v_org and t.active and t.deleted_at is null
      and (t.kind = 'milestone' or t.next_run_on <= day)
      and app_private.invoice_schedule_is_due(t, day)
    order by t.id
    for update of t
  loop
    v_before := v_created;
    if s.kind = 'recurring' then
      v_start := s.next_run_on;
      v_last := s.next_run_on;
      while v_start <= day and (s.ends_on is null or v_start <= s.ends_on) loop
        v_next := app_private.schedule_next_start(coalesce(s.anchor_on, s.next_run_on), s.frequency, v_start);
        if app_private.create_scheduled_invoice(s, v_start, v_next - 1, format('%s – %s', v_start, v_next - 1)) is not null then
          v_created := v_created + 1;
        end if;
        v_last := v_start;
        v_start := v_next;
      end loop;
      if s.ends_on is not null and v_start > s.ends_on then
        -- The last period is billed: next_run_on stays on it (it may not pass ends_on).
        update app_public.invoice_schedules t set active = false, next_run_on = v_last,
          last_invoiced_at = case when v_created > v_before then now() else t.last_invoiced_at end
        where t.organization_id = v_org and t.id = s.id;
      else
        update app_public.invoice_schedules t set next_run_on = v_start,
          last_invoiced_at = case when v_created > v_before then now() else t.last_invoiced_at end
        where t.organization_id = v_org and t.id = s.id;
      end if;
    else
      if app_private.create_scheduled_invoice(
        s,
        case when s.kind = 'fixed' then s.next_run_on else (
          select (m.reached_at at time zone 'UTC')::date from app_public.milestones m
          where m.organization_id = v_org and m.id = s.milestone_id
        ) end,
        null,
        null
      ) is not null then
        v_created := v_created + 1;
      end if;
      update app_public.invoice_schedules t set active = false,
        last_invoiced_at = case when v_created > v_before then now() else t.last_invoiced_at end
      where t.organization_id = v_org and t.id = s.id;
    end if;
  end loop;
  return v_created;
end
$$;

-- One tenant_invoicing job per organization that has a schedule due on `day` (job key
-- tenant_invoicing:<organization>:<day>: one per organization and day, however often the crontab
-- fires or backfills). Returns how many organizations.
create or replace function app_private.enqueue_scheduled_invoicing(day date) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_count integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker runs scheduled invoicing.');
  end if;
  select count(*) into v_count
  from (
    select distinct s.organization_id
    from app_public.invoice_schedules s
    where s.active and s.deleted_at is null
      and (s.kind = 'milestone' or s.next_run_on <= day)
      and app_private.invoice_schedule_is_due(s, day)
  ) o,
    lateral graphile_worker.add_job(
      'tenant_invoicing',
      json_build_object('organization_id', o.organization_id, 'day', day),
      job_key => format('tenant_invoicing:%s:%s', o.organization_id, day),
      max_attempts => 10
    ) j;
  return v_count;
end
$$;

revoke all on function
  app_private.schedule_step(app_public.schedule_frequency),
  app_private.schedule_next_start(date, app_public.schedule_frequency, date),
  app_private.tg__invoice_schedule_anchor(),
  app_private.invoice_schedule_is_due(app_public.invoice_schedules, date),
  app_private.create_scheduled_invoice(app_public.invoice_schedules, date, date, text),
  app_private.generate_scheduled_invoices(date),
  app_private.enqueue_scheduled_invoicing(date)
from public;
-- The worker's grants are at the end of the migration that includes this file.
--! EndIncluded functions/invoice_schedules.sql
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
-- parts, role links, portal access: ON DELETE CASCADE; time entries of a purged draft invoice are
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

-- Scheduled invoicing and the retention purge run as the job worker (docs/DATA_FLOWS.md).
grant execute on function
  app_private.enqueue_scheduled_invoicing(date),
  app_private.generate_scheduled_invoices(date),
  app_private.enqueue_retention_purge(date),
  app_private.purge_deleted_records()
to :DATABASE_WORKER;
