--! Previous: sha1:e19f29ed8a919218b4b7731fca4b271be63428ab
--! Hash: sha1:5061918cc4cc593ac54461b5b97727c065c7ca73
--! Message: Index: project_template_milestones in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- project_template_milestones in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists project_template_milestones_organization_id_created_at_id_idx on app_public.project_template_milestones (organization_id, created_at, id);
