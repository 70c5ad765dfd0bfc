-- The schema stays distributable over Citus by organization (docs/SCALE_OUT.md). Each table of
-- app_public and app_private has a placement, app_private.table_placements()
-- (sql/functions/placements.sql): distributed (it has organization_id), reference (global and
-- small, copied to every node) or local (stays on the coordinator, each with why).
-- Rows returned break a rule Citus imposes:
--   a primary or unique key of a distributed table without organization_id
--   a foreign key between two distributed tables that does not pair their organization_id
--   a foreign key from a reference table to a distributed or local table
--   a foreign key from a local table to a distributed table, unless declared in
--     app_private.undistributable_foreign_keys() (under Citus it is dropped)
--   a table declared local that does not exist, a declared foreign key that is not such a key
--   a reference table over 1 GB (`atrium.reference_table_max_bytes` when set): too big to copy to
--     every node on each write; it should be distributed or local instead
with tables as (
  select to_regclass(p.table_name) as oid, p.table_name as name, p.placement,
    (select a.attnum from pg_attribute a where a.attrelid = to_regclass(p.table_name) and a.attname = 'organization_id' and not a.attisdropped) as org
  from app_private.table_placements() p
), fks as (
  select con.conname, con.conkey, con.confkey, f.name as from_name, f.placement as from_placement, f.org as from_org,
    r.name as to_name, r.placement as to_placement, r.org as to_org
  from pg_constraint con join tables f on f.oid = con.conrelid join tables r on r.oid = con.confrelid
  where con.contype = 'f'
)
select t.name as "table", i.indexrelid::regclass::text as object, 'unique key without organization_id' as problem
from tables t join pg_index i on i.indrelid = t.oid
where t.placement = 'distributed' and i.indisunique and not (t.org = any (i.indkey::int2[]))
union all
select from_name, conname, 'foreign key between distributed tables not on organization_id'
from fks
where from_placement = 'distributed' and to_placement = 'distributed'
  and not exists (select from generate_subscripts(conkey, 1) k where conkey[k] = from_org and confkey[k] = to_org)
union all
select from_name, conname, format('foreign key from a reference table to a %s table', to_placement)
from fks where from_placement = 'reference' and to_placement <> 'reference'
union all
select from_name, conname, 'foreign key from a local table to a distributed table, not declared'
from fks
where from_placement = 'local' and to_placement = 'distributed'
  and (from_name, conname) not in (select u.table_name, u.constraint_name from app_private.undistributable_foreign_keys() u)
union all
select name, null, 'declared local but not a table of app_public or app_private' from tables where placement = 'missing'
union all
select u.table_name, u.constraint_name, 'declared undistributable but not a foreign key from a local table to a distributed one'
from app_private.undistributable_foreign_keys() u
where not exists (select from fks where fks.from_name = u.table_name and fks.conname = u.constraint_name and from_placement = 'local' and to_placement = 'distributed')
union all
select name, null, format('reference table of %s, over %s: too big to copy to every node', pg_size_pretty(pg_total_relation_size(oid)),
                          pg_size_pretty(coalesce(nullif(current_setting('atrium.reference_table_max_bytes', true), '')::bigint, 1024 * 1024 * 1024)))
from tables
where placement = 'reference' and pg_total_relation_size(oid) > coalesce(nullif(current_setting('atrium.reference_table_max_bytes', true), '')::bigint, 1024 * 1024 * 1024)
order by 1, 2;
