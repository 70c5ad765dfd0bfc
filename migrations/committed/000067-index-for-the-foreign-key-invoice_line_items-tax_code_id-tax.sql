--! Previous: sha1:f2064db6ef66ed69f4e6fbd9fb5fc1f74752a603
--! Hash: sha1:7f6c17cce4a23895b330bf9a4575fb91532e324b
--! Message: Index for the foreign key invoice_line_items.tax_code_id (tax_codes)

--! no-transaction
-- An index led by (organization_id, tax_code_id), for the foreign key invoice_line_items_tax_code_fkey
-- (migration 000065): changing or deleting a tax code finds the invoice lines that use it.
create index concurrently if not exists invoice_line_items_organization_id_tax_code_id_idx on app_public.invoice_line_items (organization_id, tax_code_id);
