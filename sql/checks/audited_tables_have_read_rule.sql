-- Audited tables without a rule in app_private.activity_read_rules: their events in
-- app_public.activity_events would be readable by nobody (sql/functions/activity.sql).
select distinct c.relname as "table"
from pg_trigger t
join pg_class c on c.oid = t.tgrelid
where not t.tgisinternal
  and t.tgfoid = 'app_private.tg__audit'::regproc
  and not exists (select from app_private.activity_read_rules r where r.table_name = c.relname)
order by 1;
