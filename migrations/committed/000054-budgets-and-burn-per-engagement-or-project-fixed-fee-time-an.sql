--! Previous: sha1:d04221327b15f91514d68c59b9dee42a2d8dc8c4
--! Hash: sha1:d4fa07603462ad4fd7d05ff097890955037c9deb
--! Message: Budgets and burn: per engagement or project (fixed fee, time and materials, capped, retainer with rollover), burn from approved time and expenses (Budget.burn, Budget.periods), thresholds recorded once by the outbox consumer with an email to owners and admins and the webhook event budget.threshold_crossed; invoice emails in the invoice's currency

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
set local statement_timeout = '60s';
-- Budgets and burn: per engagement or project, fixed fee / time and materials / capped /
-- retainer with rollover; burn from approved time and expenses; thresholds alert once.
--! Included functions/budgets.sql
-- Budgets and burn (docs/ENTITIES.md, "Budgets and burn").
--
--   budgets        per engagement, or per project of it: hours and/or money, of a kind —
--                    fixed_fee           the client pays `amount` whatever it takes; burn is the
--                                        value of the work done against the fee;
--                    time_and_materials  billed as worked; the budget is the estimate;
--                    capped              time and materials up to `amount`;
--                    retainer            `hours` (and a fee, `amount`) per month from starts_on;
--                                        unused hours roll over to the next month when
--                                        rollover = 'unused_hours', at most rollover_max_hours
--                                        (none: all of them).
--                  Money is in the engagement's currency; a budget counts work from starts_on
--                  (the engagement's start unless given).
--   burn           (Budget.burn: app_public.budgets_burn; Budget.periods for every month of a
--                  retainer) counted from approved time — time of approved timesheets, or any
--                  time where the organization does not require approval — and approved
--                  expenses: hours are all hours worked (billable or not); money is billable time
--                  at its frozen rate plus the billable amount of expenses in the budget's
--                  currency (engagement budgets only: expenses name no project).
--   budget_alerts  a threshold (budgets.thresholds, percent; default 80 and 100) crossed, by
--                  hours or money, once per budget, period, measure and threshold: the row, an
--                  email to the organization's owners and admins (one send_email job each) and
--                  the webhook event budget.threshold_crossed. Checked by the outbox consumer
--                  (dispatch_activity → app_private.check_budgets_of_transaction) after every
--                  transaction that changes time, timesheets, expenses or budgets.
-- Burn reads time and expenses as the reader may (row-level security applies: a member without
-- time.read sees no hours burnt); the worker checks thresholds with the organization's full view.
-- Idempotent; re-included by later migrations.

create table if not exists app_public.budgets (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  engagement_id uuid not null,
  project_id uuid,
  name text not null check (length(btrim(name)) between 1 and 200),
  kind text not null check (kind in ('fixed_fee', 'time_and_materials', 'capped', 'retainer')),
  hours app_public.quantity check (hours > 0),
  amount app_public.money_amount check (amount > 0),
  currency text not null constraint budgets_currency_format check (currency ~ '^[A-Z]{3}$'),
  starts_on app_public.business_date not null,
  rollover text not null default 'none' check (rollover in ('none', 'unused_hours')),
  rollover_max_hours app_public.quantity check (rollover_max_hours >= 0),
  thresholds integer[] not null default '{80,100}'
    check (cardinality(thresholds) <= 10 and array_position(thresholds, null) is null and 1 <= all (thresholds) and 1000 >= all (thresholds)),
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz,
  primary key (organization_id, id),
  constraint budgets_measured check (hours is not null or amount is not null),
  constraint budgets_capped_amount check (kind <> 'capped' or amount is not null),
  constraint budgets_retainer_hours check (kind <> 'retainer' or hours is not null),
  constraint budgets_rollover_retainer check ((rollover = 'none' and rollover_max_hours is null) or kind = 'retainer'),
  foreign key (organization_id, engagement_id) references app_public.engagements,
  foreign key (organization_id, project_id) references app_public.projects
);
create index if not exists budgets_organization_id_engagement_id_idx on app_public.budgets (organization_id, engagement_id);
create index if not exists budgets_organization_id_project_id_idx on app_public.budgets (organization_id, project_id);
comment on table app_public.budgets is 'An engagement''s (or one of its projects'') budget in hours and/or money: fixed fee, time and materials, capped, or a monthly retainer with rollover. `burn` says how much is used; crossing a threshold alerts the owners and admins once.';
comment on column app_public.budgets.kind is 'fixed_fee, time_and_materials, capped (needs amount) or retainer (hours, and its fee as amount, per month from starts_on).';
comment on column app_public.budgets.hours is 'Hours budgeted (a retainer: per month).';
comment on column app_public.budgets.amount is 'Money budgeted, in the engagement''s currency (fixed fee: the fee; capped: the cap; retainer: the monthly fee).';
comment on column app_public.budgets.currency is E'@hasDefault\nThe engagement''s currency (copied, fixed).';
comment on column app_public.budgets.starts_on is E'@hasDefault\nWork from this day on counts (a retainer''s months start on it). By default: the engagement''s start.';
comment on column app_public.budgets.rollover is 'A retainer''s unused hours: none (lost at the month''s end) or unused_hours (added to the next month, at most rollover_max_hours).';
comment on column app_public.budgets.thresholds is 'Percentages of hours or money used that alert the owners and admins once each (default 80 and 100).';

create table if not exists app_public.budget_alerts (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  budget_id uuid not null,
  period_start app_public.business_date not null,
  measure text not null check (measure in ('hours', 'amount')),
  threshold integer not null check (threshold between 1 and 1000),
  percent_used app_public.quantity not null check (percent_used >= 0),
  used app_public.quantity not null,
  budgeted app_public.quantity not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  unique (organization_id, budget_id, period_start, measure, threshold),
  foreign key (organization_id, budget_id) references app_public.budgets on delete cascade
);
comment on table app_public.budget_alerts is E'@behavior -insert -update -delete\nA budget threshold crossed (once per budget, period, measure and threshold): its owners and admins were emailed, and webhooks receive budget.threshold_crossed.';
comment on column app_public.budget_alerts.period_start is 'The retainer month it happened in (other budgets: their starts_on).';
comment on column app_public.budget_alerts.used is 'Hours or money used when it was crossed.';

call app_private.make_tenant_table('app_public.budgets', 'engagements', soft_delete_as => 'budget');
call app_private.make_tenant_table('app_public.budget_alerts', 'engagements', insertable => false, updatable => false);
call app_private.classify_columns('app_public.budgets', '{"name": "free_text", "kind": "none", "rollover": "none", "currency": "none"}');
call app_private.classify_columns('app_public.budget_alerts', '{"measure": "none"}');
call app_private.set_audit_parent('app_public.budgets', 'engagement_id', 'app_public.engagements');
call app_private.set_audit_parent('app_public.budget_alerts', 'budget_id', 'app_public.budgets');
call app_private.declare_record_retention('app_public.budgets', false, 'a plan, not a booking');
call app_private.declare_record_retention('app_public.budget_alerts', false, 'a notification that was sent');

-- The currency: the engagement's, never changed (sql/functions/currencies.sql).
insert into app_private.currency_sources (table_name, source) values ('budgets', 'engagement')
on conflict (table_name) do update set source = excluded.source;
revoke update (currency) on app_public.budgets from :DATABASE_VISITOR;
drop trigger if exists tg_budgets__currency on app_public.budgets;
create trigger tg_budgets__currency before insert or update of currency on app_public.budgets
  for each row execute function app_private.tg__document_currency();

-- BEFORE INSERT OR UPDATE: starts_on defaults to the engagement's start; a project must be one of
-- the engagement's (reads the row's own organization only; row-level security judges the row).
create or replace function app_private.tg_budgets__scope() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  -- (An engagement not found leaves today: its foreign key refuses the row.)
  new.starts_on := coalesce(new.starts_on,
    (select e.starts_on from app_public.engagements e where e.organization_id = new.organization_id and e.id = new.engagement_id), current_date);
  if new.project_id is not null and not exists (
    select from app_public.projects p where p.organization_id = new.organization_id and p.id = new.project_id and p.engagement_id = new.engagement_id) then
    perform app_private.fail('INVALID_VALUE', 'A budget''s project must be one of its engagement''s projects.');
  end if;
  return new;
end
$$;
drop trigger if exists tg_budgets__scope on app_public.budgets;
create trigger tg_budgets__scope before insert or update of engagement_id, project_id, starts_on on app_public.budgets
  for each row execute function app_private.tg_budgets__scope();

do $$
begin
  if to_regtype('app_public.budget_period') is null then
    create type app_public.budget_period as (
      period_start date,
      period_end date,
      hours_budgeted numeric,
      hours_rolled_over numeric,
      hours_used numeric,
      hours_remaining numeric,
      hours_percent numeric,
      amount_budgeted numeric,
      amount_used numeric,
      amount_remaining numeric,
      amount_percent numeric
    );
  end if;
end
$$;
comment on type app_public.budget_period is 'A budget''s use over a period (a retainer''s month; other budgets: from starts_on on, no end): hours and money budgeted (a retainer''s hours include those rolled over), used, remaining, and used as a percentage.';

-- Hours and money used by a budget's scope per period: time (approved where the organization
-- requires approval) and approved expenses, from starts_on. Retainers: per month from starts_on;
-- other budgets: one period. As the caller may read them (row-level security).
create or replace function app_private.budget_usage(b app_public.budgets)
returns table (period_start date, hours numeric, amount numeric)
language sql stable
set search_path = pg_catalog
as $$
  with approval as (
    select coalesce((select o.time_approval_required from app_public.organizations o where o.id = b.organization_id), true) as required
  ), work as (
    select t.work_date as day, t.minutes / 60.0 as hours,
      case when t.billable then round(t.minutes / 60.0 * coalesce(t.rate, 0), 2) else 0 end as amount
    from app_public.time_entries t
    where t.organization_id = b.organization_id and t.engagement_id = b.engagement_id and t.deleted_at is null
      and t.work_date >= b.starts_on
      and (b.project_id is null or exists (
        select from app_public.tasks k where k.organization_id = t.organization_id and k.id = t.task_id and k.project_id = b.project_id))
      and (not (select a.required from approval a) or exists (
        select from app_public.timesheets s
        where s.organization_id = t.organization_id and s.member_id = t.member_id
          and s.week_starts_on = date_trunc('week', t.work_date)::date and s.status = 'approved'))
    union all
    select x.incurred_on, 0, x.billable_amount
    from app_public.expenses x
    where b.project_id is null and x.organization_id = b.organization_id and x.engagement_id = b.engagement_id
      and x.status = 'approved' and x.deleted_at is null and x.currency = b.currency and x.incurred_on >= b.starts_on
  )
  select case when b.kind = 'retainer'
           then (b.starts_on + make_interval(months => (extract(year from age(w.day, b.starts_on)) * 12 + extract(month from age(w.day, b.starts_on)))::integer))::date
           else b.starts_on::date end,
    round(sum(w.hours), 2), sum(w.amount)
  from work w
  group by 1
$$;
revoke all on function app_private.budget_usage(app_public.budgets) from public;
grant execute on function app_private.budget_usage(app_public.budgets) to :DATABASE_VISITOR, :DATABASE_WORKER;

-- Every period of a budget up to today: a retainer's months (rolling unused hours over), or the
-- one period of any other budget.
create or replace function app_public.budgets_periods(b app_public.budgets) returns setof app_public.budget_period
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_usage jsonb;
  v_start date := b.starts_on;
  v_carry numeric := 0;
  v_hours numeric;
  v_amount numeric;
  v_available numeric;
  r app_public.budget_period;
begin
  select coalesce(jsonb_object_agg(u.period_start, jsonb_build_array(u.hours, u.amount)), '{}') into v_usage
  from app_private.budget_usage(b) u;
  loop
    exit when b.kind = 'retainer' and v_start > current_date;
    v_hours := coalesce((v_usage -> v_start::text ->> 0)::numeric, 0);
    v_amount := coalesce((v_usage -> v_start::text ->> 1)::numeric, 0);
    v_available := b.hours + v_carry;
    r := row(v_start, case when b.kind = 'retainer' then (v_start + interval '1 month')::date - 1 end,
      v_available, case when b.kind = 'retainer' then v_carry end, v_hours, v_available - v_hours,
      case when v_available > 0 then round(100 * v_hours / v_available, 1) end,
      b.amount, v_amount, b.amount - v_amount,
      case when b.amount > 0 then round(100 * v_amount / b.amount, 1) end)::app_public.budget_period;
    return next r;
    exit when b.kind <> 'retainer';
    v_carry := case when b.rollover = 'unused_hours' then least(greatest(v_available - v_hours, 0), coalesce(b.rollover_max_hours, greatest(v_available - v_hours, 0))) else 0 end;
    v_start := (v_start + interval '1 month')::date;
  end loop;
end
$$;
revoke all on function app_public.budgets_periods(app_public.budgets) from public;
grant execute on function app_public.budgets_periods(app_public.budgets) to :DATABASE_VISITOR, :DATABASE_WORKER;
comment on function app_public.budgets_periods(app_public.budgets) is 'The budget''s use per period up to today: every month of a retainer (unused hours rolled over as its rollover says), or the one period of any other budget.';

create or replace function app_public.budgets_burn(b app_public.budgets) returns app_public.budget_period
language sql stable
set search_path = pg_catalog
as $$
  select p from app_public.budgets_periods(b) p order by p.period_start desc limit 1
$$;
revoke all on function app_public.budgets_burn(app_public.budgets) from public;
grant execute on function app_public.budgets_burn(app_public.budgets) to :DATABASE_VISITOR, :DATABASE_WORKER;
comment on function app_public.budgets_burn(app_public.budgets) is 'How much of the budget is used: the current month of a retainer, the whole budget otherwise (approved time and expenses, as you may read them).';

-- The worker, inside the organization: record the thresholds the given engagements' live budgets
-- have crossed (in their current period) and not recorded yet. Returns how many it recorded.
create or replace function app_private.check_budget_thresholds(engagement_ids uuid[]) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_count integer;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker checks budget thresholds.');
  elsif v_org is null then
    perform app_private.fail('NO_ORGANIZATION', 'Budget thresholds are checked inside one organization (app.org_id).');
  end if;
  insert into app_public.budget_alerts (organization_id, budget_id, period_start, measure, threshold, percent_used, used, budgeted)
  select b.organization_id, b.id, p.period_start, m.measure, t.threshold, m.percent, m.used, m.budgeted
  from app_public.budgets b
  cross join lateral app_public.budgets_burn(b) p
  cross join lateral (values ('hours', p.hours_percent, p.hours_used, p.hours_budgeted),
                             ('amount', p.amount_percent, p.amount_used, p.amount_budgeted)) m(measure, percent, used, budgeted)
  cross join lateral unnest(b.thresholds) t(threshold)
  where b.organization_id = v_org and b.engagement_id = any (check_budget_thresholds.engagement_ids) and b.deleted_at is null
    and m.percent >= t.threshold
  order by b.id, m.measure, t.threshold
  on conflict (organization_id, budget_id, period_start, measure, threshold) do nothing;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
revoke all on function app_private.check_budget_thresholds(uuid[]) from public;
grant execute on function app_private.check_budget_thresholds(uuid[]) to :DATABASE_WORKER;

-- Called by dispatch_activity (worker, inside the organization) for each transaction: the
-- engagements whose budgets its changes may move (time, timesheets, expenses, budgets).
create or replace function app_private.check_budgets_of_transaction(transaction_id bigint, occurred_at timestamptz default null) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_engagements uuid[];
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker checks budget thresholds.');
  end if;
  if not exists (select from app_public.budgets b where b.organization_id = v_org and b.deleted_at is null) then
    return 0;
  end if;
  with events as (
    select e.table_name, e.new_values, e.old_values
    from app_private.transaction_events(check_budgets_of_transaction.transaction_id, check_budgets_of_transaction.occurred_at) e
    where e.table_name in ('time_entries', 'expenses', 'budgets', 'timesheets')
  ), touched as (
    select (v ->> 'engagement_id')::uuid as engagement_id
    from events e, lateral (values (e.new_values), (e.old_values)) x(v)
    where e.table_name <> 'timesheets' and v ? 'engagement_id'
    union
    select t.engagement_id
    from events e
    join app_public.time_entries t on t.organization_id = v_org and t.member_id = (e.new_values ->> 'member_id')::uuid
      and t.work_date >= (e.new_values ->> 'week_starts_on')::date and t.work_date < (e.new_values ->> 'week_starts_on')::date + 7
    where e.table_name = 'timesheets'
  )
  select array_agg(distinct t.engagement_id) into v_engagements
  from touched t
  where t.engagement_id is not null
    and exists (select from app_public.budgets b where b.organization_id = v_org and b.engagement_id = t.engagement_id and b.deleted_at is null);
  if v_engagements is null then
    return 0;
  end if;
  return app_private.check_budget_thresholds(v_engagements);
end
$$;
revoke all on function app_private.check_budgets_of_transaction(bigint, timestamptz) from public;
grant execute on function app_private.check_budgets_of_transaction(bigint, timestamptz) to :DATABASE_WORKER;

-- AFTER INSERT on budget_alerts: one email to each owner and admin of the organization.
create or replace function app_private.tg_budget_alerts__notify() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_budget app_public.budgets;
  v_engagement text;
begin
  select o.* into v_org from app_public.organizations o where o.id = new.organization_id;
  select b.* into v_budget from app_public.budgets b where b.organization_id = new.organization_id and b.id = new.budget_id;
  select e.name into v_engagement from app_public.engagements e where e.organization_id = new.organization_id and e.id = v_budget.engagement_id;
  perform app_private.enqueue_email(
    'budget_threshold',
    u.email,
    jsonb_build_object(
      'member_name', coalesce(u.name, u.email),
      'organization_name', v_org.name,
      'engagement_name', v_engagement,
      'budget_name', v_budget.name,
      'threshold', new.threshold::text || '%',
      'percent_used', new.percent_used::text || '%',
      'measure', case new.measure when 'hours' then 'hours' else 'money' end,
      'used', case new.measure when 'hours' then new.used::text || ' h' else app_private.format_money(new.used, v_budget.currency) end,
      'budgeted', case new.measure when 'hours' then new.budgeted::text || ' h' else app_private.format_money(new.budgeted, v_budget.currency) end,
      'period', case when v_budget.kind = 'retainer' then format(' in the month from %s', app_private.format_day(new.period_start)) else '' end,
      'engagement_id', v_budget.engagement_id
    ),
    format('budget_threshold:%s:%s', new.id, u.id),
    new.organization_id
  )
  from app_public.organization_members m
  join app_public.users u on u.id = m.user_id
  where m.organization_id = new.organization_id and m.role >= 'admin';
  return null;
end
$$;
drop trigger if exists tg_budget_alerts__notify on app_public.budget_alerts;
create trigger tg_budget_alerts__notify after insert on app_public.budget_alerts
  for each row execute function app_private.tg_budget_alerts__notify();
--! EndIncluded functions/budgets.sql
--! Included functions/webhook_events.sql
-- The catalogue of domain events sent to webhooks: which activity events are which webhook
-- events (sql/functions/webhooks.sql delivers them). Included by webhooks.sql; a migration that
-- only adds events includes this file alone. Idempotent.
--
-- An `insert` rule matches new rows of the table; a status rule matches rows entering `to_status` (inserted in
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
  ('bill.paid', 'bills', 'status', 'paid', 'A bill was paid.'),
  ('credit_note.issued', 'credit_notes', null, null, 'A credit note or write-off was issued against an invoice.'),
  ('refund.recorded', 'refunds', null, null, 'Money was refunded to a client against a credit note.'),
  ('timesheet.submitted', 'timesheets', 'status', 'submitted', 'A member submitted a week of time for approval.'),
  ('timesheet.approved', 'timesheets', 'status', 'approved', 'A week of time was approved.'),
  ('timesheet.rejected', 'timesheets', 'status', 'rejected', 'A week of time was rejected (with a reason).'),
  ('expense.submitted', 'expenses', 'status', 'submitted', 'A member submitted an expense for approval.'),
  ('expense.approved', 'expenses', 'status', 'approved', 'An expense was approved.'),
  ('expense.rejected', 'expenses', 'status', 'rejected', 'An expense was rejected (with a reason).'),
  ('budget.threshold_crossed', 'budget_alerts', null, null, 'A budget crossed one of its thresholds (hours or money used).')
on conflict (event_type) do update set table_name = excluded.table_name, status_column = excluded.status_column,
  to_status = excluded.to_status, description = excluded.description;
--! EndIncluded functions/webhook_events.sql
--! Included functions/email.sql
-- Transactional email: the outbox side in SQL. Writes that should send an email enqueue a
-- `send_email` job in their own transaction (src/worker/tasks/send_email.ts sends it):
--   invitation      app_public.invite_member                    (sql/functions/auth.sql)
--   password_reset  app_private.request_password_reset          (sql/functions/password_reset.sql)
--   proposal_sent   a proposal goes draft → sent                 (trigger below)
--   invoice_sent    an invoice goes draft → sent                 (trigger below)
-- A rolled-back write therefore never emails anyone, and a committed one always has its job.
--
-- A message's one-time secret (the token of an invitation, password-reset or sign-up link) never
-- travels in the job: the job carries ids, and the secret waits in app_private.email_secrets,
-- which only the worker reads (app_private.email_secret), inside the transaction that claims the
-- message. It is deleted when the message is recorded as sent, when its invitation, reset or
-- sign-up is replaced, revoked or used (app_private.cancel_email), and once it expires. So no
-- token sits in graphile-worker's job rows, reaches its log lines or a job's last_error.
--
-- Each message has an idempotency key, `message_key` (e.g. invitation:<invitation id>), used as
-- the job key (enqueuing it again while pending collapses into one job) and as the primary key of
-- app_private.email_messages, where the worker records each message: it claims the key before
-- sending and marks it sent afterwards, so a retried job never sends a message recorded as sent.
-- The one window left — the SMTP server accepted the message but the worker died before
-- recording it — sends it again on retry, with the same Message-ID (docs/DATA_FLOWS.md, "Email").
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- The send log. Only the worker writes it, through the two functions below; nobody reads it
-- through the API. Message bodies are not kept (they may hold tokens), only what identifies
-- them.

create table if not exists app_private.email_messages (
  message_key text primary key check (length(message_key) between 1 and 300),
  organization_id uuid references app_public.organizations,
  template text not null check (template ~ '^[a-z][a-z0-9_]*$'),
  recipient text not null check (length(recipient) <= 320),
  attempts integer not null default 1 check (attempts >= 1),
  first_attempt_at timestamptz not null default now(),
  last_attempt_at timestamptz not null default now(),
  sent_at timestamptz,
  message_id text,
  transport text check (transport in ('smtp', 'folder')),
  transport_detail text,
  check ((sent_at is null) = (message_id is null))
);
create index if not exists email_messages_organization_id_idx on app_private.email_messages (organization_id);
call app_private.force_rls('app_private.email_messages');
comment on table app_private.email_messages is 'Every email the worker has tried to send (task send_email), by idempotency key: attempts, and when and how it was sent. No bodies.';
comment on column app_private.email_messages.organization_id is 'The organization the email is about; null for account emails (password reset).';
comment on column app_private.email_messages.transport_detail is 'SMTP: the server''s final answer; folder: the .eml file written.';

-- The one-time secrets of messages waiting to be sent, by message key (see the top of this file).
-- Nobody is granted anything on it: the owner's SECURITY DEFINER functions below write and read
-- it, the worker through app_private.email_secret only.
create table if not exists app_private.email_secrets (
  message_key text primary key check (length(message_key) between 1 and 300),
  organization_id uuid references app_public.organizations on delete cascade,
  secrets jsonb not null check (jsonb_typeof(secrets) = 'object'),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null
);
create index if not exists email_secrets_organization_id_idx on app_private.email_secrets (organization_id);
create index if not exists email_secrets_expires_at_idx on app_private.email_secrets (expires_at);
call app_private.force_rls('app_private.email_secrets');
comment on table app_private.email_secrets is 'One-time secrets (link tokens) of emails not yet sent, by message key: read by the worker inside the send, deleted once sent, replaced, revoked or expired. Never in a job payload.';

-- Drops the secret and the pending job of a message that must not go out any more (its link was
-- replaced, revoked or used). A job a worker already holds finds no secret and sends nothing.
create or replace function app_private.cancel_email(message_key text) returns void
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  perform graphile_worker.remove_job('send_email:' || cancel_email.message_key);
  delete from app_private.email_secrets s where s.message_key = cancel_email.message_key;
end
$$;
comment on function app_private.cancel_email(text) is 'Cancels a queued email: removes its pending job and deletes its one-time secret.';

-- Enqueue one email, in the caller's transaction. Called only by Atrium's own SECURITY DEFINER
-- functions and triggers (granted to nobody). `data` fills the template's placeholders and goes
-- into the job; `secrets` (e.g. {"token": …}) fill the others and never do: they are kept in
-- app_private.email_secrets until `secrets_expire_at`, and the job only says it has some.
-- A key that looks like a secret in `data` is refused (a bug: it would sit in the job row).
drop function if exists app_private.enqueue_email(text, text, jsonb, text, uuid); -- before secrets
create or replace function app_private.enqueue_email(
  template text, recipient text, data jsonb, message_key text, organization_id uuid default null,
  secrets jsonb default null, secrets_expire_at timestamptz default null
) returns void
language plpgsql volatile
set search_path = pg_catalog
as $$
begin
  if exists (select from jsonb_object_keys(coalesce(enqueue_email.data, '{}')) k where k ~* '(token|password|secret)') then
    perform app_private.fail('INTERNAL', format('enqueue_email(%s): secrets go in `secrets`, never in `data` (it is stored in the job)', enqueue_email.template));
  end if;
  if enqueue_email.secrets is not null then
    if enqueue_email.secrets_expire_at is null then
      perform app_private.fail('INTERNAL', format('enqueue_email(%s): secrets need secrets_expire_at', enqueue_email.template));
    end if;
    -- Expired secrets of other messages go at the same time (their links no longer work).
    delete from app_private.email_secrets s where s.expires_at <= now();
    insert into app_private.email_secrets as s (message_key, organization_id, secrets, expires_at)
    values (enqueue_email.message_key, enqueue_email.organization_id, enqueue_email.secrets, enqueue_email.secrets_expire_at)
    on conflict on constraint email_secrets_pkey do update
      set organization_id = excluded.organization_id, secrets = excluded.secrets, created_at = now(), expires_at = excluded.expires_at;
  end if;
  perform graphile_worker.add_job(
    'send_email',
    json_strip_nulls(json_build_object(
      'organization_id', enqueue_email.organization_id,
      'template', enqueue_email.template,
      'to', enqueue_email.recipient,
      'data', enqueue_email.data,
      'message_key', enqueue_email.message_key,
      'has_secrets', case when enqueue_email.secrets is not null then true end
    )),
    job_key => 'send_email:' || enqueue_email.message_key,
    max_attempts => 12
  );
end
$$;
comment on function app_private.enqueue_email(text, text, jsonb, text, uuid, jsonb, timestamptz) is 'Enqueues the send_email job of one message in the current transaction (job key send_email:<message_key>); its one-time secrets wait in app_private.email_secrets, not in the job.';

-- The worker, before sending: records an attempt at `message_key` in the current organization
-- (app.org_id; none for account emails). Returns the attempt's number (1 the first time; more
-- means an earlier attempt did not record its outcome), or null when the message was already
-- sent (the job is a retry or a duplicate: send nothing). Only the worker's session may call it.
create or replace function app_private.claim_email(message_key text, template text, recipient text) returns integer
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v app_private.email_messages;
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker sends emails.');
  end if;
  -- An email about an organization that was deleted (sql/functions/organization_deletion.sql) is
  -- not sent: its job was taken before the purge.
  if v_org is not null and not exists (select from app_public.organizations o where o.id = v_org) then
    return null;
  end if;
  insert into app_private.email_messages as m (message_key, organization_id, template, recipient)
  values (claim_email.message_key, v_org, claim_email.template, claim_email.recipient)
  on conflict on constraint email_messages_pkey do update
    set attempts = m.attempts + 1, last_attempt_at = now()
    where m.sent_at is null and m.organization_id is not distinct from v_org
  returning m.* into v;
  if v.message_key is null then
    -- Either sent already, or the key belongs to another organization (never reused across them).
    select m.* into v from app_private.email_messages m where m.message_key = claim_email.message_key;
    if v.organization_id is distinct from v_org then
      perform app_private.fail('NOT_PERMITTED', 'This email belongs to another organization.');
    end if;
    return null;
  end if;
  return v.attempts;
end
$$;
comment on function app_private.claim_email(text, text, text) is 'Worker only: records an attempt to send message_key; returns the attempt number, or null when it already went out.';

-- The worker, after the transport accepted the message.
create or replace function app_private.record_email_sent(message_key text, message_id text, transport text, transport_detail text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker sends emails.');
  end if;
  update app_private.email_messages m
  set sent_at = now(), message_id = record_email_sent.message_id, transport = record_email_sent.transport,
      transport_detail = left(record_email_sent.transport_detail, 1000)
  where m.message_key = record_email_sent.message_key
    and m.organization_id is not distinct from app_public.current_org_id()
    and m.sent_at is null;
  -- Sent: its one-time secret is needed no more.
  delete from app_private.email_secrets s
  where s.message_key = record_email_sent.message_key
    and s.organization_id is not distinct from app_public.current_org_id();
end
$$;
comment on function app_private.record_email_sent(text, text, text, text) is 'Worker only: marks message_key as sent (Message-ID, transport, SMTP answer or file) and deletes its one-time secret.';

-- The worker, inside the transaction that claims a message: its one-time secrets (a JSON object),
-- or null when there are none any more (sent, replaced, revoked or expired: send nothing). Only
-- the worker's session may call it, and only for a message of the current organization.
create or replace function app_private.email_secret(message_key text) returns jsonb
language plpgsql stable security definer
set search_path = pg_catalog
as $$
begin
  if not app_private.is_worker_session() then
    perform app_private.fail('NOT_PERMITTED', 'Only the job worker reads the secrets of emails.');
  end if;
  return (
    select s.secrets from app_private.email_secrets s
    where s.message_key = email_secret.message_key
      and s.organization_id is not distinct from app_public.current_org_id()
      and s.expires_at > now()
  );
end
$$;
comment on function app_private.email_secret(text) is 'Worker only: the one-time secrets of a message waiting to be sent, or null when it must not go out any more.';

revoke all on function
  app_private.cancel_email(text),
  app_private.enqueue_email(text, text, jsonb, text, uuid, jsonb, timestamptz),
  app_private.claim_email(text, text, text),
  app_private.record_email_sent(text, text, text, text),
  app_private.email_secret(text)
from public;
grant execute on function
  app_private.claim_email(text, text, text),
  app_private.record_email_sent(text, text, text, text),
  app_private.email_secret(text)
to :DATABASE_WORKER;

-- An invitation that is revoked (deleted) or replaced by a new one (inviteMember again) takes its
-- email along while it is still waiting in the queue, and its token with it: nobody receives a
-- link that no longer works.
-- AFTER DELETE per row; SECURITY DEFINER because the queue is not the visitor's.
create or replace function app_private.tg_invitations__cancel_email() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if old.accepted_at is null then
    perform app_private.cancel_email(format('invitation:%s', old.id));
  end if;
  return null;
end
$$;

drop trigger if exists tg_invitations__cancel_email on app_public.invitations;
create trigger tg_invitations__cancel_email after delete on app_public.invitations
  for each row execute function app_private.tg_invitations__cancel_email();

------------------------------------------------------------------------------------------------
-- Proposals and invoices sent to the client: one email to each primary contact of the client
-- company who has an email address (contacts.is_primary; deleted contacts excluded). A client
-- without one gets no email — the document is still sent (visible in the client portal).

create or replace function app_private.format_money(amount numeric, currency text) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select to_char(amount, 'FM999G999G999G990D00') || ' ' || currency
$$;

create or replace function app_private.format_day(day date) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select to_char(day, 'FMMonth FMDD, YYYY')
$$;

-- The client company's primary contacts with an email address.
create or replace function app_private.email_contacts_of(organization_id uuid, client_company_id uuid)
returns table (contact_id uuid, email text, name text)
language sql stable
set search_path = pg_catalog
as $$
  select c.id, c.email, c.first_name
  from app_public.contacts c
  where c.organization_id = email_contacts_of.organization_id
    and c.client_company_id = email_contacts_of.client_company_id
    and c.is_primary and c.email is not null and c.deleted_at is null
  order by c.created_at, c.id
$$;

-- AFTER UPDATE OF status on proposals, when a draft becomes sent. SECURITY DEFINER: it reads the
-- client's contacts and the organization whatever the sender may read, and enqueues jobs; it only
-- touches rows of the proposal's own organization.
create or replace function app_private.tg_proposals__email_sent() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_client text;
begin
  select o.* into v_org from app_public.organizations o where o.id = new.organization_id;
  select cc.name into v_client from app_public.client_companies cc where cc.organization_id = new.organization_id and cc.id = new.client_company_id;
  perform app_private.enqueue_email(
    'proposal_sent',
    r.email,
    jsonb_build_object(
      'contact_name', r.name,
      'organization_name', v_org.name,
      'client_name', v_client,
      'proposal_id', new.id,
      'proposal_title', new.title,
      'total', app_private.format_money(new.total, new.currency),
      'validity', case when new.valid_until is null then '' else format('It is valid until %s.', app_private.format_day(new.valid_until)) end
    ),
    format('proposal_sent:%s:%s', new.id, r.contact_id),
    new.organization_id
  )
  from app_private.email_contacts_of(new.organization_id, new.client_company_id) r;
  return null;
end
$$;

drop trigger if exists tg_proposals__email_sent on app_public.proposals;
create trigger tg_proposals__email_sent after update of status on app_public.proposals
  for each row when (old.status = 'draft' and new.status = 'sent')
  execute function app_private.tg_proposals__email_sent();

-- AFTER UPDATE OF status on invoices, when a draft becomes sent (sendInvoice: numbered, dated).
create or replace function app_private.tg_invoices__email_sent() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org app_public.organizations;
  v_client text;
begin
  select o.* into v_org from app_public.organizations o where o.id = new.organization_id;
  select cc.name into v_client from app_public.client_companies cc where cc.organization_id = new.organization_id and cc.id = new.client_company_id;
  perform app_private.enqueue_email(
    'invoice_sent',
    r.email,
    jsonb_build_object(
      'contact_name', r.name,
      'organization_name', v_org.name,
      'client_name', v_client,
      'invoice_id', new.id,
      'invoice_number', new.number,
      'total', app_private.format_money(new.total, new.currency),
      'amount_due', app_private.format_money(new.balance, new.currency),
      'issued_on', app_private.format_day(new.issued_on),
      'due_on', app_private.format_day(new.due_on)
    ),
    format('invoice_sent:%s:%s', new.id, r.contact_id),
    new.organization_id
  )
  from app_private.email_contacts_of(new.organization_id, new.client_company_id) r;
  return null;
end
$$;

drop trigger if exists tg_invoices__email_sent on app_public.invoices;
create trigger tg_invoices__email_sent after update of status on app_public.invoices
  for each row when (old.status = 'draft' and new.status = 'sent')
  execute function app_private.tg_invoices__email_sent();

revoke all on function
  app_private.format_money(numeric, text),
  app_private.format_day(date),
  app_private.email_contacts_of(uuid, uuid),
  app_private.tg_proposals__email_sent(),
  app_private.tg_invoices__email_sent(),
  app_private.tg_invitations__cancel_email()
from public;
--! EndIncluded functions/email.sql
