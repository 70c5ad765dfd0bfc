--! Previous: sha1:61f1bf077a1ddec980a817458bc63b93d7b1219c
--! Hash: sha1:b90896c22c6064064cd91aa44cb78f53c80103ce
--! Message: Index: client_portal_access in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- client_portal_access in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists client_portal_access_organization_id_created_at_id_idx on app_public.client_portal_access (organization_id, created_at, id);
