--! Previous: sha1:fe7e4b3044ca14fd21f723b670d8b4143e187ab9
--! Hash: sha1:717b07bfd3107ce49028ce139a23f0d8a9ad1847
--! Message: Index: job_roles in order of creation (CREATED_AT), ending in the id tie-break

--! no-transaction
-- job_roles in order of creation (`orderBy: CREATED_AT_ASC` / `CREATED_AT_DESC`): the API offers an
-- order on indexed columns only, and this key ends in the id tie-break PostGraphile adds, so a page
-- is read from the index in order, whatever the organization's size (tests/orderings.test.ts).
create index concurrently if not exists job_roles_organization_id_created_at_id_idx on app_public.job_roles (organization_id, created_at, id);
