-- Tables in app_public and app_private without row-level security enabled AND forced.
select n.nspname as schema, c.relname as "table", c.relrowsecurity as enabled, c.relforcerowsecurity as forced
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname in ('app_public', 'app_private')
  and c.relkind in ('r', 'p')
  and not (c.relrowsecurity and c.relforcerowsecurity)
order by 1, 2;
