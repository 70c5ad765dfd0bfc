--! Previous: sha1:137f489213319238eb088531cf7892fd442832a0
--! Hash: sha1:7086bd19f208572c34d56db1a2bd7588a6b5078c
--! Message: Index: project_templates by name, ending in the id tie-break

--! no-transaction
-- project_templates by name (`orderBy: NAME_ASC`): the key ends in the primary key's id, the tie-break
-- PostGraphile adds to every order, so a page is read from the index in order instead of sorting
-- every row of the organization that shares a value (tests/orderings.test.ts).
create index concurrently if not exists project_templates_organization_id_name_id_idx on app_public.project_templates (organization_id, name, id);
