--! Previous: sha1:4dbde1591b3832f3a8bcbb44897b59e1f4fee806
--! Hash: sha1:9f18139be0586ab01d6f599911e2fe33a3494457
--! Message: Tax codes: the lines' foreign keys and the documents' amount checks validated

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
set local statement_timeout = '10min';

-- The constraints migration 000065 added NOT VALID, validated: a transaction of their own, which
-- scans the tables while writes go on (SHARE UPDATE EXCLUSIVE).
alter table app_public.proposal_line_items validate constraint proposal_line_items_tax_code_fkey;
alter table app_public.invoice_line_items validate constraint invoice_line_items_tax_code_fkey;
alter table app_public.proposals validate constraint proposals_amounts_present;
alter table app_public.invoices validate constraint invoices_amounts_present;
alter table app_public.invoices validate constraint invoices_paid_within_total;
