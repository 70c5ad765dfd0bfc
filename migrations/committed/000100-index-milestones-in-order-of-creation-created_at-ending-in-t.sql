--! Previous: sha1:7a804d25634022550521c1336b429a1eb3405305
--! Hash: sha1:0467fa9287f9649f50e0c97f7bbfc61fa5424621
--! Message: Index: milestones in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- milestones in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists milestones_organization_id_created_at_id_idx on app_public.milestones (organization_id, created_at, id);
