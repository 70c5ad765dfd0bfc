--! Previous: sha1:f33830b8f3c5ba0bedc54fd5312c82516593457c
--! Hash: sha1:c8d440ce82a65892aeab31904b123459455eb68b
--! Message: Index: invitations in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- invitations in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists invitations_organization_id_created_at_id_idx on app_public.invitations (organization_id, created_at, id);
