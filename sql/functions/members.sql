-- Membership rules that policies alone cannot express. Who may change members at all is in the
-- policies on app_public.organization_members (owners and admins); these triggers add:
--   * only an owner may grant the owner role, or change or remove an owner       (OWNER_REQUIRED)
--   * an organization always keeps at least one owner, even under concurrency     (LAST_OWNER)

-- BEFORE UPDATE OR DELETE on organization_members, per row. SECURITY DEFINER so that it sees
-- (and locks) every owner of the organization, whatever the acting user can see; nobody can call
-- it directly. Changes made through the API or by the worker (their session logs in as the
-- authenticator or the worker) are checked; maintenance by the owner role is trusted.
create or replace function app_private.tg_organization_members__guard_owners() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_checked boolean := session_user in (':DATABASE_AUTHENTICATOR'::name, ':DATABASE_WORKER'::name);
begin
  if tg_op = 'DELETE' and app_private.erasing(old.organization_id, 'organization') then
    return old; -- the purge of a deleted organization (sql/functions/organization_deletion.sql)
  end if;
  if tg_op = 'UPDATE' and (new.user_id <> old.user_id or new.organization_id <> old.organization_id) then
    perform app_private.fail('IMMUTABLE', 'A membership cannot be moved to another user or organization.');
  end if;
  if v_checked and (old.role = 'owner' or (tg_op = 'UPDATE' and new.role = 'owner'))
     and app_public.current_member_role() is distinct from 'owner' then
    perform app_private.fail('OWNER_REQUIRED', 'Only an owner may grant, change or remove the owner role.');
  end if;
  if old.role = 'owner' and (tg_op = 'DELETE' or new.role <> 'owner') then
    -- Lock the organization, so that concurrent changes to its owners queue up, then count.
    perform 1 from app_public.organizations o where o.id = old.organization_id for no key update;
    if not exists (
      select 1 from app_public.organization_members m
      where m.organization_id = old.organization_id and m.role = 'owner' and m.id <> old.id
    ) then
      perform app_private.fail('LAST_OWNER', 'An organization must keep at least one owner; make someone else owner first.');
    end if;
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

-- The signed-in user's membership in the current organization (role, job role), for a client to
-- show who it acts as; null without an organization.
create or replace function app_public.current_member() returns app_public.organization_members
language sql stable
set search_path = pg_catalog
as $$
  select m.* from app_public.organization_members m
  where m.organization_id = app_public.current_org_id() and m.user_id = app_public.current_user_id()
$$;
revoke all on function app_public.current_member() from public;
grant execute on function app_public.current_member() to :DATABASE_VISITOR;
comment on function app_public.current_member() is 'Your membership in the current organization (role, job role); null when no organization is chosen.';
