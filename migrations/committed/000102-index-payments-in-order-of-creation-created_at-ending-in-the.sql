--! Previous: sha1:25355138992eb5e2a03441fe8ca19d51b18da6f7
--! Hash: sha1:e19f29ed8a919218b4b7731fca4b271be63428ab
--! Message: Index: payments in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- payments in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists payments_organization_id_created_at_id_idx on app_public.payments (organization_id, created_at, id);
