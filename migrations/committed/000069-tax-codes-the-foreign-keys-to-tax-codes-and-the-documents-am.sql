--! Previous: sha1:38cdec5e7e1625ba6239e90f37b7d1ebc74c0746
--! Hash: sha1:457ddcf6fbaf1e9c2c631c0ac77d47638325d5b4
--! Message: Tax codes: the foreign keys to tax codes and the documents' amount checks validated

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
set local statement_timeout = '10min';

-- The constraints migration 000065 added NOT VALID, validated: a transaction of their own, which
-- scans the tables while writes go on (SHARE UPDATE EXCLUSIVE).
alter table app_public.proposal_line_items validate constraint proposal_line_items_tax_code_fkey;
alter table app_public.invoice_line_items validate constraint invoice_line_items_tax_code_fkey;
alter table app_public.client_companies validate constraint client_companies_tax_code_fkey;
alter table app_public.proposals validate constraint proposals_amounts_present;
alter table app_public.invoices validate constraint invoices_amounts_present;
alter table app_public.invoices validate constraint invoices_paid_within_total;
