-- The API edge (issue 11): statement timeouts answer QUERY_TIMEOUT; a row added without an
-- organization answers NO_ORGANIZATION (or UNAUTHENTICATED) instead of FORBIDDEN.
--!include errors.sql
--!include functions/require_organization.sql
--!include functions/tenant_tables.sql
do $$
declare
  v_table regclass;
begin
  for v_table in
    select c.oid::regclass
    from pg_class c
    where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p')
      and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
    order by c.relname
  loop
    call app_private.attach_require_organization(v_table);
  end loop;
end
$$;

-- Permissions that cannot be used to gain more; no cross-tenant existence oracles (issue 11,
-- points 8 and 6): roles pass on only what their maker holds, copies of rows (webhook
-- deliveries and their endpoints, activity events of copies) are read only by the readers of
-- their source, and organization slugs are made by the server with a random suffix.
--!include functions/activity.sql
--!include functions/permissions.sql
--!include functions/webhooks.sql
--!include functions/copies.sql
--!include functions/organization_slugs.sql
--!include functions/auth.sql
