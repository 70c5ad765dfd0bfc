--! Previous: sha1:b9b1daa38ccbbb68ffc9d0866c0e2783b334ba7c
--! Hash: sha1:8c05d46086392c2af5040cf7b4347cf52dd97238
--! Message: Invoices: the balance-present check validated

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '10min';

-- The check migration 000048 added NOT VALID, validated (a scan of invoices while writes go on).
alter table app_public.invoices validate constraint invoices_balance_present;
