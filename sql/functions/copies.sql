-- Copies of rows read only by the readers of their source. Data leaves its table through side
-- doors: the activity log (old and new values: sql/functions/activity.sql), webhook deliveries
-- (the payload is the row) and webhook endpoints (which receive those payloads). Each door is
-- held to the rule of the table the data comes from, `<area>.read` as recorded in
-- app_private.activity_read_rules (make_tenant_table registers every table's area there):
--
--   * a webhook delivery names its source table (`source_table`, set by the trigger below from
--     its event type; a ping's source is the endpoint itself). Its row — payload, event type,
--     times — and its events in the activity log are read by members holding webhooks.read AND
--     the read permission of the source: a member with webhooks.read alone sees the pings and
--     nothing of deals, invoices, payments or contracts (the standard select policy does this for
--     every table with a source_table column: app_private.create_tenant_policies);
--   * subscribing an endpoint to events (creating it, or changing its URL or event types) needs
--     the read permission of every source table it would receive (`*`: of all of them), or
--     PERMISSION_NOT_HELD: webhooks.write must not be a way to mail oneself the deals.
--   * retrying a delivery finds only the deliveries one may read (sql/functions/webhooks.sql).
-- Emails and jobs are not readable through the API at all (app_private, graphile_worker).
-- Idempotent; re-included by later migrations.

alter table app_public.webhook_deliveries add column if not exists source_table text;
comment on column app_public.webhook_deliveries.source_table is 'The table whose row the payload carries (from the event type; webhook_endpoints for a ping). Only members who may read that table see the delivery.';

-- The source of a delivery: the table of its event type, or the endpoint itself for `ping`.
create or replace function app_private.tg_webhook_deliveries__source() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  new.source_table := coalesce(
    (select r.table_name from app_private.webhook_event_rules r where r.event_type = new.event_type),
    'webhook_endpoints');
  return new;
end
$$;
drop trigger if exists tg_webhook_deliveries__source on app_public.webhook_deliveries;
create trigger tg_webhook_deliveries__source before insert or update of event_type, source_table on app_public.webhook_deliveries
  for each row execute function app_private.tg_webhook_deliveries__source();

-- Deliveries made before they named their source (no audit events: nothing else changes).
do $$
begin
  if exists (select from app_public.webhook_deliveries d where d.source_table is null) then
    alter table app_public.webhook_deliveries disable trigger tg_webhook_deliveries__audit_update;
    update app_public.webhook_deliveries d
    set source_table = coalesce((select r.table_name from app_private.webhook_event_rules r where r.event_type = d.event_type), 'webhook_endpoints')
    where d.source_table is null;
    alter table app_public.webhook_deliveries enable trigger tg_webhook_deliveries__audit_update;
  end if;
end
$$;
alter table app_public.webhook_deliveries alter column source_table set not null;

-- The select policy now asks for the source too (it is made for every table with source_table).
call app_private.create_tenant_policies('app_public.webhook_deliveries', 'webhooks', false, insertable => false, updatable => false);

-- An endpoint receives copies of the rows its events carry: who subscribes it must read them.
create or replace function app_private.tg_webhook_endpoints__sources_readable() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_missing text;
begin
  if session_user not in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name)
     or (tg_op = 'UPDATE' and new.url = old.url and new.event_types = old.event_types) then
    return new;
  end if;
  select string_agg(distinct coalesce(rr.permission, format('the %s role', rr.min_role), r.table_name), ', '
    order by coalesce(rr.permission, format('the %s role', rr.min_role), r.table_name)) into v_missing
  from app_private.webhook_event_rules r
  left join app_private.activity_read_rules rr on rr.table_name = r.table_name
  where (r.event_type = any (new.event_types) or '*' = any (new.event_types))
    and r.table_name <> all (app_private.readable_activity_tables());
  if v_missing is not null then
    perform app_private.fail('PERMISSION_NOT_HELD', format(
      'A webhook endpoint receives the rows its events carry: to subscribe it to these events you need %s.', v_missing));
  end if;
  return new;
end
$$;
drop trigger if exists tg_webhook_endpoints__sources_readable on app_public.webhook_endpoints;
create trigger tg_webhook_endpoints__sources_readable before insert or update of url, event_types on app_public.webhook_endpoints
  for each row execute function app_private.tg_webhook_endpoints__sources_readable();
