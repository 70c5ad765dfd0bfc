-- Tax codes: per-line tax on proposals and invoices, several taxes on one line where a country
-- needs it (compound or not), and the document's tax totals per code.
--
--   tax_codes             a firm's codes ("VAT20", "GST+QST", "EXEMPT"): a code and a name;
--                         archived codes stay on the documents that used them and cannot be
--                         chosen again.
--   tax_code_components   a code's taxes, applied in `position` order: a rate (up to 4 decimals:
--                         9.975%) on the line amounts of the code, or, when `compound`, on those
--                         amounts plus the taxes before it (e.g. a provincial tax on the federal
--                         one). A code without components is a 0% code (exempt, zero-rated,
--                         reverse charge).
--   <lines>.tax_code_id   the line's code (proposal_line_items, invoice_line_items). A line
--                         given none takes its client's code (client_companies.tax_code_id) or
--                         the organization's default (tax_codes.is_default), unless its document
--                         has a tax rate of its own; a line without a code is taxed at its
--                         document's `tax_rate`, as before tax codes existed.
--
-- A document's tax (app_private.document_tax_parts): per code, its lines' amounts summed
-- (taxable), each component rounded to cents on that sum (the tax of one code is computed once
-- per document, not per line, so it never drifts from the rate by a rounding cent per line); the
-- rest of the subtotal (the lines without a code) at the document's rate, likewise. Its
-- tax_amount is their sum and its total subtotal + tax_amount, both kept by the BEFORE trigger
-- tg_<documents>__amounts (for invoices before tg_invoices__balance, which reads the total:
-- triggers fire in name order), and <Document>.taxTotals lists them per code for the document.
--
-- A sent document never changes: its lines are frozen (NOT_EDITABLE, sql/functions/line_items.sql),
-- and so are the code, name and components of a code that a sent proposal or invoice uses
-- (TAX_CODE_IN_USE: create a new code and archive the old one). Changing a code that drafts use
-- recomputes them.
-- Idempotent; re-included by later migrations.

do $$
begin
  if to_regtype('app_public.tax_percentage') is null then
    create domain app_public.tax_percentage as numeric(7,4)
      constraint tax_percentage_range check (value <> 'NaN'::numeric and value between 0 and 100);
  end if;
end
$$;
comment on domain app_public.tax_percentage is 'A tax rate in percent, from 0 to 100, with up to four decimals (9.975).';
insert into app_private.domain_rules (domain_name, constraint_name, code, message) values
  ('app_public.tax_percentage', 'tax_percentage_range', 'INVALID_VALUE', 'A tax rate must be a percentage from 0 to 100 (with at most four decimals).')
on conflict (domain_name, constraint_name) do update set code = excluded.code, message = excluded.message;

create table if not exists app_public.tax_codes (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  code text not null constraint tax_codes_code_format check (code ~ '^[A-Za-z0-9][A-Za-z0-9 ._+/-]{0,31}$'),
  name text not null check (length(btrim(name)) between 1 and 200),
  is_default boolean not null default false,
  archived_at app_public.business_timestamp,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  constraint tax_codes_code_key unique (organization_id, code),
  constraint tax_codes_default_not_archived check (not (is_default and archived_at is not null))
);
create unique index if not exists tax_codes_one_default on app_public.tax_codes (organization_id) where is_default;
comment on table app_public.tax_codes is 'The firm''s tax codes: each a set of taxes (components) applied to the proposal and invoice lines that name it. Archived codes stay on the documents that used them.';
comment on column app_public.tax_codes.code is 'Short and unique in the organization, e.g. VAT20, GST+QST, EXEMPT.';
comment on column app_public.tax_codes.is_default is 'The organization''s default code (one at most): a line given no code takes it, unless its client has a code of its own or its document a tax rate.';
comment on column app_public.tax_codes.archived_at is 'Set: no longer offered; lines that have it keep it, no line may be given it again.';

create table if not exists app_public.tax_code_components (
  organization_id uuid not null references app_public.organizations,
  id uuid not null default gen_random_uuid(),
  tax_code_id uuid not null,
  position integer not null default 1 check (position between 1 and 10),
  name text not null check (length(btrim(name)) between 1 and 100),
  rate app_public.tax_percentage not null,
  compound boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (organization_id, id),
  constraint tax_code_components_position_key unique (organization_id, tax_code_id, position),
  constraint tax_code_components_first_not_compound check (position > 1 or not compound),
  foreign key (organization_id, tax_code_id) references app_public.tax_codes on delete cascade
);
comment on table app_public.tax_code_components is 'One tax of a tax code, applied in position order.';
comment on column app_public.tax_code_components.rate is 'Percent, up to 4 decimals (9.975 = 9.975%).';
comment on column app_public.tax_code_components.compound is 'Applied to the amount plus the taxes of the earlier components of the code (not allowed on the first).';

-- The lines' code (a plain uuid: no table rewrite; the foreign keys come NOT VALID and their
-- indexes concurrently, validated and built by the next migrations).
do $$
declare
  v_lines text;
begin
  foreach v_lines in array array['proposal_line_items', 'invoice_line_items'] loop
    execute format('alter table app_public.%I add column if not exists tax_code_id uuid', v_lines);
    execute format('grant insert (tax_code_id), update (tax_code_id) on app_public.%I to :DATABASE_VISITOR', v_lines);
    execute format('comment on column app_public.%I.tax_code_id is %L', v_lines, 'The tax code of the line; none: taxed at its document''s tax_rate.');
    if not exists (select from pg_constraint where conname = v_lines || '_tax_code_fkey' and conrelid = ('app_public.' || v_lines)::regclass) then
      execute format('alter table app_public.%I add constraint %I foreign key (organization_id, tax_code_id) references app_public.tax_codes (organization_id, id) not valid',
        v_lines, v_lines || '_tax_code_fkey');
    end if;
  end loop;
end
$$;

-- A client's own code (e.g. reverse charge for a client abroad): its documents' lines given no
-- code take it (before the organization's default).
alter table app_public.client_companies add column if not exists tax_code_id uuid;
grant insert (tax_code_id), update (tax_code_id) on app_public.client_companies to :DATABASE_VISITOR;
comment on column app_public.client_companies.tax_code_id is 'The client''s tax code: lines of its proposals and invoices given no code take it (unless the document has a tax rate of its own).';
do $$
begin
  if not exists (select from pg_constraint where conname = 'client_companies_tax_code_fkey' and conrelid = 'app_public.client_companies'::regclass) then
    alter table app_public.client_companies add constraint client_companies_tax_code_fkey
      foreign key (organization_id, tax_code_id) references app_public.tax_codes (organization_id, id) not valid;
  end if;
end
$$;

call app_private.make_tenant_table('app_public.tax_codes', 'invoices',
  portal_read => $p$exists (select from app_public.invoice_line_items l where l.organization_id = tax_codes.organization_id and l.tax_code_id = tax_codes.id)
    or exists (select from app_public.proposal_line_items l where l.organization_id = tax_codes.organization_id and l.tax_code_id = tax_codes.id)$p$);
call app_private.make_tenant_table('app_public.tax_code_components', 'invoices',
  portal_read => $p$exists (select from app_public.tax_codes t where t.organization_id = tax_code_components.organization_id and t.id = tax_code_components.tax_code_id)$p$);
call app_private.classify_columns('app_public.tax_codes', '{"code": "none", "name": "none"}');
call app_private.classify_columns('app_public.tax_code_components', '{"name": "none"}');
call app_private.set_audit_parent('app_public.tax_code_components', 'tax_code_id', 'app_public.tax_codes');
call app_private.declare_record_retention('app_public.tax_codes', true, 'the taxes the invoices were charged at: the books');
call app_private.declare_record_retention('app_public.tax_code_components', true, 'the taxes the invoices were charged at: the books');

------------------------------------------------------------------------------------------------
-- The computation

do $$
begin
  if to_regtype('app_public.tax_total_component') is null then
    create type app_public.tax_total_component as (name text, rate numeric, compound boolean, base numeric, amount numeric);
  end if;
  if to_regtype('app_public.tax_total') is null then
    create type app_public.tax_total as (tax_code_id uuid, code text, name text, taxable_amount numeric, tax_amount numeric,
      components app_public.tax_total_component[]);
  end if;
end
$$;
comment on type app_public.tax_total_component is 'One tax of a code on a document: its rate, whether compound, the amount it was applied to (base) and the tax.';
comment on type app_public.tax_total is 'A document''s tax for one tax code (none: the lines without a code, at the document''s rate): the lines'' amounts (taxable), the tax, and each component.';

-- Each tax of a document: per code of its lines a row per component (a code without components:
-- one row at 0%), and the rest of the subtotal (the lines without a code, or a subtotal written
-- without lines) at `tax_rate`. `lines`: the lines' table; `document_column`: its column naming
-- the document. SECURITY INVOKER: the caller's row-level security applies (the triggers run it
-- as the owner; <Document>.taxTotals as the visitor, who reads what they may).
create or replace function app_private.document_tax_parts(lines regclass, document_column text, organization_id uuid, document_id uuid, subtotal numeric, tax_rate numeric)
returns table (tax_code_id uuid, taxable numeric, step int, component text, rate numeric, compound boolean, base numeric, amount numeric)
language plpgsql stable
set search_path = pg_catalog
as $$
declare
  v_code record;
  v_component record;
  v_earlier numeric;
  v_coded numeric := 0;
begin
  if lines not in ('app_public.invoice_line_items'::regclass, 'app_public.proposal_line_items'::regclass) then
    raise exception 'document_tax_parts: % holds no document lines', lines;
  end if;
  for v_code in execute format(
    'select l.tax_code_id, sum(l.amount)::numeric as taxable from %s l
     where l.organization_id = $1 and l.%I = $2 and l.tax_code_id is not null group by l.tax_code_id', lines, document_column)
    using document_tax_parts.organization_id, document_tax_parts.document_id
  loop
    v_coded := v_coded + v_code.taxable;
    tax_code_id := v_code.tax_code_id;
    taxable := v_code.taxable;
    v_earlier := 0;
    step := null; component := null; rate := 0; compound := false; base := v_code.taxable; amount := 0;
    for v_component in
      select c.position, c.name, c.rate, c.compound from app_public.tax_code_components c
      where c.organization_id = document_tax_parts.organization_id and c.tax_code_id = v_code.tax_code_id
      order by c.position
    loop
      step := v_component.position; component := v_component.name; rate := v_component.rate; compound := v_component.compound;
      base := v_code.taxable + case when v_component.compound then v_earlier else 0 end;
      amount := round(base * v_component.rate / 100, 2);
      v_earlier := v_earlier + amount;
      return next;
    end loop;
    if step is null then
      return next; -- a code without components: its lines, at 0%
    end if;
  end loop;
  if document_tax_parts.subtotal <> v_coded or v_coded = 0 then
    tax_code_id := null; taxable := document_tax_parts.subtotal - v_coded;
    step := 1; component := null; rate := document_tax_parts.tax_rate; compound := false; base := taxable;
    amount := round(taxable * document_tax_parts.tax_rate / 100, 2);
    return next;
  end if;
end
$$;
revoke all on function app_private.document_tax_parts(regclass, text, uuid, uuid, numeric, numeric) from public;
grant execute on function app_private.document_tax_parts(regclass, text, uuid, uuid, numeric, numeric) to :DATABASE_VISITOR;
comment on function app_private.document_tax_parts(regclass, text, uuid, uuid, numeric, numeric) is 'A proposal''s or an invoice''s taxes: per tax code of its lines a row per component, rounded to cents on the code''s summed amounts; the rest of the subtotal at the document''s rate.';

-- Tax and total of a document, before any other BEFORE trigger reads them. Lines change the
-- subtotal (sql/functions/line_items.sql), which brings every line change here. Once sent, a
-- document keeps the tax and total it was sent with, whatever is updated on it later (a payment,
-- a status): they are not computed again.
-- TG_ARGV[0]: the lines' table; TG_ARGV[1]: their column naming the document.
create or replace function app_private.tg__document_amounts() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if tg_op = 'UPDATE' and old.status::text <> 'draft' then
    new.tax_amount := old.tax_amount;
    new.total := old.total;
    return new;
  end if;
  if tg_op = 'INSERT' then
    new.tax_amount := round(new.subtotal * new.tax_rate / 100, 2); -- no lines yet
  else
    select coalesce(sum(p.amount), 0) into new.tax_amount
    from app_private.document_tax_parts(tg_argv[0]::regclass, tg_argv[1], new.organization_id, new.id, new.subtotal, new.tax_rate) p;
  end if;
  new.total := new.subtotal + new.tax_amount;
  return new;
end
$$;

-- Each document: its trigger, its tax and total the trigger's (from generated columns, which a
-- per-line tax cannot be: dropping an expression keeps the stored values and rewrites nothing),
-- and a check that they are there and add up (NOT VALID here, validated by the next migration).
do $$
declare
  v_doc record;
  v_column text;
begin
  for v_doc in select * from (values ('invoices', 'invoice_line_items', 'invoice_id'), ('proposals', 'proposal_line_items', 'proposal_id')) as d(tbl, lines, fk) loop
    execute format('drop trigger if exists %I on app_public.%I', 'tg_' || v_doc.tbl || '__amounts', v_doc.tbl);
    execute format('create trigger %I before insert or update on app_public.%I for each row execute function app_private.tg__document_amounts(%L, %L)',
      'tg_' || v_doc.tbl || '__amounts', v_doc.tbl, 'app_public.' || v_doc.lines, v_doc.fk);
    foreach v_column in array array['tax_amount', 'total'] loop
      if (select a.attgenerated from pg_attribute a where a.attrelid = ('app_public.' || v_doc.tbl)::regclass and a.attname = v_column) = 's' then
        execute format('alter table app_public.%I alter column %I drop expression', v_doc.tbl, v_column);
      end if;
    end loop;
    execute format('revoke insert (tax_amount, total), update (tax_amount, total) on app_public.%I from :DATABASE_VISITOR', v_doc.tbl);
    if not exists (select from pg_constraint where conname = v_doc.tbl || '_amounts_present' and conrelid = ('app_public.' || v_doc.tbl)::regclass) then
      execute format('alter table app_public.%I add constraint %I check (tax_amount is not null and total is not null and total = subtotal + tax_amount) not valid',
        v_doc.tbl, v_doc.tbl || '_amounts_present');
    end if;
    execute format('comment on column app_public.%I.tax_amount is %L', v_doc.tbl, 'Tax: per tax code of its lines, and on the lines without one at tax_rate (taxTotals lists them).');
    execute format('comment on column app_public.%I.total is %L', v_doc.tbl, 'subtotal + tax_amount.');
    execute format('comment on column app_public.%I.tax_rate is %L', v_doc.tbl, 'Percent applied to the lines without a tax code.');
  end loop;
end
$$;
-- Payments stay within the invoice's total (the check this replaces repeated the generated
-- expression).
alter table app_public.invoices drop constraint if exists invoices_check1;
do $$
begin
  if not exists (select from pg_constraint where conname = 'invoices_paid_within_total' and conrelid = 'app_public.invoices'::regclass) then
    alter table app_public.invoices add constraint invoices_paid_within_total check (amount_paid <= total) not valid;
  end if;
end
$$;

-- <Document>.taxTotals: the tax per code, for the document (the lines without a code first).
create or replace function app_private.document_tax_totals(lines regclass, document_column text, organization_id uuid, document_id uuid, subtotal numeric, tax_rate numeric)
returns setof app_public.tax_total
language sql stable
set search_path = pg_catalog
as $$
  select p.tax_code_id, t.code, t.name, min(p.taxable), sum(p.amount),
    coalesce(array_agg(row(p.component, p.rate, p.compound, p.base, p.amount)::app_public.tax_total_component order by p.step)
      filter (where p.tax_code_id is null or p.component is not null), '{}')
  from app_private.document_tax_parts(lines, document_column, organization_id, document_id, subtotal, tax_rate) p
  left join app_public.tax_codes t on t.organization_id = document_tax_totals.organization_id and t.id = p.tax_code_id
  group by p.tax_code_id, t.code, t.name
  order by p.tax_code_id is not null, t.code
$$;
revoke all on function app_private.document_tax_totals(regclass, text, uuid, uuid, numeric, numeric) from public;
grant execute on function app_private.document_tax_totals(regclass, text, uuid, uuid, numeric, numeric) to :DATABASE_VISITOR;

create or replace function app_public.invoices_tax_totals(i app_public.invoices) returns setof app_public.tax_total
language sql stable
set search_path = pg_catalog
as $$
  select * from app_private.document_tax_totals('app_public.invoice_line_items', 'invoice_id', i.organization_id, i.id, i.subtotal, i.tax_rate)
$$;
grant execute on function app_public.invoices_tax_totals(app_public.invoices) to :DATABASE_VISITOR;
comment on function app_public.invoices_tax_totals(app_public.invoices) is 'The invoice''s tax per tax code (none: its lines without a code, at the invoice''s tax rate), each with its components; they add up to taxAmount.';

create or replace function app_public.proposals_tax_totals(p app_public.proposals) returns setof app_public.tax_total
language sql stable
set search_path = pg_catalog
as $$
  select * from app_private.document_tax_totals('app_public.proposal_line_items', 'proposal_id', p.organization_id, p.id, p.subtotal, p.tax_rate)
$$;
grant execute on function app_public.proposals_tax_totals(app_public.proposals) to :DATABASE_VISITOR;
comment on function app_public.proposals_tax_totals(app_public.proposals) is 'The proposal''s tax per tax code (none: its lines without a code, at the proposal''s tax rate), each with its components; they add up to taxAmount.';

-- CreditNote.taxTotals: a credit note (or write-off) per tax code of its invoice. Its net and its
-- tax are spread over the invoice's codes in proportion to what each code charged (largest
-- remainder: the cents add up to the credit note's subtotal and tax exactly); components are not
-- split (the code's share is what a credit note shows per rate).
create or replace function app_public.credit_notes_tax_totals(n app_public.credit_notes) returns setof app_public.tax_total
language sql stable
set search_path = pg_catalog
as $$
  with invoice as (
    select i.* from app_public.invoices i where i.organization_id = n.organization_id and i.id = n.invoice_id
  ),
  parts as (
    select t.*, row_number() over (order by t.tax_code_id is not null, t.code) as k,
      case when i.subtotal > 0 then n.subtotal * t.taxable_amount / i.subtotal else 0 end as exact_net,
      case when i.tax_amount > 0 then n.tax_amount * t.tax_amount / i.tax_amount else 0 end as exact_tax
    from invoice i, app_private.document_tax_totals('app_public.invoice_line_items', 'invoice_id', i.organization_id, i.id, i.subtotal, i.tax_rate) t
  ),
  floored as (
    select p.*, trunc(p.exact_net, 2) as net, trunc(p.exact_tax, 2) as tax,
      round((n.subtotal - sum(trunc(p.exact_net, 2)) over ()) * 100)::int as net_cents_left,
      round((n.tax_amount - sum(trunc(p.exact_tax, 2)) over ()) * 100)::int as tax_cents_left,
      row_number() over (order by p.exact_net - trunc(p.exact_net, 2) desc, p.k) as net_rank,
      row_number() over (order by p.exact_tax - trunc(p.exact_tax, 2) desc, p.k) as tax_rank
    from parts p
  )
  select f.tax_code_id, f.code, f.name,
    f.net + case when f.net_rank <= f.net_cents_left then 0.01 else 0 end,
    f.tax + case when f.tax_rank <= f.tax_cents_left then 0.01 else 0 end,
    '{}'::app_public.tax_total_component[]
  from floored f
  order by f.k
$$;
grant execute on function app_public.credit_notes_tax_totals(app_public.credit_notes) to :DATABASE_VISITOR;
comment on function app_public.credit_notes_tax_totals(app_public.credit_notes) is 'The credit note''s net and tax per tax code of its invoice, in proportion to what each code charged; they add up to its subtotal and taxAmount.';

------------------------------------------------------------------------------------------------
-- The rules

-- A line may not be given an archived code.
create or replace function app_private.tg__line_tax_code() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if new.tax_code_id is not null and (tg_op = 'INSERT' or new.tax_code_id is distinct from old.tax_code_id)
     and exists (select from app_public.tax_codes t where t.organization_id = new.organization_id and t.id = new.tax_code_id and t.archived_at is not null) then
    perform app_private.fail('INVALID_VALUE', 'This tax code is archived: choose another.');
  end if;
  return new;
end
$$;
drop trigger if exists tg_client_companies__tax_code on app_public.client_companies;
create trigger tg_client_companies__tax_code before insert or update of tax_code_id on app_public.client_companies
  for each row execute function app_private.tg__line_tax_code();
drop trigger if exists tg_invoice_line_items__tax_code on app_public.invoice_line_items;
create trigger tg_invoice_line_items__tax_code before insert or update of tax_code_id on app_public.invoice_line_items
  for each row execute function app_private.tg__line_tax_code();
drop trigger if exists tg_proposal_line_items__tax_code on app_public.proposal_line_items;
create trigger tg_proposal_line_items__tax_code before insert or update of tax_code_id on app_public.proposal_line_items
  for each row execute function app_private.tg__line_tax_code();

-- A line given no code takes its client's code, else the organization's default (neither
-- archived), when its document has no tax rate of its own (a document with one keeps taxing its
-- uncoded lines at that rate, as before tax codes). TG_ARGV[0]: the documents' table;
-- TG_ARGV[1]: the line's column naming its document. Named to run after tg_<lines>__tax_code
-- and tg_<lines>__require_organization (BEFORE triggers fire in name order).
create or replace function app_private.tg__line_tax_code_default() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_rate numeric;
  v_client uuid;
begin
  if new.tax_code_id is not null then
    return new;
  end if;
  execute format('select d.tax_rate, d.client_company_id from %s d where d.organization_id = $1 and d.id = $2', tg_argv[0]::regclass)
    into v_rate, v_client using new.organization_id, (to_jsonb(new) ->> tg_argv[1])::uuid;
  if v_rate is distinct from 0 then
    return new; -- a rate of its own (or no such document: its foreign key says so)
  end if;
  new.tax_code_id := coalesce(
    (select t.id from app_public.client_companies c
     join app_public.tax_codes t on t.organization_id = c.organization_id and t.id = c.tax_code_id
     where c.organization_id = new.organization_id and c.id = v_client and t.archived_at is null),
    (select t.id from app_public.tax_codes t where t.organization_id = new.organization_id and t.is_default and t.archived_at is null));
  return new;
end
$$;
drop trigger if exists tg_invoice_line_items__tax_code_default on app_public.invoice_line_items;
create trigger tg_invoice_line_items__tax_code_default before insert on app_public.invoice_line_items
  for each row execute function app_private.tg__line_tax_code_default('app_public.invoices', 'invoice_id');
drop trigger if exists tg_proposal_line_items__tax_code_default on app_public.proposal_line_items;
create trigger tg_proposal_line_items__tax_code_default before insert on app_public.proposal_line_items
  for each row execute function app_private.tg__line_tax_code_default('app_public.proposals', 'proposal_id');

-- A code a sent proposal or invoice uses keeps its code, name and components (TAX_CODE_IN_USE);
-- drafts that use a code that changes are recomputed (their subtotal written again brings them
-- through tg_<documents>__amounts).
create or replace function app_private.tax_code_changed(organization_id uuid, tax_code_id uuid) returns void
language plpgsql volatile security definer
set search_path = pg_catalog
as $$
declare
  v_document text;
begin
  if app_private.erasing(tax_code_changed.organization_id) then
    return; -- the purge of a deleted organization
  end if;
  select format('Invoice %s', i.number) into v_document
  from app_public.invoice_line_items l
  join app_public.invoices i on i.organization_id = l.organization_id and i.id = l.invoice_id
  where l.organization_id = tax_code_changed.organization_id and l.tax_code_id = tax_code_changed.tax_code_id and i.status <> 'draft'
  limit 1;
  if v_document is null then
    select format('The proposal "%s"', p.title) into v_document
    from app_public.proposal_line_items l
    join app_public.proposals p on p.organization_id = l.organization_id and p.id = l.proposal_id
    where l.organization_id = tax_code_changed.organization_id and l.tax_code_id = tax_code_changed.tax_code_id and p.status <> 'draft'
    limit 1;
  end if;
  if v_document is not null then
    perform app_private.fail('TAX_CODE_IN_USE', format('%s was sent with this tax code, so its code, name and taxes stay as they are: create a new code (and archive this one).', v_document));
  end if;
  update app_public.invoices i set subtotal = i.subtotal
  where i.organization_id = tax_code_changed.organization_id and i.status = 'draft'
    and exists (select from app_public.invoice_line_items l where l.organization_id = i.organization_id and l.invoice_id = i.id and l.tax_code_id = tax_code_changed.tax_code_id);
  update app_public.proposals p set subtotal = p.subtotal
  where p.organization_id = tax_code_changed.organization_id and p.status = 'draft'
    and exists (select from app_public.proposal_line_items l where l.organization_id = p.organization_id and l.proposal_id = p.id and l.tax_code_id = tax_code_changed.tax_code_id);
end
$$;
revoke all on function app_private.tax_code_changed(uuid, uuid) from public;

create or replace function app_private.tg_tax_codes__changed() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
begin
  if tg_table_name = 'tax_codes' then
    if tg_op = 'UPDATE' and (new.code, new.name) is not distinct from (old.code, old.name) then
      return null; -- archived or restored only
    end if;
    perform app_private.tax_code_changed(coalesce(new.organization_id, old.organization_id), coalesce(new.id, old.id));
  else
    if tg_op = 'UPDATE' and (new.position, new.name, new.rate, new.compound, new.tax_code_id) is not distinct from (old.position, old.name, old.rate, old.compound, old.tax_code_id) then
      return null;
    end if;
    perform app_private.tax_code_changed(coalesce(new.organization_id, old.organization_id), coalesce(new.tax_code_id, old.tax_code_id));
    if tg_op = 'UPDATE' and new.tax_code_id is distinct from old.tax_code_id then
      perform app_private.tax_code_changed(old.organization_id, old.tax_code_id);
    end if;
  end if;
  return null;
end
$$;
drop trigger if exists tg_tax_codes__changed on app_public.tax_codes;
create trigger tg_tax_codes__changed after update on app_public.tax_codes
  for each row execute function app_private.tg_tax_codes__changed();
drop trigger if exists tg_tax_code_components__changed on app_public.tax_code_components;
create trigger tg_tax_code_components__changed after insert or update or delete on app_public.tax_code_components
  for each row execute function app_private.tg_tax_codes__changed();
