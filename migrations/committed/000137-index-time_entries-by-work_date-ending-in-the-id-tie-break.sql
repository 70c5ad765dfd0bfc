--! Previous: sha1:19f9648f6ff8b3a81eb5bad9e736883f36f86d08
--! Hash: sha1:fb1a0745c67a426f25b28dfeed839ea4cc3a41a5
--! Message: Index: time_entries by work_date, ending in the id tie-break

--! no-transaction
-- time_entries by work_date (`orderBy: WORK_DATE_ASC`): the key ends in the primary key's id, the tie-break
-- PostGraphile adds to every order, so a page is read from the index in order instead of sorting
-- every row of the organization that shares a value (tests/orderings.test.ts).
create index concurrently if not exists time_entries_organization_id_work_date_id_idx on app_public.time_entries (organization_id, work_date, id);
