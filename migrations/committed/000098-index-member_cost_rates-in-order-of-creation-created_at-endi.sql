--! Previous: sha1:4636e52553c14502ebe03ea8f1f7182aab3fb3fe
--! Hash: sha1:350ea1033372b5b02c10f5f939fb4a3585052b28
--! Message: Index: member_cost_rates in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- member_cost_rates in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists member_cost_rates_organization_id_created_at_id_idx on app_public.member_cost_rates (organization_id, created_at, id);
