-- app_public tables with an organization_id that lack the trigger refusing a row added without
-- an organization with NO_ORGANIZATION (app_private.tg__require_organization, attached by
-- app_private.assert_tenant_shape).
select c.relname as "table"
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'app_public'
  and c.relkind in ('r', 'p')
  and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
  and not exists (
    select from pg_trigger t
    where t.tgrelid = c.oid and not t.tgisinternal and t.tgenabled <> 'D'
      and t.tgfoid = 'app_private.tg__require_organization'::regproc
      and t.tgname = format('tg_%s__require_organization', c.relname)
      and t.tgtype & 2 = 2 and t.tgtype & 4 = 4 -- BEFORE, INSERT
  )
order by 1;
