--! Previous: sha1:ab63e7fb5314a699111d4807d78a248fa47df02e
--! Hash: sha1:52cbc7d48b4c0a40b2ddffc7dd0c8d3b4187faba
--! Message: Index: deals by expected_close_date, ending in the id tie-break

--! no-transaction
-- deals by expected_close_date (`orderBy: EXPECTED_CLOSE_ON_ASC`): the key ends in the primary key's id, the tie-break
-- PostGraphile adds to every order, so a page is read from the index in order instead of sorting
-- every row of the organization that shares a value (tests/orderings.test.ts).
create index concurrently if not exists deals_organization_id_expected_close_on_id_idx on app_public.deals (organization_id, expected_close_on, id);
