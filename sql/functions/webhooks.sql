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

-- The catalogue of domain events (its own file, so that a migration adding events need not
-- re-run this one).
--!include functions/webhook_events.sql

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

-- The current organization's events of one transaction. Every event of a transaction carries its
-- start time (occurred_at defaults to now()); given it, the read looks in the months around it
-- only instead of in every month of the log. Inlined into the caller's query.
create or replace function app_private.transaction_events(transaction_id bigint, occurred_at timestamptz default null)
returns setof app_public.activity_events
language sql stable
-- (No SET clause: it would keep the function from being inlined. Every name is qualified.)
as $$
  select e.* from app_public.activity_events e
  where e.organization_id = app_public.current_org_id()
    and e.transaction_id = transaction_events.transaction_id
    and e.occurred_at >= coalesce(transaction_events.occurred_at - interval '1 day', '-infinity')
    and e.occurred_at <= coalesce(transaction_events.occurred_at + interval '1 day', 'infinity')
$$;
revoke all on function app_private.transaction_events(bigint, timestamptz) from public;
grant execute on function app_private.transaction_events(bigint, timestamptz) to :DATABASE_WORKER;

-- Called by dispatch_activity (worker, inside the organization): the transaction's domain events
-- become deliveries to the subscribed, enabled endpoints, each with its job. Returns how many
-- deliveries were created (0 when a retried dispatch finds them already there). `occurred_at`, the
-- transaction's time when the job carries it, lets the read look in that month of the log only
-- (app_private.transaction_events).
drop function if exists app_private.queue_webhook_deliveries(bigint);
create or replace function app_private.queue_webhook_deliveries(transaction_id bigint, occurred_at timestamptz default null) returns integer
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
    from app_private.transaction_events(queue_webhook_deliveries.transaction_id, queue_webhook_deliveries.occurred_at) e
    join app_private.webhook_event_rules r on r.table_name = e.table_name
    where (

        (r.to_status is null and e.action = 'insert')
        or (r.to_status is not null and e.new_values ->> r.status_column = r.to_status and (
          e.action = 'insert'
          or (e.action = 'update' and e.old_values ->> r.status_column is distinct from r.to_status)
        ))
      )
  ),
  deliveries as (
    insert into app_public.webhook_deliveries (organization_id, id, endpoint_id, event_type, activity_event_id, payload)
    select v_org, d.id, d.endpoint_id, d.event_type, d.event_id,
      jsonb_build_object(
        'id', d.id,
        'type', d.event_type,
        'created_at', d.occurred_at,
        'organization_id', v_org,
        'data', jsonb_build_object('table', d.table_name, 'id', d.record_id, 'object', d.new_values, 'previous', d.previous)
      )
    from (
      -- A new id per delivery: in the select list, evaluated for each row (an uncorrelated
      -- sub-select would be evaluated once and give every delivery the same id).
      select gen_random_uuid() as id, w.id as endpoint_id, ev.event_type, ev.id as event_id, ev.occurred_at, ev.table_name, ev.record_id, ev.new_values, ev.previous
      from events ev
      join app_public.webhook_endpoints w on w.organization_id = v_org and w.enabled and w.deleted_at is null
        and (ev.event_type = any (w.event_types) or '*' = any (w.event_types))
        and ev.occurred_at >= w.created_at -- an endpoint receives what happens after it was registered
    ) d
    on conflict on constraint webhook_deliveries_one_per_event do nothing
    returning organization_id, id
  )
  select count(*)::integer into v_count
  from deliveries d, lateral app_private.enqueue_webhook_delivery(d.organization_id, d.id);
  return v_count;
end
$$;
revoke all on function app_private.queue_webhook_deliveries(bigint, timestamptz) from public;
grant execute on function app_private.queue_webhook_deliveries(bigint, timestamptz) to :DATABASE_WORKER;

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
  -- The endpoint's row first, then the delivery's: attempts at one endpoint take their turns, in
  -- the order the disabling below takes its locks (the endpoint, then its pending deliveries).
  -- Locking the delivery first deadlocked two attempts at one endpoint when one of them disabled it.
  perform from app_public.webhook_endpoints w
  where w.organization_id = v_org
    and w.id = (select d.endpoint_id from app_public.webhook_deliveries d where d.organization_id = v_org and d.id = record_webhook_attempt.delivery_id)
  for no key update;
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
