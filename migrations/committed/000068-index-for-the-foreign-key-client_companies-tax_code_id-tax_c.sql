--! Previous: sha1:7f6c17cce4a23895b330bf9a4575fb91532e324b
--! Hash: sha1:38cdec5e7e1625ba6239e90f37b7d1ebc74c0746
--! Message: Index for the foreign key client_companies.tax_code_id (tax_codes)

--! no-transaction
-- An index led by (organization_id, tax_code_id), for the foreign key client_companies_tax_code_fkey
-- (migration 000065): deleting a tax code finds the clients that have it.
create index concurrently if not exists client_companies_organization_id_tax_code_id_idx on app_public.client_companies (organization_id, tax_code_id);
