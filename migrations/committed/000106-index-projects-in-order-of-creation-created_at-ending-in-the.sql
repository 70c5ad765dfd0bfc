--! Previous: sha1:113a72a740e0b043141e42b9a4f750f17ef622af
--! Hash: sha1:180a122a3b9af75b2cb097d77efeabe1e94b8e0d
--! Message: Index: projects in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- projects in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists projects_organization_id_created_at_id_idx on app_public.projects (organization_id, created_at, id);
