--! Previous: sha1:9ca380a77364f4bc3b98a5501714ee268349e350
--! Hash: sha1:ffdfe36803f8ff96e86e7b9dcaa08c7e621a247c
--! Message: Index: refunds in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- refunds in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists refunds_organization_id_created_at_id_idx on app_public.refunds (organization_id, created_at, id);
