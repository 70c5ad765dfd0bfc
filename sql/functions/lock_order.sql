-- Lock order: a document before its parts.
--
-- A document (an invoice, a proposal, a contract, a bill, an engagement, a contact's portal
-- access) is locked FOR UPDATE, by (organization_id, id), before anything changes it or its parts
-- (an invoice's lines and payments, a proposal's lines, an engagement's time entries), and
-- before its status is checked. Concurrent callers then queue on the document's row, and the
-- second one reads what the first one committed: no deadlock, no step taken twice.
--
-- Why the parts cannot go first: inserting a part takes a share lock on its document through
-- the foreign key (FOR KEY SHARE), and the part's trigger then updates the document (an invoice's
-- amount_paid or subtotal), which needs a stronger lock. Several transactions each holding the
-- share lock and each waiting for the stronger one deadlock (two of three payments queued behind
-- a busy invoice used to fail with DEADLOCK). So:
--
--   * lifecycle functions select the document FOR UPDATE first, then check its status and write
--     (record_payment, send_invoice, cancel_invoice, create_invoice_from_time for its
--     engagement, the proposal, contract and bill steps, grant_portal_access for its contact);
--   * a part inserted or moved by any path (recordPayment, a plain insert through the API, the
--     invoicing job) locks its document in a BEFORE trigger, ahead of the foreign key's share
--     lock: app_private.attach_parent_lock below. A part moved between two documents locks both
--     in id order;
--   * a step that ends in another document (an accepted proposal's contract and the deal it
--     wins, a signed contract's engagement) writes that one after its own;
--   * a step that only adds new rows under a document whose status it checked takes FOR SHARE
--     (create_project_from_template: the engagement stays live, time entries may still come);
--   * a function locking several rows of one kind locks them in id order (the scheduled
--     invoicing job's due schedules, the time entries create_invoice_from_time invoices);
--   * a plain update or delete of one existing part locks that part, then its document
--     (PostgreSQL locks the row before any trigger runs); no function locks a document and then
--     an existing part of it, so that order never meets its reverse.
--
-- Rows a function creates (a new invoice and its lines, a contract, an engagement) are nobody
-- else's yet and need no lock. The lock is only ever taken inside the caller's organization:
-- another tenant's id matches no row, is never locked or waited for, and answers exactly like a
-- random id. tests/lock-order.test.ts queues concurrent callers behind a held document.
-- Idempotent; re-included by later migrations.

-- BEFORE INSERT, and BEFORE UPDATE OF the document column, per row of a part: locks its document
-- (both, in id order, when the part moves) FOR UPDATE. TG_ARGV[0]: the document table;
-- TG_ARGV[1]: the part's column naming it. SECURITY DEFINER to lock a document the visitor may
-- read but not update; only rows of the caller's own organization (app_public.current_org_id())
-- are locked: a row for another organization is left to row-level security, which refuses it.
create or replace function app_private.tg__lock_parent() returns trigger
language plpgsql security definer
set search_path = pg_catalog
as $$
declare
  v_org uuid := app_public.current_org_id();
  v_new jsonb := to_jsonb(new);
  v_ids uuid[];
begin
  if v_org is null or (v_new ->> 'organization_id')::uuid is distinct from v_org then
    return new;
  end if;
  v_ids := array[(v_new ->> tg_argv[1])::uuid];
  if tg_op = 'UPDATE' and (to_jsonb(old) ->> 'organization_id')::uuid = v_org then
    v_ids := v_ids || (to_jsonb(old) ->> tg_argv[1])::uuid;
  end if;
  execute format('select from %s d where d.organization_id = $1 and d.id = any ($2) order by d.id for update', tg_argv[0]::regclass)
    using v_org, v_ids;
  return new;
end
$$;
revoke all on function app_private.tg__lock_parent() from public;

-- Attaches tg__lock_parent to the parts table `tbl`, whose column `parent_column` names a row
-- of `parent`: trigger tg_<table>__lock_parent.
create or replace procedure app_private.attach_parent_lock(tbl regclass, parent regclass, parent_column text)
language plpgsql
set search_path = pg_catalog
as $$
declare
  v_name text := format('tg_%s__lock_parent', (select relname from pg_class where oid = tbl));
begin
  execute format('drop trigger if exists %I on %s', v_name, tbl);
  execute format('create trigger %I before insert or update of %I on %s for each row execute function app_private.tg__lock_parent(%L, %L)',
    v_name, parent_column, tbl, parent::text, parent_column);
end
$$;

-- The parts whose triggers write their document: payments (amount_paid, status:
-- sql/functions/billing.sql) and lines (subtotal: sql/functions/line_items.sql, whose
-- attach_line_item_totals also attaches this lock to any future table of lines).
call app_private.attach_parent_lock('app_public.payments', 'app_public.invoices', 'invoice_id');
call app_private.attach_parent_lock('app_public.invoice_line_items', 'app_public.invoices', 'invoice_id');
call app_private.attach_parent_lock('app_public.proposal_line_items', 'app_public.proposals', 'proposal_id');
