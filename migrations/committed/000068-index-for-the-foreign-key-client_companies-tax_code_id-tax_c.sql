--! Previous: sha1:447ce5ea5d88073af2e8b8cdb6508bc9e66ff51b
--! Hash: sha1:c2a6a61b76f11cb2d006597bfb0e57b5eb53f215
--! Message: Index for the foreign key client_companies.tax_code_id (tax_codes)

--! no-transaction
-- An index led by (organization_id, tax_code_id), for the foreign key
-- client_companies_tax_code_fkey (migration 000065): deleting a tax code finds the clients that have it.
create index concurrently if not exists client_companies_organization_id_tax_code_id_idx on app_public.client_companies (organization_id, tax_code_id);
