--! Previous: sha1:0467fa9287f9649f50e0c97f7bbfc61fa5424621
--! Hash: sha1:25355138992eb5e2a03441fe8ca19d51b18da6f7
--! Message: Index: organization_members in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- organization_members in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists organization_members_organization_id_created_at_id_idx on app_public.organization_members (organization_id, created_at, id);
