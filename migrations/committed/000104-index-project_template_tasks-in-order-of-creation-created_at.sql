--! Previous: sha1:5061918cc4cc593ac54461b5b97727c065c7ca73
--! Hash: sha1:48645e20f194b87fea96532be78dce611d62d437
--! Message: Index: project_template_tasks in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- project_template_tasks in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists project_template_tasks_organization_id_created_at_id_idx on app_public.project_template_tasks (organization_id, created_at, id);
