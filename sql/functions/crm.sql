-- CRM rules.

-- A client company with live (active or on-hold) engagements cannot be deleted: the work and the
-- money attached to it would vanish from every read. HAS_LIVE_ENGAGEMENTS says what to do.
-- BEFORE UPDATE OF deleted_at (soft_delete_client_company sets it); SECURITY DEFINER to see
-- every engagement, including those the caller may not read.
create or replace function app_private.tg__client_company_delete_guard() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_live integer;
begin
  if old.deleted_at is null and new.deleted_at is not null then
    select count(*) into v_live
    from app_public.engagements e
    where e.organization_id = new.organization_id and e.client_company_id = new.id
      and e.deleted_at is null and e.status in ('active', 'on_hold');
    if v_live > 0 then
      perform app_private.fail('HAS_LIVE_ENGAGEMENTS', format(
        '%s has %s active or on-hold engagement(s); complete or cancel them before deleting the client.', new.name, v_live));
    end if;
  end if;
  return new;
end
$$;

drop trigger if exists tg_client_companies__delete_guard on app_public.client_companies;
create trigger tg_client_companies__delete_guard before update of deleted_at on app_public.client_companies
  for each row execute function app_private.tg__client_company_delete_guard();
