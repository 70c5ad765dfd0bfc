--! Previous: sha1:f9fd18b5c9117687a63c6e41699d1f62cfad128a
--! Hash: sha1:aa122bbc1ae9461eb462a15fef298c86639fbc6c
--! Message: Index: tasks by due_date, ending in the id tie-break

--! no-transaction
-- tasks by due_date (`orderBy: DUE_ON_ASC`): the key ends in the primary key's id, the tie-break
-- PostGraphile adds to every order, so a page is read from the index in order instead of sorting
-- every row of the organization that shares a value (tests/orderings.test.ts).
create index concurrently if not exists tasks_organization_id_due_on_id_idx on app_public.tasks (organization_id, due_on, id);
