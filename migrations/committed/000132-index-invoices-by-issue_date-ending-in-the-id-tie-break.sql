--! Previous: sha1:270616d843b44ced8e0e211abf2641529accfa06
--! Hash: sha1:17a0c34f03edd27351e71c636a2c04adc44865be
--! Message: Index: invoices by issue_date, ending in the id tie-break

--! no-transaction
-- invoices by issue_date (`orderBy: ISSUED_ON_ASC`): the key ends in the primary key's id, the tie-break
-- PostGraphile adds to every order, so a page is read from the index in order instead of sorting
-- every row of the organization that shares a value (tests/orderings.test.ts).
create index concurrently if not exists invoices_organization_id_issued_on_id_idx on app_public.invoices (organization_id, issued_on, id);
