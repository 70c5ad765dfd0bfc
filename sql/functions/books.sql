-- The books add up: every monetary invariant of the documents, re-checked over the stored rows
-- (of one organization, or all). The triggers and constraints enforce each as it is written;
-- this report proves the stored books still satisfy them all — after a restore, an import, a
-- hand-made repair — and names each violation. `npm run doctor` (group books) fails on any row;
-- tests/books.test.ts runs it after random concurrent invoicing, payments, credits, refunds,
-- write-offs and cancellations. Run by hand as the owner:
--   select * from app_private.books_violations();
-- It reads every invoice, line, payment, refund and credit note of its scope (sequential scans
-- on a whole database: a report, not a request).
-- Idempotent; re-included by later migrations.

create or replace function app_private.books_violations(organization_id uuid default null)
returns table (organization_id uuid, rule text, document text, document_id uuid, detail text)
language sql stable
set search_path = pg_catalog
as $$
  with org as (select books_violations.organization_id as id),
  invoice_sums as (
    select i.organization_id, i.id, i.status, i.number, i.subtotal, i.tax_amount, i.total, i.amount_paid, i.amount_credited, i.balance,
      (select coalesce(sum(t.amount), 0) from app_private.document_tax_parts('app_public.invoice_line_items', 'invoice_id', i.organization_id, i.id, i.subtotal, i.tax_rate) t) as taxed,
      (select coalesce(sum(l.amount), 0) from app_public.invoice_line_items l where l.organization_id = i.organization_id and l.invoice_id = i.id) as lines,
      (select coalesce(sum(p.amount), 0) from app_public.payments p where p.organization_id = i.organization_id and p.invoice_id = i.id) as paid,
      (select coalesce(sum(r.amount), 0) from app_public.refunds r where r.organization_id = i.organization_id and r.invoice_id = i.id) as refunded,
      (select coalesce(sum(c.total), 0) from app_public.credit_notes c where c.organization_id = i.organization_id and c.invoice_id = i.id) as credited,
      (select coalesce(sum(c.subtotal), 0) from app_public.credit_notes c where c.organization_id = i.organization_id and c.invoice_id = i.id) as credited_net,
      (select coalesce(sum(c.tax_amount), 0) from app_public.credit_notes c where c.organization_id = i.organization_id and c.invoice_id = i.id) as credited_tax
    from app_public.invoices i
    where (select id from org) is null or i.organization_id = (select id from org)
  ),
  invoice_rules as (
    select s.organization_id, v.rule, s.id, v.detail
    from invoice_sums s
    cross join lateral (values
      ('invoice_subtotal', s.subtotal is distinct from s.lines, format('subtotal %s, lines add up to %s', s.subtotal, s.lines)),
      ('invoice_tax', s.tax_amount is distinct from s.taxed, format('tax %s, its lines'' tax codes and the invoice''s rate give %s', s.tax_amount, s.taxed)),
      ('invoice_total', s.total is distinct from s.subtotal + s.tax_amount, format('total %s, subtotal %s + tax %s', s.total, s.subtotal, s.tax_amount)),
      ('invoice_amount_paid', s.amount_paid is distinct from s.paid - s.refunded, format('amount_paid %s, payments %s less refunds %s', s.amount_paid, s.paid, s.refunded)),
      ('invoice_amount_credited', s.amount_credited is distinct from s.credited, format('amount_credited %s, credit notes add up to %s', s.amount_credited, s.credited)),
      ('invoice_balance', s.balance is distinct from s.total - s.amount_paid - s.amount_credited, format('balance %s, total %s − paid %s − credited %s', s.balance, s.total, s.amount_paid, s.amount_credited)),
      ('invoice_paid_within_total', s.amount_paid < 0 or s.amount_paid > s.total, format('amount_paid %s of total %s', s.amount_paid, s.total)),
      ('invoice_credited_within_charged', s.credited_net > s.subtotal or s.credited_tax > s.tax_amount, format('credited %s net and %s tax of %s and %s', s.credited_net, s.credited_tax, s.subtotal, s.tax_amount)),
      ('invoice_status_matches_balance',
        (s.status = 'paid' and s.balance > 0) or (s.status in ('sent', 'viewed', 'overdue') and s.balance <= 0),
        format('%s with balance %s', s.status, s.balance)),
      ('invoice_money_only_when_issued',
        s.status in ('draft', 'cancelled') and (s.paid > 0 or s.credited > 0 or s.refunded > 0),
        format('%s with payments %s, credits %s, refunds %s', s.status, s.paid, s.credited, s.refunded)),
      ('invoice_numbered_when_issued',
        (s.status = 'draft' and s.number is not null) or (s.status not in ('draft', 'cancelled') and s.number is null),
        format('%s numbered %s', s.status, coalesce(s.number::text, 'none')))
    ) as v(rule, broken, detail)
    where v.broken
  ),
  -- Gapless series: 1 … n, each once, and the counter not behind the highest number.
  series as (
    select i.organization_id, 'invoice_numbers_gapless' as rule, count(i.number) as n, count(distinct i.number) as distinct_n, max(i.number) as top,
      (select c.last_number from app_private.invoice_counters c where c.organization_id = i.organization_id) as counter
    from app_public.invoices i
    where i.number is not null and ((select id from org) is null or i.organization_id = (select id from org))
    group by i.organization_id
    union all
    select n.organization_id, 'credit_note_numbers_gapless', count(n.number), count(distinct n.number), max(n.number),
      (select c.last_number from app_private.credit_note_counters c where c.organization_id = n.organization_id)
    from app_public.credit_notes n
    where n.number is not null and ((select id from org) is null or n.organization_id = (select id from org))
    group by n.organization_id
  ),
  series_rules as (
    select s.organization_id, s.rule, null::uuid as id,
      format('%s numbers, %s distinct, highest %s, counter %s', s.n, s.distinct_n, s.top, coalesce(s.counter::text, 'none')) as detail
    from series s
    where s.n <> s.top or s.distinct_n <> s.n or coalesce(s.counter, 0) < s.top
  ),
  proposal_rules as (
    select p.organization_id, v.rule, p.id, v.detail
    from app_public.proposals p
    cross join lateral (select coalesce(sum(l.amount), 0) as lines from app_public.proposal_line_items l where l.organization_id = p.organization_id and l.proposal_id = p.id) l
    cross join lateral (select coalesce(sum(t.amount), 0) as taxed from app_private.document_tax_parts('app_public.proposal_line_items', 'proposal_id', p.organization_id, p.id, p.subtotal, p.tax_rate) t) t
    cross join lateral (values
      ('proposal_subtotal', p.subtotal is distinct from l.lines, format('subtotal %s, lines add up to %s', p.subtotal, l.lines)),
      ('proposal_tax', p.tax_amount is distinct from t.taxed, format('tax %s, its lines'' tax codes and the proposal''s rate give %s', p.tax_amount, t.taxed)),
      ('proposal_total', p.total is distinct from p.subtotal + p.tax_amount, format('total %s, subtotal %s + tax %s', p.total, p.subtotal, p.tax_amount))
    ) as v(rule, broken, detail)
    where v.broken and ((select id from org) is null or p.organization_id = (select id from org))
  ),
  -- A document's parts are in its currency.
  currency_rules as (
    select x.organization_id, 'currency_matches_invoice' as rule, x.id, format('%s in %s, its invoice in %s', x.kind, x.currency, i.currency) as detail
    from (
      select p.organization_id, p.id, p.invoice_id, p.currency, 'payment' as kind from app_public.payments p
      union all
      select c.organization_id, c.id, c.invoice_id, c.currency, 'credit note' from app_public.credit_notes c
      union all
      select r.organization_id, r.id, r.invoice_id, r.currency, 'refund' from app_public.refunds r
    ) x
    join app_public.invoices i on i.organization_id = x.organization_id and i.id = x.invoice_id
    where x.currency is distinct from i.currency and ((select id from org) is null or x.organization_id = (select id from org))
  ),
  time_rules as (
    select t.organization_id, 'time_on_cancelled_invoice' as rule, t.id, format('time entry on cancelled invoice %s', t.invoice_id) as detail
    from app_public.time_entries t
    join app_public.invoices i on i.organization_id = t.organization_id and i.id = t.invoice_id
    where i.status = 'cancelled' and ((select id from org) is null or t.organization_id = (select id from org))
  )
  select r.organization_id, r.rule, 'invoices', r.id, r.detail from invoice_rules r
  union all
  select r.organization_id, r.rule, case when r.rule like 'invoice%' then 'invoices' else 'credit_notes' end, r.id, r.detail from series_rules r
  union all
  select r.organization_id, r.rule, 'proposals', r.id, r.detail from proposal_rules r
  union all
  select r.organization_id, r.rule, 'invoices', r.id, r.detail from currency_rules r
  union all
  select r.organization_id, r.rule, 'time_entries', r.id, r.detail from time_rules r
  order by 1, 2, 4
$$;
revoke all on function app_private.books_violations(uuid) from public;
comment on function app_private.books_violations(uuid) is 'Every monetary invariant broken in the stored books (of one organization, or all): subtotals (invoices and proposals), totals, amount paid, amount credited, balance, statuses, gapless invoice and credit note numbers, payments, credits and refunds in their invoice''s currency, time on cancelled invoices. No rows: the books add up. For the owner (doctor, tests).';
