-- app_public tenant tables (with organization_id) whose primary key is not (organization_id, id),
-- followed, for a partitioned table, by its partition key (PostgreSQL requires it in every unique
-- key: app_public.activity_events, sql/functions/activity_partitions.sql).
select c.relname as "table",
  (select array_agg(a.attname::text order by k.ord)
   from pg_constraint p
   cross join lateral unnest(p.conkey) with ordinality as k(attnum, ord)
   join pg_attribute a on a.attrelid = p.conrelid and a.attnum = k.attnum
   where p.conrelid = c.oid and p.contype = 'p') as primary_key
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'app_public'
  and c.relkind in ('r', 'p')
  and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
  and (select array_agg(a.attname::text order by k.ord)
       from pg_constraint p
       cross join lateral unnest(p.conkey) with ordinality as k(attnum, ord)
       join pg_attribute a on a.attrelid = p.conrelid and a.attnum = k.attnum
       where p.conrelid = c.oid and p.contype = 'p') is distinct from array['organization_id', 'id'] || coalesce((
         select array_agg(a.attname::text order by k.ord)
         from pg_partitioned_table pt
         cross join lateral unnest(pt.partattrs::int2[]) with ordinality as k(attnum, ord)
         join pg_attribute a on a.attrelid = pt.partrelid and a.attnum = k.attnum
         where pt.partrelid = c.oid), '{}')
order by 1;
