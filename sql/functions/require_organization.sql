-- "Choose an organization first": a row added to a tenant table without one is refused with
-- NO_ORGANIZATION (UNAUTHENTICATED when nobody is signed in), not with row-level security's
-- generic FORBIDDEN. A tenant table's organization_id defaults to the request's organization
-- (app_public.current_org_id(), null when none is chosen or the user is not a member), so the
-- row reaches this BEFORE INSERT trigger with a null organization_id exactly then (a
-- client-portal user's row is left to row-level security, which refuses it); the trigger's
-- WHEN clause keeps every other insert free of it. Row-level security still decides everything
-- else (BEFORE triggers run before its checks). Attached to every tenant table by
-- app_private.assert_tenant_shape (sql/functions/tenant_tables.sql); a catalog check
-- (sql/checks/tenant_tables_require_organization.sql) finds tables without it.

-- SECURITY DEFINER: it asks the identity helpers the visitor may not call directly; it only raises.
create or replace function app_private.tg__require_organization() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if app_public.current_user_id() is null and not app_private.is_worker_session() then
    perform app_private.fail('UNAUTHENTICATED', format('Sign in to add %s.', replace(tg_table_name, '_', ' ')));
  end if;
  if app_public.current_portal_org_id() is not null then
    -- A client-portal user is in an organization, not as a member: row-level security decides
    -- (portal users add only the rows their table's portal_insert rule allows).
    return new;
  end if;
  perform app_private.fail('NO_ORGANIZATION', format('Choose an organization first (switchOrganization) to add %s.', replace(tg_table_name, '_', ' ')));
  return null;
end
$$;
comment on function app_private.tg__require_organization() is 'BEFORE INSERT on tenant tables, for rows without an organization: UNAUTHENTICATED or NO_ORGANIZATION.';
revoke all on function app_private.tg__require_organization() from public;

create or replace procedure app_private.attach_require_organization(tbl regclass)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_name text := format('tg_%s__require_organization', (select relname from pg_class where oid = tbl));
begin
  execute format('drop trigger if exists %I on %s', v_name, tbl);
  execute format('create trigger %I before insert on %s for each row when (new.organization_id is null) execute function app_private.tg__require_organization()', v_name, tbl);
end
$$;
