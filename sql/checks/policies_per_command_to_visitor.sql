-- app_public policies that are FOR ALL, or not TO the visitor role alone.
-- Needs: set atrium.visitor = '<visitor role>';
select p.tablename as "table", p.policyname as policy, p.cmd, p.roles
from pg_policies p
where p.schemaname = 'app_public'
  and (p.cmd = 'ALL' or p.roles is distinct from array[current_setting('atrium.visitor')]::name[])
order by 1, 2;
