--! Previous: sha1:c2a6a61b76f11cb2d006597bfb0e57b5eb53f215
--! Hash: sha1:0a6d99fa78bf6b254bc1e317c4b86981dd13083d
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
