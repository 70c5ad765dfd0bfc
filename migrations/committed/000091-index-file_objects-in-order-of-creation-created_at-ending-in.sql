--! Previous: sha1:abb52968bf3539548ed789fc893646463b9cd715
--! Hash: sha1:f33830b8f3c5ba0bedc54fd5312c82516593457c
--! Message: Index: file_objects in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- file_objects in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists file_objects_organization_id_created_at_id_idx on app_public.file_objects (organization_id, created_at, id);
