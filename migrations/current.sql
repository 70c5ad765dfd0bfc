-- The business tables' policies ask one helper per query instead of two:
--   organization_id = (select app_public.permitted_org_id('deals.read'))
-- replaces
--   organization_id = (select app_public.current_org_id()) and (select app_public.has_permission('deals.read'))
-- (same answer: the current organization if the member holds the permission; half the calls).
--!include functions/permissions.sql
--!include functions/tenant_tables.sql

-- Existing policies, rewritten in place (every policy with that pair).
do $$
declare
  p record;
  v_pair constant text := '\(organization_id = \( SELECT app_public\.current_org_id\(\) AS current_org_id\)\) AND \( SELECT app_public\.has_permission\(''([a-z_]+\.[a-z_]+)''::text\) AS has_permission\)';
  v_new constant text := '(organization_id = ( SELECT app_public.permitted_org_id(''\1''::text)))';
  v_qual text;
  v_check text;
begin
  for p in
    select schemaname, tablename, policyname, qual, with_check
    from pg_policies
    where schemaname = 'app_public' and (qual ~ v_pair or with_check ~ v_pair)
  loop
    v_qual := regexp_replace(p.qual, v_pair, v_new, 'g');
    v_check := regexp_replace(p.with_check, v_pair, v_new, 'g');
    execute format('alter policy %I on %I.%I%s%s', p.policyname, p.schemaname, p.tablename,
      case when v_qual is not null then format(' using (%s)', v_qual) else '' end,
      case when v_check is not null then format(' with check (%s)', v_check) else '' end);
  end loop;
  if exists (select from pg_policies where schemaname = 'app_public' and (qual ~ v_pair or with_check ~ v_pair)) then
    raise exception 'policies left with the old pair of helpers';
  end if;
end
$$;
