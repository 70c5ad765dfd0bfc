--! Previous: sha1:9621f21dad7ab5e1e1fb73ebb4efec7d0779740f
--! Hash: sha1:8a1fe956827478d7d56b873ec2c9589b492af53b
--! Message: Index: deals in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- deals in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists deals_organization_id_created_at_id_idx on app_public.deals (organization_id, created_at, id);
