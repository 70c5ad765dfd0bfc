--! Previous: sha1:b0d8d4fe15dee5e072e9f3a352c5ebc20f8d62b8
--! Hash: sha1:b316c1ed1508f1e116ffd475c93ad8f132c63e05
--! Message: Index for the foreign key proposal_line_items.tax_code_id (tax_codes)

--! no-transaction
-- An index led by (organization_id, tax_code_id), for the foreign key
-- proposal_line_items_tax_code_fkey (migration 000065): changing or deleting a tax code finds the proposal lines that use it.
create index concurrently if not exists proposal_line_items_organization_id_tax_code_id_idx on app_public.proposal_line_items (organization_id, tax_code_id);
