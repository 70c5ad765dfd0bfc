--! Previous: sha1:6d208db2104e6ba7d5f0272d2f07d89f19ed3ad9
--! Hash: sha1:b72db9f73ea5033e5425f310f3664cfe41f856e2
--! Message: Index: role_permissions in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- role_permissions in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists role_permissions_organization_id_created_at_id_idx on app_public.role_permissions (organization_id, created_at, id);
