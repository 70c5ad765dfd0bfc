--! Previous: sha1:0ba2ea4d2bd7d3b003bc7ab9b93f9e6cc85f1747
--! Hash: sha1:a0a8bb2bb66503779f0e84ce6a56c081c95f5da9
--! Message: Index for the foreign key proposal_line_items.tax_code_id (tax_codes)

--! no-transaction
-- An index led by (organization_id, tax_code_id), for the foreign key
-- proposal_line_items_tax_code_fkey (migration 000065): changing or deleting a tax code finds the
-- proposal lines that use it.
create index concurrently if not exists proposal_line_items_organization_id_tax_code_id_idx on app_public.proposal_line_items (organization_id, tax_code_id);
