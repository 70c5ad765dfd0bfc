-- Foreign keys from one tenant table to another (both have organization_id) that do not map
-- organization_id to organization_id: such a key could point at another tenant's row.
select con.conrelid::regclass as "table", con.conname as foreign_key, con.confrelid::regclass as "references"
from pg_constraint con
where con.contype = 'f'
  and con.connamespace in ('app_public'::regnamespace, 'app_private'::regnamespace)
  and exists (select from pg_attribute a where a.attrelid = con.conrelid and a.attname = 'organization_id' and not a.attisdropped)
  and exists (select from pg_attribute a where a.attrelid = con.confrelid and a.attname = 'organization_id' and not a.attisdropped)
  and not exists (
    select
    from unnest(con.conkey, con.confkey) as k(local, remote)
    join pg_attribute la on la.attrelid = con.conrelid and la.attnum = k.local
    join pg_attribute ra on ra.attrelid = con.confrelid and ra.attnum = k.remote
    where la.attname = 'organization_id' and ra.attname = 'organization_id'
  )
order by 1, 2;
