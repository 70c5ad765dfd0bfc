-- Personal data, declared: which columns hold what kind of data, and how the activity log treats
-- each one. Every text-like column (text, email addresses, arrays of them, json) of an audited
-- table and of app_public.users is classified here; the catalog check
-- sql/checks/personal_data_classified.sql fails the build for a column that is not, so a new
-- column is classified the day it is added, by a call next to the table's make_tenant_table.
--
-- category (what the column holds):
--   person_name    a person's name (contacts, users, a signer, a vendor who may be a freelancer)
--   email, phone, address
--                  a way to reach a person
--   identifier     an official number that identifies a person or business (tax ids)
--   person_detail  other facts about a person (job title)
--   free_text      text people type, which may say anything about anyone: notes, bodies,
--                  descriptions, and the names and titles they give things (a client company
--                  named after its owner, a project "Website for Jane Doe")
--   copy           a copy of other records (webhook delivery payloads)
--   secret         credentials or URLs that work as credentials; never in the log in clear
--   none           not personal: values the system sets or chooses from a list (codes,
--                  states, keys, slugs, currencies)
-- in_log (what app_private.tg__audit copies into app_public.activity_events):
--   keep           the value, so the log can show who changed what from what to what; erasure
--                  (sql/functions/erasure.sql) redacts it there when the person is erased
--   mask           the marker "[masked]" in place of a non-null value: the log shows that the
--                  column was set, changed or cleared, never the value
--   omit           nothing: the column is left out of the event entirely
-- Idempotent; re-included by later migrations.

create table if not exists app_private.data_columns (
  schema_name text not null default 'app_public',
  table_name text not null,
  column_name text not null,
  category text not null check (category in ('person_name', 'email', 'phone', 'address', 'identifier', 'person_detail', 'free_text', 'copy', 'secret', 'none')),
  in_log text not null check (in_log in ('keep', 'mask', 'omit')),
  primary key (schema_name, table_name, column_name),
  constraint data_columns_secrets_not_kept check (category <> 'secret' or in_log <> 'keep')
);
alter table app_private.data_columns enable row level security;
alter table app_private.data_columns force row level security;
comment on table app_private.data_columns is 'What each text-like column of an audited table (and of users) holds (category) and how the activity log treats it (in_log: keep, mask, omit). Filled by app_private.classify_columns; checked by sql/checks/personal_data_classified.sql.';

-- The parent record an event names, so a timeline of an invoice shows its line items and
-- payments: rows of `table_name` belong to the row of `parent_table` whose id is in
-- `parent_column`.
create table if not exists app_private.audit_parents (
  schema_name text not null default 'app_public',
  table_name text not null,
  parent_column text not null,
  parent_table text not null,
  primary key (schema_name, table_name)
);
alter table app_private.audit_parents enable row level security;
alter table app_private.audit_parents force row level security;
comment on table app_private.audit_parents is 'For events of table_name: the column naming the parent record and the parent''s table (line item → invoice, payment → invoice, task → project). Filled by app_private.set_audit_parent.';

-- The arguments of a trigger, as text (pg_trigger.tgargs holds `nargs` zero-terminated strings).
create or replace function app_private.trigger_arguments(args bytea, nargs integer) returns text[]
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
declare
  v_arguments text[] := '{}';
  v_end integer;
begin
  for i in 1..nargs loop
    v_end := position('\x00'::bytea in args);
    v_arguments := v_arguments || convert_from(substring(args from 1 for v_end - 1), getdatabaseencoding());
    args := substring(args from v_end + 1);
  end loop;
  return v_arguments;
end
$$;
revoke all on function app_private.trigger_arguments(bytea, integer) from public;

-- What app_private.tg__audit needs to know of `tbl`, as its trigger arguments (their layout is
-- described in sql/functions/triggers.sql): the organization column, the secret columns, the
-- columns left out of the log (secrets and `omit`), the `mask` columns, and the parent column and
-- table ('' when none). app_private.attach_audit writes them; the catalog check
-- sql/checks/audit_triggers_carry_classification.sql finds triggers whose arguments are not these.
create or replace function app_private.audit_arguments(tbl regclass, org_column text, secret_columns text[]) returns text[]
language sql stable
set search_path = pg_catalog
as $$
  select array[
    org_column,
    secret_columns::text,
    array(select distinct s.col from unnest(secret_columns || array_agg(d.column_name) filter (where d.in_log = 'omit')) as s(col) order by 1)::text,
    coalesce(array_agg(d.column_name order by d.column_name) filter (where d.in_log = 'mask'), '{}')::text,
    coalesce(min(p.parent_column), ''),
    coalesce(min(p.parent_table), '')
  ]
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  left join app_private.data_columns d on d.schema_name = n.nspname and d.table_name = c.relname and d.in_log <> 'keep'
  left join app_private.audit_parents p on p.schema_name = n.nspname and p.table_name = c.relname
  where c.oid = tbl
$$;

-- Writes the audit triggers of `tbl` again if their arguments no longer say its classification
-- and parent (app_private.attach_audit leaves them alone otherwise), keeping their organization and
-- secret columns. A table without audit triggers is left alone. Called by classify_columns and
-- set_audit_parent.
create or replace procedure app_private.refresh_audit(tbl regclass)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_arguments text[];
begin
  select app_private.trigger_arguments(t.tgargs, t.tgnargs) into v_arguments
  from pg_trigger t
  where t.tgrelid = tbl and t.tgfoid = 'app_private.tg__audit'::regproc
    and t.tgname = format('tg_%s__audit_insert', (select relname from pg_class where oid = tbl));
  if v_arguments is null then
    return;
  end if;
  -- Triggers attached before their arguments carried the classification (migrations up to
  -- 000025) list the secret columns themselves after the organization column.
  call app_private.attach_audit(tbl, v_arguments[1],
    case when cardinality(v_arguments) = 6 and left(v_arguments[2], 1) = '{' then v_arguments[2]::text[] else v_arguments[2:] end);
end
$$;

-- Classifies columns of `tbl`: `columns` maps each column to its category, or to
-- [category, in_log] to choose the treatment. Without one: secrets are omitted, copies omitted,
-- identifiers masked, everything else kept. Columns must exist; a column classified again takes
-- the new class.
create or replace procedure app_private.classify_columns(tbl regclass, columns jsonb)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_schema text := (select nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = tbl);
  v_table text := (select relname from pg_class where oid = tbl);
  v_column text;
  v_class jsonb;
  v_category text;
begin
  for v_column, v_class in select key, value from jsonb_each(columns) loop
    if not exists (select from pg_attribute where attrelid = tbl and attname = v_column and attnum > 0 and not attisdropped) then
      raise exception 'classify_columns: % has no column %', tbl, v_column;
    end if;
    v_category := case jsonb_typeof(v_class) when 'array' then v_class ->> 0 else v_class #>> '{}' end;
    insert into app_private.data_columns (schema_name, table_name, column_name, category, in_log)
    values (v_schema, v_table, v_column, v_category, coalesce(
      case jsonb_typeof(v_class) when 'array' then v_class ->> 1 end,
      case when v_category in ('secret', 'copy') then 'omit' when v_category = 'identifier' then 'mask' else 'keep' end))
    on conflict (schema_name, table_name, column_name) do update set category = excluded.category, in_log = excluded.in_log;
  end loop;
  call app_private.refresh_audit(tbl);
end
$$;

create or replace procedure app_private.set_audit_parent(tbl regclass, parent_column text, parent_table regclass)
language plpgsql
set search_path = pg_catalog
as $$
begin
  if not exists (select from pg_attribute where attrelid = tbl and attname = parent_column and not attisdropped) then
    raise exception 'set_audit_parent: % has no column %', tbl, parent_column;
  end if;
  insert into app_private.audit_parents (schema_name, table_name, parent_column, parent_table)
  select n.nspname, c.relname, parent_column, (select relname from pg_class where oid = parent_table)
  from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = tbl
  on conflict (schema_name, table_name) do update set parent_column = excluded.parent_column, parent_table = excluded.parent_table;
  call app_private.refresh_audit(tbl);
end
$$;

-- `j` with the non-null values of `mask` columns replaced by "[masked]" (any number of columns).
create or replace function app_private.mask_values(j jsonb, mask text[]) returns jsonb
language plpgsql immutable parallel safe
set search_path = pg_catalog
as $$
declare
  v_column text;
begin
  foreach v_column in array mask loop
    if j ->> v_column is not null then
      j := jsonb_set(j, array[v_column], '"[masked]"');
    end if;
  end loop;
  return j;
end
$$;

-- What the log keeps of a row: `omit` columns left out, `mask` columns' non-null values replaced
-- by "[masked]". Tables mask one or two columns at most today: those cases are plain expressions
-- of immutable functions, with no sub-query and no SET clause, so the planner inlines the function
-- into the audit trigger's statement (a 1,000-row update runs it 2,000 times); more go through
-- mask_values. (jsonb_build_object is only stable: it would stop the inlining.)
create or replace function app_private.log_values(j jsonb, omit text[], mask text[]) returns jsonb
language sql immutable parallel safe
as $$
  select case
    when j is null then null
    when cardinality(mask) = 0 then j - omit
    when cardinality(mask) = 1 then
      case when j ->> mask[1] is null then j - omit else jsonb_set(j - omit, mask[1:1], '"[masked]"') end
    when cardinality(mask) = 2 then
      case when j ->> mask[1] is null
        then case when j ->> mask[2] is null then j - omit else jsonb_set(j - omit, mask[2:2], '"[masked]"') end
        else jsonb_set(case when j ->> mask[2] is null then j - omit else jsonb_set(j - omit, mask[2:2], '"[masked]"') end, mask[1:1], '"[masked]"')
      end
    else app_private.mask_values(j - omit, mask)
  end
$$;

------------------------------------------------------------------------------------------------
-- The classification of today's tables

call app_private.classify_columns('app_public.organizations', '{"name": "free_text", "slug": "none", "currency": "none", "file_content_types": "none"}');
call app_private.classify_columns('app_public.users', '{"email": "email", "name": "person_name"}');
call app_private.classify_columns('app_public.invitations', '{"email": "email"}');
call app_private.classify_columns('app_public.client_companies', '{"name": "free_text", "website": "free_text", "notes": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.contacts', '{"first_name": "person_name", "last_name": "person_name", "email": "email", "phone": "phone", "job_title": "person_detail"}');
call app_private.classify_columns('app_public.roles', '{"name": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.role_permissions', '{"permission_key": "none"}');
call app_private.classify_columns('app_public.deals', '{"title": "free_text", "lost_reason": "free_text"}');
call app_private.classify_columns('app_public.proposals', '{"title": "free_text", "notes": ["free_text", "mask"], "decided_by_name": "person_name"}');
call app_private.classify_columns('app_public.proposal_line_items', '{"description": "free_text"}');
call app_private.classify_columns('app_public.contracts', '{"title": "free_text", "terms": "free_text", "signer_name": "person_name"}');
call app_private.classify_columns('app_public.engagements', '{"name": "free_text"}');
call app_private.classify_columns('app_public.project_templates', '{"name": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.project_template_milestones', '{"name": "free_text"}');
call app_private.classify_columns('app_public.project_template_tasks', '{"title": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.projects', '{"name": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.milestones', '{"name": "free_text"}');
call app_private.classify_columns('app_public.tasks', '{"title": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.time_entries', '{"description": "free_text"}');
call app_private.classify_columns('app_public.threads', '{"subject": "free_text"}');
call app_private.classify_columns('app_public.messages', '{"body": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.invoice_schedules', '{"description": "free_text"}');
call app_private.classify_columns('app_public.invoices', '{"notes": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.invoice_line_items', '{"description": "free_text"}');
call app_private.classify_columns('app_public.payments', '{"reference": "free_text"}');
call app_private.classify_columns('app_public.vendors', '{"name": "person_name", "email": "email", "phone": "phone", "tax_id": "identifier", "notes": ["free_text", "mask"]}');
call app_private.classify_columns('app_public.bills', '{"reference": "free_text", "description": "free_text"}');
call app_private.classify_columns('app_public.file_objects', '{"name": "free_text", "content_type": "none", "status": "none", "scan_status": "none", "storage_key": "none"}');
call app_private.classify_columns('app_public.webhook_endpoints', '{"url": ["secret", "mask"], "description": "free_text", "event_types": "none", "disabled_reason": "none"}');
call app_private.classify_columns('app_public.webhook_deliveries', '{"event_type": "none", "payload": "copy", "status": "none", "last_error": ["free_text", "omit"], "source_table": "none"}');

call app_private.set_audit_parent('app_public.contacts', 'client_company_id', 'app_public.client_companies');
call app_private.set_audit_parent('app_public.role_permissions', 'role_id', 'app_public.roles');
call app_private.set_audit_parent('app_public.proposal_line_items', 'proposal_id', 'app_public.proposals');
call app_private.set_audit_parent('app_public.project_template_milestones', 'template_id', 'app_public.project_templates');
call app_private.set_audit_parent('app_public.project_template_tasks', 'template_id', 'app_public.project_templates');
call app_private.set_audit_parent('app_public.milestones', 'project_id', 'app_public.projects');
call app_private.set_audit_parent('app_public.tasks', 'project_id', 'app_public.projects');
call app_private.set_audit_parent('app_public.time_entries', 'engagement_id', 'app_public.engagements');
call app_private.set_audit_parent('app_public.projects', 'engagement_id', 'app_public.engagements');
call app_private.set_audit_parent('app_public.messages', 'thread_id', 'app_public.threads');
call app_private.set_audit_parent('app_public.invoice_line_items', 'invoice_id', 'app_public.invoices');
call app_private.set_audit_parent('app_public.payments', 'invoice_id', 'app_public.invoices');
call app_private.set_audit_parent('app_public.bills', 'vendor_id', 'app_public.vendors');
call app_private.set_audit_parent('app_public.webhook_deliveries', 'endpoint_id', 'app_public.webhook_endpoints');

-- Every audited table's triggers carry its classification and parent: written again where they do
-- not (triggers attached before their arguments carried them, tables classified in other files).
do $$
declare
  v_table regclass;
begin
  for v_table in select distinct t.tgrelid::regclass from pg_trigger t where t.tgfoid = 'app_private.tg__audit'::regproc loop
    call app_private.refresh_audit(v_table);
  end loop;
end
$$;
