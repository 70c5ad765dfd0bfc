--! Previous: sha1:717b07bfd3107ce49028ce139a23f0d8a9ad1847
--! Hash: sha1:4636e52553c14502ebe03ea8f1f7182aab3fb3fe
--! Message: Index: member_capacities in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- member_capacities in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists member_capacities_organization_id_created_at_id_idx on app_public.member_capacities (organization_id, created_at, id);
