-- app_public tables without `organization_id uuid not null` (users, organizations and
-- permissions are the deliberate exceptions: one account across organizations, the tenant
-- itself, and the permission catalogue every organization shares).
select c.relname as "table"
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'app_public'
  and c.relkind in ('r', 'p')
  and c.relname not in ('users', 'organizations', 'permissions')
  and not exists (
    select from pg_attribute a
    where a.attrelid = c.oid and a.attname = 'organization_id'
      and a.atttypid = 'uuid'::regtype and a.attnotnull and not a.attisdropped
  )
order by 1;
