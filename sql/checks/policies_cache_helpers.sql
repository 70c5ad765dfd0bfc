-- Policies that call an identity helper directly instead of `(select app_public.helper())`,
-- which PostgreSQL would evaluate once per row instead of once per query.
select schemaname as schema, tablename as "table", policyname as policy
from pg_policies p,
  lateral (select coalesce(p.qual, '') || ' ' || coalesce(p.with_check, '') as expr) e
where p.schemaname in ('app_public', 'app_private')
  and (
    select count(*) from regexp_matches(e.expr, 'app_public\.(current_org_id|current_user_id|current_member_role|current_member_has_role|has_permission|permitted_org_id|current_portal_org_id|current_portal_engagement_ids)\(', 'g')
  ) <> (
    select count(*) from regexp_matches(e.expr, 'SELECT app_public\.(current_org_id|current_user_id|current_member_role|current_member_has_role|has_permission|permitted_org_id|current_portal_org_id|current_portal_engagement_ids)\(', 'g')
  )
order by 1, 2, 3;
