--! Previous: sha1:636eb39ccd6e200147af0c70c13481fb6b36dcd4
--! Hash: sha1:9d007fc3781179b10e6d8df8a4627ae05d6538be
--! Message: Index: erasures in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- erasures in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists erasures_organization_id_created_at_id_idx on app_public.erasures (organization_id, created_at, id);
