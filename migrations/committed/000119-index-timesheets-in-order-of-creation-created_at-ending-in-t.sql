--! Previous: sha1:a983fa448ba75e9ea439117c13aa847a7198c6cb
--! Hash: sha1:b31a5bab2cb18a6abe7df74d8961f69765a26988
--! Message: Index: timesheets in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- timesheets in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists timesheets_organization_id_created_at_id_idx on app_public.timesheets (organization_id, created_at, id);
