--! Previous: sha1:b316c1ed1508f1e116ffd475c93ad8f132c63e05
--! Hash: sha1:447ce5ea5d88073af2e8b8cdb6508bc9e66ff51b
--! Message: Index for the foreign key invoice_line_items.tax_code_id (tax_codes)

--! no-transaction
-- An index led by (organization_id, tax_code_id), for the foreign key
-- invoice_line_items_tax_code_fkey (migration 000065): changing or deleting a tax code finds the invoice lines that use it.
create index concurrently if not exists invoice_line_items_organization_id_tax_code_id_idx on app_public.invoice_line_items (organization_id, tax_code_id);
