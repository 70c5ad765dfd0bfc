--! Previous: sha1:2848bb9b9e494b90787b43e043d7c26534f1c159
--! Hash: sha1:c7fc10074523d9921fc962fb527dec620d533030
--! Message: Index: milestones by due_date, ending in the id tie-break

--! no-transaction
-- milestones by due_date (`orderBy: DUE_ON_ASC`): the key ends in the primary key's id, the tie-break
-- PostGraphile adds to every order, so a page is read from the index in order instead of sorting
-- every row of the organization that shares a value (tests/orderings.test.ts).
create index concurrently if not exists milestones_organization_id_due_on_id_idx on app_public.milestones (organization_id, due_on, id);
