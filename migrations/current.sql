-- Untrusted input normalized and bounded once, in the database: money, quantities, percentages,
-- dates and email addresses get domains (sql/functions/value_domains.sql) and every column of
-- each kind is put into its domain here; values PostgreSQL refuses answer catalogued codes
-- (app_private.error_sqlstates, app_private.domain_rules in sql/errors.sql).
--!include errors.sql
--!include functions/value_domains.sql
--!include functions/tenant_tables.sql

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
