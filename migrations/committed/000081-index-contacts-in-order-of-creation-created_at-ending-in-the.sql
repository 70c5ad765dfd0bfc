--! Previous: sha1:b90896c22c6064064cd91aa44cb78f53c80103ce
--! Hash: sha1:6760ed8e2a551cb514af5feb244217eb5faf7f0e
--! Message: Index: contacts in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- contacts in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists contacts_organization_id_created_at_id_idx on app_public.contacts (organization_id, created_at, id);
