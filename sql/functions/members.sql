-- Membership rules that policies alone cannot express. Who may change members at all is in the
-- policies on app_public.organization_members (owners and admins); these triggers add:
--   * only an owner may grant the owner role, or change or remove an owner       (OWNER_REQUIRED)
--   * an organization always keeps at least one owner, even under concurrency     (LAST_OWNER)

-- Locks the organization (so concurrent changes to its owners queue up) and fails if no owner
-- other than member `leaving` would remain. SECURITY DEFINER: counts every owner, whatever the
-- caller can see.
create or replace function app_private.assert_owner_remains(organization_id uuid, leaving uuid) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  perform 1 from app_public.organizations o where o.id = assert_owner_remains.organization_id for no key update;
  if not exists (
    select 1
    from app_public.organization_members m
    where m.organization_id = assert_owner_remains.organization_id
      and m.role = 'owner'
      and m.id <> leaving
  ) then
    perform app_private.fail('LAST_OWNER', 'An organization must keep at least one owner; make someone else owner first.');
  end if;
end
$$;

-- BEFORE UPDATE OR DELETE on organization_members, per row. Runs as the acting role: the owner
-- role (migrations and Atrium's own SECURITY DEFINER functions) is trusted, everyone else
-- (requests, the worker) is checked.
create or replace function app_private.tg_organization_members__guard_owners() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_touches_owner boolean := old.role = 'owner' or (tg_op = 'UPDATE' and new.role = 'owner');
begin
  if tg_op = 'UPDATE' and (new.user_id <> old.user_id or new.organization_id <> old.organization_id) then
    perform app_private.fail('IMMUTABLE', 'A membership cannot be moved to another user or organization.');
  end if;
  if v_touches_owner and current_user <> ':DATABASE_OWNER'::name
     and app_public.current_member_role() is distinct from 'owner' then
    perform app_private.fail('OWNER_REQUIRED', 'Only an owner may grant, change or remove the owner role.');
  end if;
  if old.role = 'owner' and (tg_op = 'DELETE' or new.role <> 'owner') then
    perform app_private.assert_owner_remains(old.organization_id, old.id);
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;
