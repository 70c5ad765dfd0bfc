--! Previous: sha1:48645e20f194b87fea96532be78dce611d62d437
--! Hash: sha1:113a72a740e0b043141e42b9a4f750f17ef622af
--! Message: Index: project_templates in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- project_templates in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists project_templates_organization_id_created_at_id_idx on app_public.project_templates (organization_id, created_at, id);
