--! Previous: sha1:bfee51affcc092f6083455ffc67d27b37574625a
--! Hash: sha1:7c8f78e221fe383c9bd62c8be51f3ba9852b31fd
--! Message: Index: bills in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- bills in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists bills_organization_id_created_at_id_idx on app_public.bills (organization_id, created_at, id);
