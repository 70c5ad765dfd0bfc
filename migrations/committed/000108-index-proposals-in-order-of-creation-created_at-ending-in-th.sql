--! Previous: sha1:dc20b8bea3e600b6d8c9229296257e56816aaf46
--! Hash: sha1:9ca380a77364f4bc3b98a5501714ee268349e350
--! Message: Index: proposals in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- proposals in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists proposals_organization_id_created_at_id_idx on app_public.proposals (organization_id, created_at, id);
