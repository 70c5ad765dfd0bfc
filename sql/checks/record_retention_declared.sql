-- Audited app_public tables with a money column (app_public.money_amount) whose records are not
-- declared bookkeeping or not (app_private.record_retention_classes, sql/functions/activity_retention.sql),
-- and declarations of tables that do not exist. The activity log keeps bookkeeping records' events
-- as long as the law says; a new table holding amounts must be decided on, not forgotten.
with money_tables as (
  select distinct c.relname::text as table_name
  from pg_trigger t
  join pg_class c on c.oid = t.tgrelid and c.relnamespace = 'app_public'::regnamespace
  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
  where t.tgfoid = 'app_private.tg__audit'::regproc and a.atttypid = 'app_public.money_amount'::regtype
)
select m.table_name as "table", 'bookkeeping or not undeclared' as problem
from money_tables m
where not exists (select from app_private.record_retention_classes r where r.table_name = m.table_name)
union all
select r.table_name, 'no such table'
from app_private.record_retention_classes r
where to_regclass(format('app_public.%I', r.table_name)) is null
order by 1;
