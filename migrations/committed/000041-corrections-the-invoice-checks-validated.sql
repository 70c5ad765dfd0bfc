--! Previous: sha1:ae7e06a1bab4a2221675589ee6be3b34828f570d
--! Hash: sha1:6574d8fb197da7bb06ed78c45d4bd26ca34e087e
--! Message: Corrections: the invoice checks validated

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '10min';

-- The invoice checks migration 000040 added NOT VALID, validated: a transaction of their own,
-- which scans invoices while writes go on (SHARE UPDATE EXCLUSIVE).
alter table app_public.invoices validate constraint invoices_amount_credited_range;
alter table app_public.invoices validate constraint invoices_balance_adds_up;
