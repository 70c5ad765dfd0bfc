-- The schema stays distributable over Citus by organization (docs/SCALE_OUT.md). Each table of
-- app_public and app_private has a placement:
--   distributed  it has organization_id: sharded by it, all colocated
--   local        it stays on the coordinator: the list below, each with why
--   reference    the rest: global and small, copied to every node (organizations, users,
--                permissions, the catalogues); a distributed table may refer to them
-- Rows returned break a rule Citus imposes:
--   a primary or unique key of a distributed table without the distribution column
--   a foreign key between two distributed tables that does not pair their distribution columns
--   a foreign key from a reference table to a distributed or local table
--   a foreign key from a local table to a distributed table, unless declared below (Citus cannot
--     keep it: under Citus it is dropped, and what it guarded is checked where the row is made)
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
), undistributable_fks (name) as (
  values
    ('app_private.invitation_secrets.invitation_secrets_organization_id_invitation_id_fkey'),
    ('app_private.portal_access_secrets.portal_access_secrets_organization_id_access_id_fkey')
), tables as (
  select c.oid, c.oid::regclass::text as name,
    case
      when c.oid::regclass::text in (select name from local) then 'local'
      when exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped) then 'distributed'
      else 'reference'
    end as placement,
    (select a.attnum from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped) as dist_col
  from pg_class c
  where c.relnamespace in ('app_public'::regnamespace, 'app_private'::regnamespace) and c.relkind in ('r', 'p') and not c.relispartition
)
select t.name as "table", i.indexrelid::regclass::text as object, 'unique key without the distribution column' as problem
from tables t join pg_index i on i.indrelid = t.oid
where t.placement = 'distributed' and i.indisunique and not (t.dist_col = any (i.indkey::int2[]))
union all
select f.name, con.conname, 'foreign key between distributed tables not on their distribution columns'
from pg_constraint con join tables f on f.oid = con.conrelid join tables r on r.oid = con.confrelid
where con.contype = 'f' and f.placement = 'distributed' and r.placement = 'distributed'
  and not exists (select from generate_subscripts(con.conkey, 1) k where con.conkey[k] = f.dist_col and con.confkey[k] = r.dist_col)
union all
select f.name, con.conname, format('foreign key from a reference table to a %s table', r.placement)
from pg_constraint con join tables f on f.oid = con.conrelid join tables r on r.oid = con.confrelid
where con.contype = 'f' and f.placement = 'reference' and r.placement <> 'reference'
union all
select f.name, con.conname, 'foreign key from a local table to a distributed table, not declared'
from pg_constraint con join tables f on f.oid = con.conrelid join tables r on r.oid = con.confrelid
where con.contype = 'f' and f.placement = 'local' and r.placement = 'distributed'
  and format('%s.%s', f.name, con.conname) not in (select name from undistributable_fks)
union all
select name, null, 'declared local but not a table of app_public or app_private' from local where to_regclass(name) is null
union all
select name, null, 'declared undistributable but not a foreign key from a local table to a distributed one' from undistributable_fks u
where not exists (
  select from pg_constraint con join tables f on f.oid = con.conrelid join tables r on r.oid = con.confrelid
  where con.contype = 'f' and format('%s.%s', f.name, con.conname) = u.name and f.placement = 'local' and r.placement = 'distributed')
order by 1, 2;
