--! Previous: sha1:c8d440ce82a65892aeab31904b123459455eb68b
--! Hash: sha1:01a34db1aaccd90bff4907f581d749b847e5032a
--! Message: Index: invoice_line_items in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- invoice_line_items in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists invoice_line_items_organization_id_created_at_id_idx on app_public.invoice_line_items (organization_id, created_at, id);
