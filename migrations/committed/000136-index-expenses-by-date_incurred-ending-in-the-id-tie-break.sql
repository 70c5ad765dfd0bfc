--! Previous: sha1:afd6804ad4cdc1a1617e75e819144566e24a5c25
--! Hash: sha1:19f9648f6ff8b3a81eb5bad9e736883f36f86d08
--! Message: Index: expenses by date_incurred, ending in the id tie-break

--! no-transaction
-- expenses by date_incurred (`orderBy: INCURRED_ON_ASC`): the key ends in the primary key's id, the tie-break
-- PostGraphile adds to every order, so a page is read from the index in order instead of sorting
-- every row of the organization that shares a value (tests/orderings.test.ts).
create index concurrently if not exists expenses_organization_id_incurred_on_id_idx on app_public.expenses (organization_id, incurred_on, id);
