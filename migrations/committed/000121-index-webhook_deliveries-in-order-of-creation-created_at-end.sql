--! Previous: sha1:9e3f19fbb20895ee494652531ac77ea91c2888f4
--! Hash: sha1:b863a5f9d750caa084e6361ec429d69b2525e91e
--! Message: Index: webhook_deliveries in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- webhook_deliveries in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists webhook_deliveries_organization_id_created_at_id_idx on app_public.webhook_deliveries (organization_id, created_at, id);
