-- Client-portal invitations expire: a token must be accepted within 14 days (grant again for a
-- new one). Tokens already out get 14 days from now.
alter table app_private.portal_access_secrets add column if not exists expires_at timestamptz not null default now() + interval '14 days';
comment on column app_private.portal_access_secrets.expires_at is 'The token cannot be accepted after this.';
do $$
begin
  if not exists (
    select from pg_attribute
    where attrelid = (select typrelid from pg_type where oid = 'app_public.portal_access_token'::regtype) and attname = 'expires_at'
  ) then
    alter type app_public.portal_access_token add attribute expires_at timestamptz;
  end if;
end
$$;
comment on type app_public.portal_access_token is 'A new client-portal access and its secret token (shown only once), valid until expires_at.';
--!include functions/portal.sql
