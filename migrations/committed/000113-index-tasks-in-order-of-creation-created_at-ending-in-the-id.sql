--! Previous: sha1:af9a1c044949bd3b5a2cde0daf6b029b6120b050
--! Hash: sha1:8bb3e0d0085408404b83015c1ba5e80325e0d3bb
--! Message: Index: tasks in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- tasks in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists tasks_organization_id_created_at_id_idx on app_public.tasks (organization_id, created_at, id);
