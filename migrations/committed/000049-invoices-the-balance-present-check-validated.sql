--! Previous: sha1:320fbda9dbc4f5d4c72af61d1d639840fce9a2d8
--! Hash: sha1:8be26666ac792597f85a7dd40d68091428833676
--! Message: Invoices: the balance-present check validated

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '10min';

-- The check migration 000048 added NOT VALID, validated (a scan of invoices while writes go on).
alter table app_public.invoices validate constraint invoices_balance_present;
