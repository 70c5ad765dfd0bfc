-- Functions in Atrium's schemas that PUBLIC (every role) may execute.
select p.oid::regprocedure as function
from pg_proc p
where p.pronamespace in ('app_public'::regnamespace, 'app_private'::regnamespace)
  and has_function_privilege('public', p.oid, 'execute')
order by 1;
