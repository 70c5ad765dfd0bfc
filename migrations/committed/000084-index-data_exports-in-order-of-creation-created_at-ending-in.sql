--! Previous: sha1:3b95b476ddc263211e74449cf16164abd2c7d1c6
--! Hash: sha1:9621f21dad7ab5e1e1fb73ebb4efec7d0779740f
--! Message: Index: data_exports in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- data_exports in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists data_exports_organization_id_created_at_id_idx on app_public.data_exports (organization_id, created_at, id);
