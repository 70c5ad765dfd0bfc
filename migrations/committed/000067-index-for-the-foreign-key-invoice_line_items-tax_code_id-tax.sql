--! Previous: sha1:a0a8bb2bb66503779f0e84ce6a56c081c95f5da9
--! Hash: sha1:4dbde1591b3832f3a8bcbb44897b59e1f4fee806
--! Message: Index for the foreign key invoice_line_items.tax_code_id (tax_codes)

--! no-transaction
-- An index led by (organization_id, tax_code_id), for the foreign key
-- invoice_line_items_tax_code_fkey (migration 000065): changing or deleting a tax code finds the
-- invoice lines that use it.
create index concurrently if not exists invoice_line_items_organization_id_tax_code_id_idx on app_public.invoice_line_items (organization_id, tax_code_id);
