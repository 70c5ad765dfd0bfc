-- Line items (proposal_line_items, invoice_line_items) and the totals of their documents.
--
-- A line's amount is a generated column (quantity × unit price, rounded to cents). The
-- document's subtotal is kept by this trigger: after every insert, update or delete of a line
-- it is recomputed from the lines, so it can never drift and is never typed in (the visitor
-- has no privilege on it). Tax, total and balance are generated columns of the document.
-- Lines may only change while their document is a draft (NOT_EDITABLE otherwise).
-- Lock order (sql/functions/lock_order.sql): a line inserted or moved has already locked its
-- document (tg_<lines>__lock_parent, attached with the totals), so the lock taken here is held.
--
-- TG_ARGV[0]: the document table (e.g. app_public.invoices); TG_ARGV[1]: the line's column
-- naming it (e.g. invoice_id). SECURITY DEFINER: the visitor may not write subtotal itself.
create or replace function app_private.tg__line_item_totals() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_parent regclass := tg_argv[0]::regclass;
  v_fk text := tg_argv[1];
  v_row jsonb;
  v_status text;
  v_org uuid;
  v_doc uuid;
begin
  if tg_op = 'UPDATE' and (to_jsonb(old) - 'updated_at') = (to_jsonb(new) - 'updated_at') then
    return null; -- nothing changed
  end if;
  if app_private.erasing(coalesce(new.organization_id, old.organization_id)) then
    return null; -- an erasure redacts a description, or deletes the organization (sql/functions/erasure.sql)
  end if;
  foreach v_row in array array_remove(array[
    case when tg_op in ('INSERT', 'UPDATE') then to_jsonb(new) end,
    case when tg_op = 'DELETE' or (tg_op = 'UPDATE' and (to_jsonb(old) ->> v_fk) is distinct from (to_jsonb(new) ->> v_fk)) then to_jsonb(old) end
  ], null) loop
    v_org := (v_row ->> 'organization_id')::uuid;
    v_doc := (v_row ->> v_fk)::uuid;
    -- Lock the document: concurrent line changes of one document are applied one at a time.
    execute format('select status::text from %s where organization_id = $1 and id = $2 for update', v_parent)
      into v_status using v_org, v_doc;
    continue when v_status is null; -- the document itself is being deleted
    if v_status <> 'draft' then
      perform app_private.fail('NOT_EDITABLE', format('The lines of a %s that is %s can no longer be changed.',
        app_private.singular_label((select relname from pg_class where oid = v_parent)), v_status));
    end if;
    execute format(
      'update %1$s d set subtotal = (select coalesce(sum(l.amount), 0) from %2$s l where l.organization_id = $1 and l.%3$I = $2)
       where d.organization_id = $1 and d.id = $2',
      v_parent, format('%I.%I', tg_table_schema, tg_table_name), v_fk)
      using v_org, v_doc;
  end loop;
  return null;
end
$$;

create or replace procedure app_private.attach_line_item_totals(tbl regclass, document regclass, document_column text)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_rel text := (select relname from pg_class where oid = tbl);
begin
  execute format('drop trigger if exists %I on %s', format('tg_%s__totals', v_rel), tbl);
  execute format('create trigger %I after insert or update or delete on %s for each row execute function app_private.tg__line_item_totals(%L, %L)',
    format('tg_%s__totals', v_rel), tbl, document::text, document_column);
  call app_private.attach_parent_lock(tbl, document, document_column);
end
$$;
