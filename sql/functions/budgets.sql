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
