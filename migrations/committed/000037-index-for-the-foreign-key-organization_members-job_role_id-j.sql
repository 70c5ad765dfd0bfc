--! Previous: sha1:a48cba6536ba05b9e5c09a1ba02f754d3c71b7b3
--! Hash: sha1:143f1d1eb028819bfdb0d216d99723b8d43219b2
--! Message: Index for the foreign key organization_members.job_role_id (job_roles)

--! no-transaction
-- An index led by (organization_id, job_role_id), for the foreign key
-- organization_members_job_role_fkey (migration 000035).
create index concurrently if not exists organization_members_organization_id_job_role_id_idx on app_public.organization_members (organization_id, job_role_id);
