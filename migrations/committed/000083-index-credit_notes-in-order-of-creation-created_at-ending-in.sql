--! Previous: sha1:9b962ecb08c1dace613050e9dac833cf08aa282b
--! Hash: sha1:3b95b476ddc263211e74449cf16164abd2c7d1c6
--! Message: Index: credit_notes in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- credit_notes in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists credit_notes_organization_id_created_at_id_idx on app_public.credit_notes (organization_id, created_at, id);
