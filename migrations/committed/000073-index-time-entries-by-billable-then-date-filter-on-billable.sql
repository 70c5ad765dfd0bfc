--! Previous: sha1:cc38a9d2d29591f15bb2f3c6394d8376a0c3c9cc
--! Hash: sha1:16df0c45033b868593f829318f3d8d5bca35730a
--! Message: Index: time entries by billable, then date (filter on billable)

--! no-transaction
-- Time entries by billable (`filter: { billable: { equalTo: false } }`), then by date: the API
-- offers filter and order on indexed columns only; the key ends in the primary key's id, the
-- tie-break PostGraphile adds to every order.
create index concurrently if not exists time_entries_organization_id_billable_idx on app_public.time_entries (organization_id, billable, work_date, id);
