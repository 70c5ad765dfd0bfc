--! Previous: sha1:350ea1033372b5b02c10f5f939fb4a3585052b28
--! Hash: sha1:7a804d25634022550521c1336b429a1eb3405305
--! Message: Index: messages in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- messages in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists messages_organization_id_created_at_id_idx on app_public.messages (organization_id, created_at, id);
