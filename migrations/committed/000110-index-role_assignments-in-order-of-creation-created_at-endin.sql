--! Previous: sha1:ffdfe36803f8ff96e86e7b9dcaa08c7e621a247c
--! Hash: sha1:6d208db2104e6ba7d5f0272d2f07d89f19ed3ad9
--! Message: Index: role_assignments in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- role_assignments in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists role_assignments_organization_id_created_at_id_idx on app_public.role_assignments (organization_id, created_at, id);
