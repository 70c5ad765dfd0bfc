--! Previous: sha1:8c81cab0a7ff564e62c0a354059eb2a64e5dd7d2
--! Hash: sha1:abb52968bf3539548ed789fc893646463b9cd715
--! Message: Index: expenses in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- expenses in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists expenses_organization_id_created_at_id_idx on app_public.expenses (organization_id, created_at, id);
