--! Previous: sha1:d58e10b5333ecee1f5e9dc8ffbe1e83631510383
--! Hash: sha1:61f1bf077a1ddec980a817458bc63b93d7b1219c
--! Message: Index: client_companies in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- client_companies in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists client_companies_organization_id_created_at_id_idx on app_public.client_companies (organization_id, created_at, id);
