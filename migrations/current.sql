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
