--! Previous: sha1:5bfea8d946264e881eb35902a2377a8ec2d9f31c
--! Hash: sha1:a983fa448ba75e9ea439117c13aa847a7198c6cb
--! Message: Index: time_entry_costs in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- time_entry_costs in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists time_entry_costs_organization_id_created_at_id_idx on app_public.time_entry_costs (organization_id, created_at, id);
