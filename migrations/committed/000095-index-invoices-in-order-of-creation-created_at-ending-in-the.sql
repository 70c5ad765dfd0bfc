--! Previous: sha1:67c5bb21e35cf03f91852a1ea434952d1fd35e1e
--! Hash: sha1:fe7e4b3044ca14fd21f723b670d8b4143e187ab9
--! Message: Index: invoices in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- invoices in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists invoices_organization_id_created_at_id_idx on app_public.invoices (organization_id, created_at, id);
