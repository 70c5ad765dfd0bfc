--! Previous: sha1:afd03ba9868411e184a9443fc41628afcf2530cc
--! Hash: sha1:f2064db6ef66ed69f4e6fbd9fb5fc1f74752a603
--! Message: Index for the foreign key proposal_line_items.tax_code_id (tax_codes)

--! no-transaction
-- An index led by (organization_id, tax_code_id), for the foreign key proposal_line_items_tax_code_fkey
-- (migration 000065): changing or deleting a tax code finds the proposal lines that use it.
create index concurrently if not exists proposal_line_items_organization_id_tax_code_id_idx on app_public.proposal_line_items (organization_id, tax_code_id);
