-- app_public tables with an organization_id (and organizations itself) that lack an audit
-- trigger for insert, update or delete. activity_events is the log, not audited.
select c.relname as "table", op.name as missing_trigger
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
cross join (values ('insert'), ('update'), ('delete')) as op(name)
where n.nspname = 'app_public'
  and c.relkind in ('r', 'p')
  and c.relname <> 'activity_events'
  and (c.relname = 'organizations' or exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped))
  and not exists (
    select from pg_trigger t
    where t.tgrelid = c.oid and not t.tgisinternal and t.tgenabled <> 'D'
      and t.tgfoid = 'app_private.tg__audit'::regproc
      and t.tgname = format('tg_%s__audit_%s', c.relname, op.name)
  )
order by 1, 2;
