--! Previous: sha1:b863a5f9d750caa084e6361ec429d69b2525e91e
--! Hash: sha1:59f8dd1cf2d22de70c7e38ebaded7d1ab3419729
--! Message: Index: webhook_endpoints in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- webhook_endpoints in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists webhook_endpoints_organization_id_created_at_id_idx on app_public.webhook_endpoints (organization_id, created_at, id);
