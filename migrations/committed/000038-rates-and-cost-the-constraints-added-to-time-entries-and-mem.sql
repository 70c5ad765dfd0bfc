--! Previous: sha1:143f1d1eb028819bfdb0d216d99723b8d43219b2
--! Hash: sha1:97dbc484fe95e65727e7c9c3972dead8b1392f92
--! Message: Rates and cost: the constraints added to time entries and members, validated

-- Enter migration here. It runs with lock_timeout 5s (src/db/migrations.ts); in a transaction,
-- begin with its statement_timeout (docs/MIGRATIONS.md):
-- set local statement_timeout = '60s';
set local statement_timeout = '10min';

-- The constraints migration 000035 added NOT VALID to existing tables, validated: a transaction of
-- their own, which scans each table while writes go on (SHARE UPDATE EXCLUSIVE).
alter table app_public.time_entries validate constraint time_entries_job_role_fkey;
alter table app_public.time_entries validate constraint time_entries_rate_source_check;
alter table app_public.organization_members validate constraint organization_members_job_role_fkey;
