-- Exports of one person's data (GDPR art. 15 and 20), made by the organization export's machinery
-- (sql/functions/data_exports.sql: a data_exports row, the data_export job, the zip, the email,
-- the expiry). docs/EXPORT_AND_IMPORT.md says what each holds and why.
--
--   exportContact(contactId)  owners and admins: everything the organization holds about one client
--                             contact (kind 'contact'). Admins may, as for the organization export:
--                             they already read every row the zip holds; members, viewers and
--                             custom roles may not (the zip crosses every area: invoices, messages,
--                             the log). Another organization's contact answers as a random id.
--   exportUser()              every member, for themselves: their account and what the current
--                             organization holds about them as a member (kind 'user'). They read
--                             their own exports (policy select_own_user_exports).
--
-- What a contact export holds (app_private.contact_export_sources), found as the erasure finds a
-- contact's data (sql/functions/erasure.sql):
--   - the contact's row; every row that references it through a foreign key (read from the
--     catalog: a new table pointing at contacts is covered the day it exists);
--   - the contact's client-portal accounts (users named by those rows) and every row such an
--     account created (`created_by`: the messages the contact posted in the portal);
--   - every row whose personal or free-text columns (app_private.person_text_columns) hold one of
--     the contact's needles (app_private.contact_needles: every email, phone and full name the
--     contact's record ever had): a task description or a message quoting the contact;
--   - the activity log's events of all those rows, and every event whose values hold a needle.
-- What a user export holds (app_private.user_export_sources):
--   - the account: the users row (id, email, name, dates), its sessions (when made, refreshed,
--     expiring, revoked, and why; never a token or its hash), its memberships in every
--     organization (organization, its name, role, since);
--   - in the current organization: every row that names them as its person through a foreign key
--     from the catalog, on a `user_id` column (their member row, portal access) or to their member
--     row on a `member_id` column (role assignments, time entries);
--   - the events they authored here (actor_id), without the old and new values of records that are
--     not theirs (those are the organization's records, in its own export), and every event of
--     the rows above, values included.
-- Never secrets: app_private is read only through the functions below, which leave out password
-- and token hashes; tables' secret columns are never exported (app_private.export_tables()).
-- Idempotent; re-included by later migrations.

------------------------------------------------------------------------------------------------
-- Requests

create or replace function app_public.export_contact(contact_id uuid, valid_days integer default 7) returns app_public.data_exports
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  perform app_private.require_member_role('admin', 'export a contact''s data');
  -- One lookup by organization and id (soft-deleted contacts included): another organization's
  -- contact misses exactly as a random id does.
  if not exists (select from app_public.contacts c where c.organization_id = app_public.current_org_id() and c.id = export_contact.contact_id) then
    perform app_private.fail('NOT_FOUND', 'No such contact in this organization.');
  end if;
  return app_private.request_data_export('contact', export_contact.contact_id, export_contact.valid_days);
end
$$;
comment on function app_public.export_contact(uuid, integer) is
  E'Export everything the organization holds about one client contact (GDPR art. 15 and 20; owners and admins): a job writes one zip (JSON and CSV per table, and a manifest) with the contact, the records that reference or mention them, and those records'' history, and emails you when it is ready. Downloadable (`downloadUrl`) for `validDays` days (1 to 30, 7 by default).';

create or replace function app_public.export_user(valid_days integer default 7) returns app_public.data_exports
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
begin
  if app_public.current_user_id() is null then
    perform app_private.fail('UNAUTHENTICATED', 'Sign in to export your data.');
  end if;
  perform app_private.require_member_role('viewer', 'export your data');
  return app_private.request_data_export('user', app_public.current_user_id(), export_user.valid_days);
end
$$;
comment on function app_public.export_user(integer) is
  E'Export your own data (GDPR art. 15 and 20; every member): a job writes one zip with your account (profile, sessions, memberships; never a password or token) and what this organization holds about you as a member (your member row, role assignments, time entries, the changes you made), and emails you when it is ready. Downloadable (`downloadUrl`) for `validDays` days (1 to 30, 7 by default).';

------------------------------------------------------------------------------------------------
-- What they hold (called by app_private.export_sources, as its owner, in the export's organization)

-- The rows of a person's export, table by table: for each table of `predicates` (its name → SQL
-- true for the rows to export; $1, $2 and $3 in it are `a`, `b` and `c`), the ids of the rows that
-- an organization export reads (live and restorable soft-deleted ones) where it holds, and the SQL
-- selecting exactly those rows. Tables without such rows are left out, and so are users,
-- organizations and the log (each kind says which of those it holds). In export_tables() order.
create or replace function app_private.export_matching_rows(predicates jsonb, a uuid, b uuid[], c text)
returns table (table_name text, columns text[], source text, ids uuid[])
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_table record;
  v_source text;
begin
  for v_table in
    select t.* from app_private.export_tables() t
    where predicates ? t.table_name and t.table_name not in ('users', 'organizations', 'activity_events')
  loop
    v_source := app_private.export_table_source(v_table.table_name, v_table.columns, v_table.soft_delete);
    execute format('select coalesce(array_agg(x.id order by x.id), ''{}'') from (%s) x where %s', v_source, predicates ->> v_table.table_name)
      into ids using a, b, c;
    continue when cardinality(ids) = 0;
    table_name := v_table.table_name;
    columns := v_table.columns;
    source := format('select * from (%s) x where x.id = any (%L::uuid[])', v_source, ids);
    return next;
  end loop;
end
$$;

-- The non-organization columns of each foreign key from an exported table to `target`.
create or replace function app_private.export_references(target regclass)
returns table (table_name text, column_name text)
language sql stable
set search_path = pg_catalog
as $$
  select c.conrelid::regclass::text, a.attname::text
  from pg_constraint c
  cross join lateral unnest(c.conkey) as k(attnum)
  join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
  where c.contype = 'f' and c.confrelid = export_references.target and c.connamespace = 'app_public'::regnamespace
    and a.attname <> 'organization_id'
$$;

create or replace function app_private.contact_export_sources(contact_id uuid) returns table (table_name text, columns text[], source text)
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_needles text[] := app_private.contact_needles(contact_export_sources.contact_id);
  v_pattern text;
  v_accounts uuid[];
  v_tables text[] := '{}';
  v_ids uuid[] := '{}';
  v_rows record;
  v_events uuid[];
  v_users text[] := (select t.columns from app_private.export_tables() t where t.table_name = 'users');
  v_events_table record;
begin
  v_pattern := (select string_agg(app_private.literal_pattern(n.n), '|') from unnest(v_needles) as n(n));
  -- The contact's portal accounts: users named by the rows that reference the contact.
  select coalesce(array_agg(distinct p.user_id) filter (where p.user_id is not null), '{}') into v_accounts
  from app_public.client_portal_access p where p.organization_id = v_org and p.contact_id = contact_export_sources.contact_id;
  for v_rows in
    select * from app_private.export_matching_rows(
      (select jsonb_object_agg(t.table_name, p.predicate)
       from app_private.export_tables() t
       cross join lateral (select concat_ws(' or ',
         case when t.table_name = 'contacts' then 'id = $1' end,
         (select string_agg(format('%I = $1', r.column_name), ' or ') from app_private.export_references('app_public.contacts') r where r.table_name = 'app_public.' || t.table_name),
         case when 'created_by' = any (t.columns) and cardinality(v_accounts) > 0 then 'created_by = any ($2)' end,
         case when v_pattern is not null then nullif(app_private.person_text_match(t.table_name, '$3', t.columns), 'false') end) as predicate) p
       where p.predicate <> ''),
      contact_export_sources.contact_id, v_accounts, v_pattern)
  loop
    v_tables := v_tables || array_fill(v_rows.table_name, array[cardinality(v_rows.ids)]);
    v_ids := v_ids || v_rows.ids;
    return query select v_rows.table_name, v_rows.columns, v_rows.source;
  end loop;
  if cardinality(v_accounts) > 0 then
    table_name := 'users';
    columns := v_users;
    source := format('select %s from app_private.export_users() x where x.id = any (%L::uuid[])',
      (select string_agg(format('x.%I', c), ', ') from unnest(v_users) as c), v_accounts);
    return next;
  end if;
  -- The log: the events of every row above, and every event whose values hold a needle.
  select e.* into v_events_table from app_private.export_tables() e where e.table_name = 'activity_events';
  select coalesce(array_agg(e.id order by e.id), '{}') into v_events
  from app_public.activity_events e
  where e.organization_id = v_org
    and ((e.table_name, e.record_id) in (select * from unnest(v_tables, v_ids))
      or (v_pattern is not null and (e.old_values::text ~* v_pattern or e.new_values::text ~* v_pattern)));
  if cardinality(v_events) > 0 then
    table_name := 'activity_events';
    columns := v_events_table.columns;
    source := format('select * from (%s) x where x.id = any (%L::uuid[])', app_private.export_table_source('activity_events', v_events_table.columns, false), v_events);
    return next;
  end if;
end
$$;

-- The account of a running user export's subject, its sessions (no token hash) and its memberships
-- in every organization: the parts of a user export that row-level security does not show the
-- worker (the account is global; sessions live in app_private). Only for a user export running in
-- the current organization, on the worker's connection.
create or replace function app_private.export_subject(export_id uuid) returns uuid
language sql stable security definer
set search_path = pg_catalog
as $$
  select e.subject_id from app_public.data_exports e
  where e.organization_id = app_private.require_worker_in_organization() and e.id = export_subject.export_id and e.kind = 'user' and e.status = 'running'
$$;

create or replace function app_private.export_subject_user(export_id uuid) returns setof app_public.users
language sql stable security definer
set search_path = pg_catalog
as $$
  select u.* from app_public.users u where u.id = app_private.export_subject(export_subject_user.export_id)
$$;

create or replace function app_private.export_user_sessions(export_id uuid)
returns table (id uuid, organization_id uuid, created_at timestamptz, refreshed_at timestamptz, expires_at timestamptz, revoked_at timestamptz, revoked_reason text)
language sql stable security definer
set search_path = pg_catalog
as $$
  select s.id, s.organization_id, s.created_at, s.refreshed_at, s.expires_at, s.revoked_at, s.revoked_reason
  from app_private.sessions s where s.user_id = app_private.export_subject(export_user_sessions.export_id)
$$;

create or replace function app_private.export_user_memberships(export_id uuid)
returns table (id uuid, organization_id uuid, organization_name text, role app_public.member_role, created_at timestamptz)
language sql stable security definer
set search_path = pg_catalog
as $$
  select m.id, m.organization_id, o.name, m.role, m.created_at
  from app_public.organization_members m
  join app_public.organizations o on o.id = m.organization_id
  where m.user_id = app_private.export_subject(export_user_memberships.export_id)
$$;

create or replace function app_private.user_export_sources(export_id uuid, user_id uuid) returns table (table_name text, columns text[], source text)
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_members uuid[];
  v_tables text[] := '{}';
  v_ids uuid[] := '{}';
  v_rows record;
  v_users text[] := (select t.columns from app_private.export_tables() t where t.table_name = 'users');
  v_events_columns text[] := (select t.columns from app_private.export_tables() t where t.table_name = 'activity_events');
begin
  select coalesce(array_agg(m.id), '{}') into v_members from app_public.organization_members m
  where m.organization_id = v_org and m.user_id = user_export_sources.user_id;

  table_name := 'users';
  columns := v_users;
  source := format('select %s from app_private.export_subject_user(%L)', (select string_agg(format('%I', c), ', ') from unnest(v_users) as c), export_id);
  return next;
  table_name := 'sessions';
  columns := array['id', 'organization_id', 'created_at', 'refreshed_at', 'expires_at', 'revoked_at', 'revoked_reason'];
  source := format('select * from app_private.export_user_sessions(%L)', export_id);
  return next;
  table_name := 'memberships';
  columns := array['id', 'organization_id', 'organization_name', 'role', 'created_at'];
  source := format('select * from app_private.export_user_memberships(%L)', export_id);
  return next;

  -- Rows that name them as their person: a user_id key to their account, a member_id key to
  -- their member row (foreign keys read from the catalog).
  for v_rows in
    select * from app_private.export_matching_rows(
      (select jsonb_object_agg(t.table_name, p.predicate)
       from app_private.export_tables() t
       cross join lateral (select concat_ws(' or ',
         (select string_agg(format('%I = $1', r.column_name), ' or ') from app_private.export_references('app_public.users') r
          where r.table_name = 'app_public.' || t.table_name and r.column_name = 'user_id'),
         (select string_agg(format('%I = any ($2)', r.column_name), ' or ') from app_private.export_references('app_public.organization_members') r
          where r.table_name = 'app_public.' || t.table_name and r.column_name = 'member_id')) as predicate) p
       where p.predicate <> ''),
      user_export_sources.user_id, v_members, null)
  loop
    v_tables := v_tables || array_fill(v_rows.table_name, array[cardinality(v_rows.ids)]);
    v_ids := v_ids || v_rows.ids;
    return query select v_rows.table_name, v_rows.columns, v_rows.source;
  end loop;

  -- The log: every event they authored here (the values only of the rows above: the others are
  -- the organization's records), and every event of the rows above.
  table_name := 'activity_events';
  columns := v_events_columns;
  source := format(
    'select %s from app_public.activity_events x where x.organization_id = (select app_public.current_org_id()) and (x.actor_id = %L or (x.table_name, x.record_id) in (select * from unnest(%L::text[], %L::uuid[])))',
    (select string_agg(case when c in ('old_values', 'new_values')
        then format('case when (x.table_name, x.record_id) in (select * from unnest(%L::text[], %L::uuid[])) then x.%I end as %I', v_tables, v_ids, c, c)
        else format('x.%I', c) end, ', ' order by n)
     from unnest(v_events_columns) with ordinality as u(c, n)),
    user_export_sources.user_id, v_tables, v_ids);
  return next;
end
$$;

revoke all on function
  app_public.export_contact(uuid, integer),
  app_public.export_user(integer),
  app_private.export_matching_rows(jsonb, uuid, uuid[], text),
  app_private.export_references(regclass),
  app_private.contact_export_sources(uuid),
  app_private.export_subject(uuid),
  app_private.export_subject_user(uuid),
  app_private.export_user_sessions(uuid),
  app_private.export_user_memberships(uuid),
  app_private.user_export_sources(uuid, uuid)
from public;
grant execute on function app_public.export_contact(uuid, integer), app_public.export_user(integer) to :DATABASE_VISITOR;
-- Called by the SQL of app_private.export_sources, which the worker runs.
grant execute on function
  app_private.export_subject_user(uuid),
  app_private.export_user_sessions(uuid),
  app_private.export_user_memberships(uuid)
to :DATABASE_WORKER;
