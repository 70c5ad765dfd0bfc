--! Previous: sha1:fc54b8782ac59aca9c4950d64d93c82553999e40
--! Hash: sha1:cc38a9d2d29591f15bb2f3c6394d8376a0c3c9cc
--! Message: Index: invoices by balance (filter and order by what is left to pay)

--! no-transaction
-- Invoices by what is left to pay (`filter: { balance: { greaterThan: "0" } }`, `orderBy:
-- BALANCE_DESC`): the API offers filter and order on indexed columns only. The key ends in the
-- primary key's id, the tie-break PostGraphile adds to every order, so a page is read in order.
create index concurrently if not exists invoices_organization_id_balance_idx on app_public.invoices (organization_id, balance, id);
