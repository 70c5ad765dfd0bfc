--! Previous: sha1:8bb3e0d0085408404b83015c1ba5e80325e0d3bb
--! Hash: sha1:7b92bc4b07e80a34530247baad3fdd791f755044
--! Message: Index: tax_code_components in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- tax_code_components in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists tax_code_components_organization_id_created_at_id_idx on app_public.tax_code_components (organization_id, created_at, id);
