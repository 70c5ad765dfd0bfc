--! Previous: sha1:b1af7f55cf57f4128119af50d83a7600f5fd8b45
--! Hash: sha1:b46b7024a365598de5575d0b2eb945349aa000b8
--! Message: Index: vendors by name, ending in the id tie-break

--! no-transaction
-- vendors by name (`orderBy: NAME_ASC`): the key ends in the primary key's id, the tie-break
-- PostGraphile adds to every order, so a page is read from the index in order instead of sorting
-- every row of the organization that shares a value (tests/orderings.test.ts).
create index concurrently if not exists vendors_organization_id_name_id_idx on app_public.vendors (organization_id, name, id);
