-- Foreign keys without a supporting index: one whose leading columns are exactly the key's
-- columns (any order). On tenant tables the index must also lead with organization_id, so a
-- foreign key to a global table (users) is indexed as (organization_id, user_id).
with fk as (
  select con.conrelid, con.conname,
    array(select unnest(con.conkey) order by 1) as cols,
    exists (select from pg_attribute a where a.attrelid = con.conrelid and a.attname = 'organization_id' and a.attnotnull and not a.attisdropped) as tenant,
    (select attnum from pg_attribute a where a.attrelid = con.conrelid and a.attname = 'organization_id' and not a.attisdropped) as org_attnum
  from pg_constraint con
  where con.contype = 'f' and con.connamespace in ('app_public'::regnamespace, 'app_private'::regnamespace)
)
select fk.conrelid::regclass as "table", fk.conname as foreign_key
from fk
where not exists (
  select
  from pg_index i
  where i.indrelid = fk.conrelid and i.indisvalid and (i.indpred is null
             -- or only the rows whose key is set: every row a key lookup (key = value) can find
             or pg_get_expr(i.indpred, i.indrelid) = (select '(' || string_agg(quote_ident(a.attname) || ' IS NOT NULL', ' AND ' order by a.attnum) || ')'
                                                      from pg_attribute a where a.attrelid = i.indrelid and a.attnum = any (fk.cols)))
    and (select c.relam from pg_class c where c.oid = i.indexrelid) = (select a.oid from pg_am a where a.amname = 'btree')
    and (
      case when fk.tenant and not (fk.org_attnum = any(fk.cols))
        -- (organization_id, <key columns>)
        then i.indkey[0] = fk.org_attnum
             and array(select unnest((i.indkey::int2[])[1:cardinality(fk.cols)]) order by 1) = fk.cols
        else array(select unnest((i.indkey::int2[])[0:cardinality(fk.cols) - 1]) order by 1) = fk.cols
             and (not fk.tenant or i.indkey[0] = fk.org_attnum)
      end
    )
)
order by 1, 2;
