-- Documents created whole (docs/ENTITIES.md, "Documents in one request"): a proposal or an invoice
-- with its lines in one mutation, all or nothing — instead of one request for the document and
-- one per line. SECURITY INVOKER: the caller's grants, row-level security and every trigger
-- apply exactly as to the inserts a client would send one by one (proposals.write /
-- invoices.write, status machines, totals, currencies).
-- Idempotent; re-included by later migrations.

do $$
begin
  if to_regtype('app_public.document_line') is null then
    create type app_public.document_line as (description text, quantity numeric, unit_price numeric);
  end if;
end
$$;
comment on type app_public.document_line is 'A line of a proposal or an invoice given with it: description, quantity (default 1), unit price.';

-- The lines, checked: at least one, each with a description and a price.
create or replace function app_private.check_document_lines(lines app_public.document_line[], what text) returns void
language plpgsql immutable
set search_path = pg_catalog
as $$
begin
  if coalesce(cardinality(lines), 0) = 0 then
    perform app_private.fail('EMPTY_DOCUMENT', format('Give the %s at least one line.', what));
  end if;
  if exists (select from unnest(lines) l where l is null or l.description is null or l.unit_price is null) then
    perform app_private.fail('INVALID_VALUE', 'Every line needs a description and a unit price (its quantity defaults to 1).');
  end if;
end
$$;
revoke all on function app_private.check_document_lines(app_public.document_line[], text) from public;
grant execute on function app_private.check_document_lines(app_public.document_line[], text) to :DATABASE_VISITOR;

create or replace function app_public.create_proposal_with_lines(
  client_company_id uuid, title text, lines app_public.document_line[],
  deal_id uuid default null, engagement_id uuid default null, tax_rate numeric default null,
  valid_until date default null, notes text default null, currency text default null, id uuid default null
) returns app_public.proposals
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.proposals;
begin
  perform app_private.check_document_lines(lines, 'proposal');
  insert into app_public.proposals (id, client_company_id, title, deal_id, engagement_id, tax_rate, valid_until, notes, currency)
  values (coalesce(create_proposal_with_lines.id, gen_random_uuid()), create_proposal_with_lines.client_company_id, create_proposal_with_lines.title,
    create_proposal_with_lines.deal_id, create_proposal_with_lines.engagement_id, coalesce(create_proposal_with_lines.tax_rate, 0),
    create_proposal_with_lines.valid_until, create_proposal_with_lines.notes, create_proposal_with_lines.currency)
  returning * into v;
  insert into app_public.proposal_line_items (proposal_id, position, description, quantity, unit_price)
  select v.id, l.position, l.description, coalesce(l.quantity, 1), l.unit_price
  from unnest(create_proposal_with_lines.lines) with ordinality as l(description, quantity, unit_price, position);
  select p.* into v from app_public.proposals p where p.organization_id = v.organization_id and p.id = v.id;
  return v;
end
$$;
revoke all on function app_public.create_proposal_with_lines(uuid, text, app_public.document_line[], uuid, uuid, numeric, date, text, text, uuid) from public;
grant execute on function app_public.create_proposal_with_lines(uuid, text, app_public.document_line[], uuid, uuid, numeric, date, text, text, uuid) to :DATABASE_VISITOR;
comment on function app_public.create_proposal_with_lines(uuid, text, app_public.document_line[], uuid, uuid, numeric, date, text, text, uuid) is 'Creates a draft proposal with its lines in one step, all or nothing (proposals.write): as inserting the proposal and each line would.';

create or replace function app_public.create_invoice_with_lines(
  client_company_id uuid, lines app_public.document_line[],
  engagement_id uuid default null, tax_rate numeric default null, due_on date default null,
  notes text default null, currency text default null, id uuid default null
) returns app_public.invoices
language plpgsql volatile
set search_path = pg_catalog
as $$
declare
  v app_public.invoices;
begin
  perform app_private.check_document_lines(lines, 'invoice');
  insert into app_public.invoices (id, client_company_id, engagement_id, tax_rate, due_on, notes, currency)
  values (coalesce(create_invoice_with_lines.id, gen_random_uuid()), create_invoice_with_lines.client_company_id, create_invoice_with_lines.engagement_id,
    coalesce(create_invoice_with_lines.tax_rate, 0), create_invoice_with_lines.due_on, create_invoice_with_lines.notes, create_invoice_with_lines.currency)
  returning * into v;
  insert into app_public.invoice_line_items (invoice_id, position, description, quantity, unit_price)
  select v.id, l.position, l.description, coalesce(l.quantity, 1), l.unit_price
  from unnest(create_invoice_with_lines.lines) with ordinality as l(description, quantity, unit_price, position);
  select i.* into v from app_public.invoices i where i.organization_id = v.organization_id and i.id = v.id;
  return v;
end
$$;
revoke all on function app_public.create_invoice_with_lines(uuid, app_public.document_line[], uuid, numeric, date, text, text, uuid) from public;
grant execute on function app_public.create_invoice_with_lines(uuid, app_public.document_line[], uuid, numeric, date, text, text, uuid) to :DATABASE_VISITOR;
comment on function app_public.create_invoice_with_lines(uuid, app_public.document_line[], uuid, numeric, date, text, text, uuid) is 'Creates a draft invoice with its lines in one step, all or nothing (invoices.write): as inserting the invoice and each line would.';
