-- Audit triggers whose arguments are not what app_private.attach_audit writes for their table: the
-- organization and secret columns, then the classification and parent as they stand in
-- app_private.data_columns and app_private.audit_parents (app_private.audit_arguments). The
-- trigger reads them from its arguments, so a classification written around
-- app_private.classify_columns, or a trigger attached by hand, would not be honoured.
-- Fix: call app_private.refresh_audit('<table>').
select t.tgrelid::regclass as "table", t.tgname as "trigger", args.a as arguments
from pg_trigger t
cross join lateral (select app_private.trigger_arguments(t.tgargs, t.tgnargs) as a) as args
where t.tgfoid = 'app_private.tg__audit'::regproc
  and not t.tgisinternal
  and (
    cardinality(args.a) <> 6
    or left(args.a[2], 1) <> '{'
    or args.a is distinct from app_private.audit_arguments(t.tgrelid, args.a[1], case when left(args.a[2], 1) = '{' then args.a[2]::text[] end)
  )
order by 1, 2;
