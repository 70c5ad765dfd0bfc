--! Previous: sha1:3ad19e085cbd4f1b3295ff1b74d7b21e34019a2b
--! Hash: sha1:48a4f31239b7ee1ccf97d62020e39deec5aa8456
--! Message: Scale-out: where each table would live on Citus, declared in SQL (table_placements, undistributable_foreign_keys)

-- Where each table would live on Citus (docs/SCALE_OUT.md): app_private.table_placements() and
-- app_private.undistributable_foreign_keys(), read by sql/checks/distributable_by_organization.sql
-- and sql/citus/distribute.sql.
set local statement_timeout = '60s';
--! Included functions/placements.sql
-- Where each table would live if the database were distributed over Citus by organization
-- (docs/SCALE_OUT.md). One declaration, read by the catalog check that keeps the schema
-- distributable (sql/checks/distributable_by_organization.sql) and by the script that distributes
-- it (sql/citus/distribute.sql):
--   distributed  a table with organization_id: sharded by it, all colocated
--   reference    a table without it: global and small, copied to every node (organizations,
--                users, permissions, the catalogues)
--   local        stays on the coordinator: the tables listed below, each with why
create or replace function app_private.table_placements()
returns table (table_name text, placement text, reason text)
language sql stable
set search_path = pg_catalog
as $$
  with local (name, reason) as (
    values
      ('app_private.sessions', 'found by its id or refresh-token hash before the organization is known'),
      ('app_private.used_refresh_tokens', 'found by token hash, with its session'),
      ('app_private.password_reset_tokens', 'found by token hash; a user''s, not an organization''s'),
      ('app_private.registrations', 'found by token hash before any organization exists'),
      ('app_private.login_throttle', 'keyed by email and address, before any organization is known'),
      ('app_private.invitation_secrets', 'found by token hash when an invitation is accepted'),
      ('app_private.portal_access_secrets', 'found by token hash when portal access is accepted'),
      ('app_private.email_messages', 'the outgoing mail queue of the whole database'),
      ('app_private.email_secrets', 'tokens of queued mail, beside the queue'),
      ('app_private.erasure_transactions', 'the audited erasure door''s ledger, keyed by transaction'),
      ('app_private.deleted_organizations', 'what is left of an organization once it is gone'),
      ('app_private.activity_partition_drops', 'the log of month partitions dropped, for the whole log'),
      ('app_private.worker_heartbeats', 'the job workers of this database')
  )
  select c.oid::regclass::text,
    case
      when l.name is not null then 'local'
      when exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped) then 'distributed'
      else 'reference'
    end,
    coalesce(l.reason, case when exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
                            then 'an organization''s rows' else 'global' end)
  from pg_class c
  left join local l on l.name = c.oid::regclass::text
  where c.relnamespace in ('app_public'::regnamespace, 'app_private'::regnamespace) and c.relkind in ('r', 'p') and not c.relispartition
  union all
  -- Declared local, but no such table: the check reports it.
  select l.name, 'missing', l.reason from local l where to_regclass(l.name) is null
  order by 1
$$;
comment on function app_private.table_placements() is
  'Where each table of app_public and app_private would live on Citus (distributed by organization_id, reference, or local to the coordinator): docs/SCALE_OUT.md.';

-- Foreign keys Citus cannot keep (from a coordinator-local table to a distributed one): dropped by
-- sql/citus/distribute.sql, and what they guard holds because the functions that create the
-- local row create the row it refers to in the same transaction.
create or replace function app_private.undistributable_foreign_keys()
returns table (table_name text, constraint_name text, reason text)
language sql immutable
set search_path = pg_catalog
as $$
  values
    ('app_private.invitation_secrets', 'invitation_secrets_organization_id_invitation_id_fkey', 'made with its invitation by app_public.invite_member'),
    ('app_private.portal_access_secrets', 'portal_access_secrets_organization_id_access_id_fkey', 'made with its access by app_public.grant_portal_access')
$$;

revoke all on function app_private.table_placements() from public;
revoke all on function app_private.undistributable_foreign_keys() from public;
--! EndIncluded functions/placements.sql
