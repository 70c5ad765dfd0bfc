--! Previous: sha1:c1e2345fde8e8cc0872af4da96aff7807ce61e17
--! Hash: sha1:bfffeba1f4ac2e5de6b6f8281a50b142bc9de967
--! Message: Index: payments by date_received, ending in the id tie-break

--! no-transaction
-- payments by date_received (`orderBy: RECEIVED_ON_ASC`): the key ends in the primary key's id, the tie-break
-- PostGraphile adds to every order, so a page is read from the index in order instead of sorting
-- every row of the organization that shares a value (tests/orderings.test.ts).
create index concurrently if not exists payments_organization_id_received_on_id_idx on app_public.payments (organization_id, received_on, id);
