-- Text-like columns (text, email addresses and other string domains, arrays of them, json, jsonb)
-- of audited tables and of app_public.users that app_private.data_columns does not classify
-- (sql/functions/personal_data.sql), and classifications of columns that do not exist. The
-- audit trigger copies what the classification allows into the activity log; an unclassified
-- column would be copied with nobody having decided whether it holds personal data.
with audited as (
  select distinct t.tgrelid as oid from pg_trigger t where t.tgfoid = 'app_private.tg__audit'::regproc
  union
  select 'app_public.users'::regclass::oid
),
text_columns as (
  select n.nspname::text as schema_name, c.relname::text as table_name, a.attname::text as column_name
  from audited
  join pg_class c on c.oid = audited.oid
  join pg_namespace n on n.oid = c.relnamespace
  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
  join pg_type t on t.oid = a.atttypid
  left join pg_type element on element.oid = t.typelem and t.typcategory = 'A'
  where coalesce(element.typcategory, t.typcategory) = 'S' or a.atttypid in ('json'::regtype, 'jsonb'::regtype)
)
select tc.table_name as "table", tc.column_name as "column", 'not classified' as problem
from text_columns tc
where tc.schema_name = 'app_public'
  and not exists (select from app_private.data_columns d where d.schema_name = tc.schema_name and d.table_name = tc.table_name and d.column_name = tc.column_name)
union all
select d.table_name, d.column_name, 'no such column'
from app_private.data_columns d
where d.schema_name = 'app_public' and not exists (
  select from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attname = d.column_name and a.attnum > 0 and not a.attisdropped
  where c.relnamespace = 'app_public'::regnamespace and c.relname = d.table_name
)
order by 1, 2;
