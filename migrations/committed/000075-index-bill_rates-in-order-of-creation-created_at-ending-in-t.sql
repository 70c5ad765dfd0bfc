--! Previous: sha1:d32318fa0ea3e19d4087b7cdc72d6cd1d6c52ff9
--! Hash: sha1:bfee51affcc092f6083455ffc67d27b37574625a
--! Message: Index: bill_rates in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- bill_rates in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists bill_rates_organization_id_created_at_id_idx on app_public.bill_rates (organization_id, created_at, id);
