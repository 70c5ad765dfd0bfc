-- The API edge (issue 11): statement timeouts answer QUERY_TIMEOUT; a row added without an
-- organization answers NO_ORGANIZATION (or UNAUTHENTICATED) instead of FORBIDDEN.
--!include errors.sql
--!include functions/value_domains.sql
--!include functions/require_organization.sql
--!include functions/tenant_tables.sql
do $$
declare
  v_table regclass;
begin
  for v_table in
    select c.oid::regclass
    from pg_class c
    where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p')
      and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
    order by c.relname
  loop
    call app_private.attach_require_organization(v_table);
  end loop;
end
$$;

-- Sign-in throttling per email address and client, slowing down instead of locking
-- (sql/functions/auth.sql, app_private.login): a stranger's wrong passwords no longer lock a
-- known user out. The per-address lock of 000013 is replaced; its rows are throttle state, not
-- data, and go with it (once: later runs find the new table).
do $$
begin
  if exists (
    select from information_schema.columns
    where table_schema = 'app_private' and table_name = 'login_throttle' and column_name = 'locked_until'
  ) then
    drop table app_private.login_throttle;
  end if;
end
$$;
create table if not exists app_private.login_throttle (
  email text not null,
  -- The caller's network address as the API saw it (app.client_address), or 'unknown'.
  client text not null,
  failures integer not null check (failures > 0),
  last_failed_at timestamptz not null,
  next_attempt_at timestamptz not null,
  constraint login_throttle_pkey primary key (email, client)
);
-- For the purge of forgotten failures (app_private.login deletes a few on every failure).
create index if not exists login_throttle_last_failed_at_idx on app_private.login_throttle (last_failed_at);
alter table app_private.login_throttle enable row level security;
alter table app_private.login_throttle force row level security;
comment on table app_private.login_throttle is 'Failed sign-ins in a row per email address (known or not) and client address, and when that client may try again.';

-- Permissions that cannot be used to gain more; no cross-tenant existence oracles (issue 11,
-- points 8 and 6): roles pass on only what their maker holds, copies of rows (webhook
-- deliveries and their endpoints, activity events of copies) are read only by the readers of
-- their source, and organization slugs are made by the server with a random suffix.
--!include functions/email.sql
--!include functions/activity.sql
--!include functions/permissions.sql
--!include functions/webhooks.sql
--!include functions/copies.sql
--!include functions/organization_slugs.sql
--!include functions/auth.sql

-- No secret in a job (issue 11, point 4): the one-time tokens of invitation, password-reset and
-- sign-up emails wait for the worker in app_private.email_secrets instead of the send_email
-- job's payload (sql/functions/email.sql, included above). Sign-up by email (points 6 and 11):
-- register answers the same for every address and emails a confirmation link, or a note to an
-- existing account; confirmRegistration creates the account (sql/functions/registration.sql).
-- app_private.register becomes app_private.create_account, for the demo data and test fixtures
-- only (owner).
--!include functions/password_reset.sql
--!include functions/registration.sql

-- Logs carry no secret (point 4): the echo task logs its payload's keys, not their values.
--!include functions/jobs.sql

grant execute on function app_private.login_retry_after(text) to :DATABASE_VISITOR;

-- Untrusted input normalized and bounded once, in the database: money, quantities, percentages,
-- dates and email addresses get domains (sql/functions/value_domains.sql) and every column of
-- each kind is put into its domain here; values PostgreSQL refuses answer catalogued codes
-- (app_private.error_sqlstates, app_private.domain_rules in sql/errors.sql).
-- (errors.sql, functions/value_domains.sql and functions/tenant_tables.sql are included above.)

-- Money: every amount, price, total, balance, budget, value and rate per hour (numeric(14,2)
-- before, so nothing a column held is refused but NaN).
call app_private.set_column_domain('app_public.bills', 'app_public.money_amount', 'amount');
call app_private.set_column_domain('app_public.contracts', 'app_public.money_amount', 'value');
call app_private.set_column_domain('app_public.deals', 'app_public.money_amount', 'value');
call app_private.set_column_domain('app_public.engagements', 'app_public.money_amount', 'budget', 'hourly_rate');
call app_private.set_column_domain('app_public.invoice_line_items', 'app_public.money_amount', 'unit_price', 'amount');
call app_private.set_column_domain('app_public.invoice_schedules', 'app_public.money_amount', 'amount');
call app_private.set_column_domain('app_public.invoices', 'app_public.money_amount', 'subtotal', 'amount_paid', 'tax_amount', 'total', 'balance');
call app_private.set_column_domain('app_public.payments', 'app_public.money_amount', 'amount');
call app_private.set_column_domain('app_public.proposal_line_items', 'app_public.money_amount', 'unit_price', 'amount');
call app_private.set_column_domain('app_public.proposals', 'app_public.money_amount', 'subtotal', 'tax_amount', 'total');
call app_private.set_column_domain('app_public.time_entries', 'app_public.money_amount', 'rate', 'amount');

-- Quantities on lines (numeric(12,2) before) and tax rates in percent (numeric(5,2), 0 to 100).
call app_private.set_column_domain('app_public.invoice_line_items', 'app_public.quantity', 'quantity');
call app_private.set_column_domain('app_public.proposal_line_items', 'app_public.quantity', 'quantity');
call app_private.set_column_domain('app_public.invoice_schedules', 'app_public.percentage', 'tax_rate');
call app_private.set_column_domain('app_public.invoices', 'app_public.percentage', 'tax_rate');
call app_private.set_column_domain('app_public.proposals', 'app_public.percentage', 'tax_rate');

-- Calendar dates: due dates, start and end dates, issue and payment dates, periods.
call app_private.set_column_domain('app_public.bills', 'app_public.business_date', 'issued_on', 'due_on');
call app_private.set_column_domain('app_public.contracts', 'app_public.business_date', 'starts_on', 'ends_on');
call app_private.set_column_domain('app_public.deals', 'app_public.business_date', 'expected_close_on');
call app_private.set_column_domain('app_public.engagements', 'app_public.business_date', 'starts_on', 'ends_on');
call app_private.set_column_domain('app_public.invoice_schedules', 'app_public.business_date', 'anchor_on', 'next_run_on', 'ends_on');
call app_private.set_column_domain('app_public.invoices', 'app_public.business_date', 'issued_on', 'due_on', 'period_start', 'period_end');
call app_private.set_column_domain('app_public.milestones', 'app_public.business_date', 'due_on');
call app_private.set_column_domain('app_public.payments', 'app_public.business_date', 'received_on');
call app_private.set_column_domain('app_public.projects', 'app_public.business_date', 'starts_on', 'due_on');
call app_private.set_column_domain('app_public.proposals', 'app_public.business_date', 'valid_until');
call app_private.set_column_domain('app_public.tasks', 'app_public.business_date', 'due_on');
call app_private.set_column_domain('app_public.time_entries', 'app_public.business_date', 'work_date');

-- Email addresses: stored lower-cased and trimmed by one trigger (existing rows are normalized
-- by the call). The tables' own checks (lower case, format) are the domain's rule now.
call app_private.set_column_domain('app_public.users', 'app_public.email_address', 'email');
call app_private.set_column_domain('app_public.invitations', 'app_public.email_address', 'email');
call app_private.set_column_domain('app_public.contacts', 'app_public.email_address', 'email');
call app_private.set_column_domain('app_public.vendors', 'app_public.email_address', 'email');
alter table app_public.users drop constraint if exists users_email_check;
alter table app_public.invitations drop constraint if exists invitations_email_check;
alter table app_public.contacts drop constraint if exists contacts_email_check;
alter table app_public.vendors drop constraint if exists vendors_email_check;
