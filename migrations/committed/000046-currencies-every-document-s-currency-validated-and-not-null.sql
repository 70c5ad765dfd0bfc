--! Previous: sha1:52308776f059551fe547a85f506863e02a99350d
--! Hash: sha1:e0da5262ddee79a8b636f1160cb9a3d0744e722a
--! Message: Currencies: every document's currency validated and not null

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '10min';

-- Every document has its currency now (migration 000045): the checks migration 000044 added NOT
-- VALID are validated (each scans its table while writes go on), then the columns are made not
-- null, which the validated check proves without another scan.
alter table app_public.client_companies validate constraint client_companies_currency_format;
alter table app_public.bill_rates validate constraint bill_rates_currency_format;
alter table app_public.bills validate constraint bills_currency_format;
alter table app_public.contracts validate constraint contracts_currency_format;
alter table app_public.credit_notes validate constraint credit_notes_currency_format;
alter table app_public.engagements validate constraint engagements_currency_format;
alter table app_public.invoice_schedules validate constraint invoice_schedules_currency_format;
alter table app_public.invoices validate constraint invoices_currency_format;
alter table app_public.payments validate constraint payments_currency_format;
alter table app_public.proposals validate constraint proposals_currency_format;
alter table app_public.refunds validate constraint refunds_currency_format;
alter table app_public.bill_rates alter column currency set not null;
alter table app_public.bills alter column currency set not null;
alter table app_public.contracts alter column currency set not null;
alter table app_public.credit_notes alter column currency set not null;
alter table app_public.engagements alter column currency set not null;
alter table app_public.invoice_schedules alter column currency set not null;
alter table app_public.invoices alter column currency set not null;
alter table app_public.payments alter column currency set not null;
alter table app_public.proposals alter column currency set not null;
alter table app_public.refunds alter column currency set not null;
