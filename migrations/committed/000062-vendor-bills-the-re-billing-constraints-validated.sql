--! Previous: sha1:ab36b6b59927321a18eb3f638df3c7c30f2964c8
--! Hash: sha1:2e99cab69e09de8c646c23015cdafe5267340836
--! Message: Vendor bills: the re-billing constraints validated

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
set local statement_timeout = '10min';

-- The bill constraints migration 000060 added NOT VALID, validated: a transaction of their own,
-- which scans bills while writes go on (SHARE UPDATE EXCLUSIVE).
alter table app_public.bills validate constraint bills_invoice_line_item_fkey;
alter table app_public.bills validate constraint bills_rebilled_only_when_rebill;
