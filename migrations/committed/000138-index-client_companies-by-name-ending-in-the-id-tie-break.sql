--! Previous: sha1:fb1a0745c67a426f25b28dfeed839ea4cc3a41a5
--! Hash: sha1:76bcdc1e22ac3de2650963e89e01893b46055976
--! Message: Index: client_companies by name, ending in the id tie-break

--! no-transaction
-- client_companies by name (`orderBy: NAME_ASC`): the key ends in the primary key's id, the tie-break
-- PostGraphile adds to every order, so a page is read from the index in order instead of sorting
-- every row of the organization that shares a value (tests/orderings.test.ts).
create index concurrently if not exists client_companies_organization_id_name_id_idx on app_public.client_companies (organization_id, name, id);
