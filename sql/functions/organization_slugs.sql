-- Organization slugs that reveal no other tenant. A slug is unique across all organizations (an
-- address such as /o/<slug> must name one firm), so a slug that people choose would answer "is
-- this name taken?" for every firm in the database. Instead every slug is made by the server:
-- a label (from the slug asked for, or from the name) and a random suffix,
--
--   "Northwind Traders" → northwind-traders-k7m2qx
--
-- unique by construction, whatever anybody else chose: creating or renaming an organization
-- with another firm's slug answers exactly as with a free one (a new suffix), and the answer says
-- nothing about other tenants. Organizations are addressed by id everywhere in the API; the slug
-- is for people (URLs, the UI). Changing the slug gives it a new suffix; changing only the name
-- keeps it. Idempotent; re-included by later migrations.

-- The label part: lower case, runs of anything but a-z and 0-9 as one '-', at most 56
-- characters (the suffix takes 7 of the 63 the slug check allows); 'org' when nothing is left.
create or replace function app_private.slug_label(value text) returns text
language sql immutable parallel safe
set search_path = pg_catalog
as $$
  select coalesce(nullif(trim(both '-' from left(trim(both '-' from regexp_replace(lower(coalesce(value, '')), '[^a-z0-9]+', '-', 'g')), 56)), ''), 'org')
$$;

-- Six random characters of 32 (no 0/o, 1/l): 30 bits.
create or replace function app_private.slug_suffix() returns text
language sql volatile
set search_path = pg_catalog
as $$
  select string_agg(substr('abcdefghijkmnpqrstuvwxyz23456789', 1 + (get_byte(b.bytes, i) % 32), 1), '' order by i)
  from (select public.gen_random_bytes(6) as bytes) b, generate_series(0, 5) as i
$$;

-- BEFORE INSERT, and UPDATE of slug: the slug is the label of what was given, and a suffix that
-- no organization has. A suffix drawn twice is drawn again (the odds are about one in a billion
-- per organization; a collision reveals nothing, since nobody chose it).
create or replace function app_private.tg_organizations__slug() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_label text;
begin
  if tg_op = 'UPDATE' and new.slug is not distinct from old.slug then
    return new;
  end if;
  v_label := app_private.slug_label(coalesce(new.slug, new.name));
  loop
    new.slug := v_label || '-' || app_private.slug_suffix();
    exit when not exists (select from app_public.organizations o where o.slug = new.slug and o.id <> new.id);
  end loop;
  return new;
end
$$;
drop trigger if exists tg_organizations__slug on app_public.organizations;
create trigger tg_organizations__slug before insert or update of slug on app_public.organizations
  for each row execute function app_private.tg_organizations__slug();

comment on column app_public.organizations.slug is 'A readable address for the organization, made by the server: a label from the slug you give (or the name) and a random suffix, e.g. northwind-traders-k7m2qx. Setting it again gives a new suffix.';
