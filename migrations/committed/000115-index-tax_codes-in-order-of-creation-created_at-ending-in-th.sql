--! Previous: sha1:7b92bc4b07e80a34530247baad3fdd791f755044
--! Hash: sha1:d8abafa137215379a93de1a757e4fe7d33c99304
--! Message: Index: tax_codes in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- tax_codes in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists tax_codes_organization_id_created_at_id_idx on app_public.tax_codes (organization_id, created_at, id);
