--! Previous: sha1:a65d549a30917b2b2716780609f6207a5a60b04e
--! Hash: sha1:a48cba6536ba05b9e5c09a1ba02f754d3c71b7b3
--! Message: Index for the foreign key time_entries.job_role_id (job_roles)

--! no-transaction
-- An index led by (organization_id, job_role_id), for the foreign key time_entries_job_role_fkey
-- (migration 000035): deleting a job role finds its entries through it, and reports by role read it.
create index concurrently if not exists time_entries_organization_id_job_role_id_idx on app_public.time_entries (organization_id, job_role_id);
