-- SECURITY DEFINER functions in Atrium's schemas that do not pin search_path.
select p.oid::regprocedure as function
from pg_proc p
where p.pronamespace in ('app_public'::regnamespace, 'app_private'::regnamespace)
  and p.prosecdef
  and not exists (select from unnest(p.proconfig) as c where c like 'search_path=%')
order by 1;
