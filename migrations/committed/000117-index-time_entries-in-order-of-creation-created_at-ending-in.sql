--! Previous: sha1:e6190164ffb278de3dadcc67007388000a45e12a
--! Hash: sha1:5bfea8d946264e881eb35902a2377a8ec2d9f31c
--! Message: Index: time_entries in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- time_entries in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists time_entries_organization_id_created_at_id_idx on app_public.time_entries (organization_id, created_at, id);
