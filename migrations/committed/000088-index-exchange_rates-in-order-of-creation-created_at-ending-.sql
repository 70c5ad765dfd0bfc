--! Previous: sha1:9d007fc3781179b10e6d8df8a4627ae05d6538be
--! Hash: sha1:8580d7b28c64be828ab6e66f3409bf3e5a37cc06
--! Message: Index: exchange_rates in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- exchange_rates in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists exchange_rates_organization_id_created_at_id_idx on app_public.exchange_rates (organization_id, created_at, id);
