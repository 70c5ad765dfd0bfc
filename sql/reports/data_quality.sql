-- Data quality of the schema, as numbers (docs/ENTITIES.md shows them; `npm run data-quality`
-- prints them with query timings). Run as the owner, with `set atrium.visitor = '<visitor role>'`.
--   tables_defined        tables in app_public
--   tenant_isolation_pct  of the tables with organization_id (plus organizations): RLS enabled and
--                         forced, a SELECT policy for the visitor, and every policy TO the visitor
--   composite_fk_pct      of the foreign keys between tenant tables: those that include organization_id
--   fk_indexed_pct        of all foreign keys in app_public/app_private: those with an index whose
--                         leading columns are the key's columns (any order): the index a DELETE or
--                         key UPDATE on the referenced table uses to find referencing rows. An index
--                         (organization_id, user_id) does not count for a key on user_id alone.
--   unindexed_fks         those without one, as table.constraint
-- `npm run doctor` reports them (src/db/doctor.ts) on any database.
with tables as (
  select c.oid, c.relname, c.relrowsecurity, c.relforcerowsecurity,
    exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped) as has_org
  from pg_class c
  where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p')
), tenant as (
  select t.*,
    t.relrowsecurity and t.relforcerowsecurity
    and exists (select from pg_policies p where p.schemaname = 'app_public' and p.tablename = t.relname and p.cmd in ('SELECT', 'ALL'))
    and not exists (select from pg_policies p where p.schemaname = 'app_public' and p.tablename = t.relname
                    and p.roles is distinct from array[current_setting('atrium.visitor')]::name[]) as isolated
  from tables t
  where t.has_org or t.relname = 'organizations'
), fks as (
  select con.oid, con.conrelid, con.confrelid, con.conkey, con.conname,
    array(select unnest(con.conkey) order by 1) as cols,
    (select attnum from pg_attribute a where a.attrelid = con.conrelid and a.attname = 'organization_id' and a.attnotnull and not a.attisdropped) as org_attnum,
    exists (select from pg_attribute a where a.attrelid = con.confrelid and a.attname = 'organization_id' and not a.attisdropped) as to_tenant
  from pg_constraint con
  where con.contype = 'f' and con.connamespace in ('app_public'::regnamespace, 'app_private'::regnamespace)
), fk_status as (
  select f.*,
    exists (
      select from pg_index i
      where i.indrelid = f.conrelid and i.indisvalid and (i.indpred is null
             -- or only the rows whose key is set: every row a key lookup (key = value) can find
             or pg_get_expr(i.indpred, i.indrelid) = (select '(' || string_agg(quote_ident(a.attname) || ' IS NOT NULL', ' AND ' order by a.attnum) || ')'
                                                      from pg_attribute a where a.attrelid = i.indrelid and a.attnum = any (f.cols)))
        and (select c.relam from pg_class c where c.oid = i.indexrelid) = (select a.oid from pg_am a where a.amname = 'btree')
        and array(select unnest((i.indkey::int2[])[0:cardinality(f.cols) - 1]) order by 1) = f.cols
    ) as indexed
  from fks f
)
select
  (select count(*) from tables)::int as tables_defined,
  (select count(*) from tenant)::int as tenant_tables,
  round(100.0 * (select count(*) filter (where isolated) from tenant) / nullif((select count(*) from tenant), 0), 1) as tenant_isolation_pct,
  (select count(*) from fk_status where org_attnum is not null and to_tenant and confrelid <> 'app_public.organizations'::regclass)::int as tenant_fks,
  round(100.0 * (select count(*) from fk_status where org_attnum is not null and to_tenant and confrelid <> 'app_public.organizations'::regclass and org_attnum = any (cols))
    / nullif((select count(*) from fk_status where org_attnum is not null and to_tenant and confrelid <> 'app_public.organizations'::regclass), 0), 1) as composite_fk_pct,
  (select count(*) from fk_status)::int as foreign_keys,
  round(100.0 * (select count(*) filter (where indexed) from fk_status) / nullif((select count(*) from fk_status), 0), 1) as fk_indexed_pct,
  array(select format('%s.%s', conrelid::regclass, conname) from fk_status where not indexed order by 1) as unindexed_fks;
