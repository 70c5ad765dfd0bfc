--! Previous: sha1:b72db9f73ea5033e5425f310f3664cfe41f856e2
--! Hash: sha1:af9a1c044949bd3b5a2cde0daf6b029b6120b050
--! Message: Index: roles in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- roles in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists roles_organization_id_created_at_id_idx on app_public.roles (organization_id, created_at, id);
