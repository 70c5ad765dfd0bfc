-- The catalogue of domain events sent to webhooks: which activity events are which webhook
-- events (sql/functions/webhooks.sql delivers them). Included by webhooks.sql; a migration that
-- only adds events includes this file alone. Idempotent.
--
-- An `insert` rule matches new rows of the table; a status rule matches rows entering `to_status` (inserted in
-- it, or updated into it from another status).
create table if not exists app_private.webhook_event_rules (
  event_type text primary key check (event_type ~ '^[a-z_]+\.[a-z_]+$'),
  table_name text not null,
  status_column text,
  to_status text,
  description text not null,
  constraint webhook_event_rules_status check ((status_column is null) = (to_status is null))
);
alter table app_private.webhook_event_rules enable row level security;
alter table app_private.webhook_event_rules force row level security;
comment on table app_private.webhook_event_rules is 'Domain events sent to webhooks: new rows of table_name, or rows whose status_column enters to_status.';

insert into app_private.webhook_event_rules (event_type, table_name, status_column, to_status, description) values
  ('client_company.created', 'client_companies', null, null, 'A client company was added.'),
  ('deal.won', 'deals', 'stage', 'won', 'A deal was won.'),
  ('deal.lost', 'deals', 'stage', 'lost', 'A deal was lost.'),
  ('proposal.sent', 'proposals', 'status', 'sent', 'A proposal was sent to the client.'),
  ('proposal.accepted', 'proposals', 'status', 'accepted', 'The client accepted a proposal.'),
  ('proposal.rejected', 'proposals', 'status', 'rejected', 'The client rejected a proposal.'),
  ('contract.signed', 'contracts', 'status', 'signed', 'A contract was signed.'),
  ('engagement.started', 'engagements', null, null, 'An engagement started (a contract was signed).'),
  ('invoice.sent', 'invoices', 'status', 'sent', 'An invoice was sent.'),
  ('invoice.paid', 'invoices', 'status', 'paid', 'An invoice was paid in full.'),
  ('invoice.overdue', 'invoices', 'status', 'overdue', 'An invoice passed its due date unpaid.'),
  ('invoice.cancelled', 'invoices', 'status', 'cancelled', 'An invoice was cancelled.'),
  ('payment.recorded', 'payments', null, null, 'A payment was recorded against an invoice.'),
  ('bill.approved', 'bills', 'status', 'approved', 'A bill was approved for payment.'),
  ('bill.paid', 'bills', 'status', 'paid', 'A bill was paid.'),
  ('credit_note.issued', 'credit_notes', null, null, 'A credit note or write-off was issued against an invoice.'),
  ('refund.recorded', 'refunds', null, null, 'Money was refunded to a client against a credit note.'),
  ('timesheet.submitted', 'timesheets', 'status', 'submitted', 'A member submitted a week of time for approval.'),
  ('timesheet.approved', 'timesheets', 'status', 'approved', 'A week of time was approved.'),
  ('timesheet.rejected', 'timesheets', 'status', 'rejected', 'A week of time was rejected (with a reason).'),
  ('expense.submitted', 'expenses', 'status', 'submitted', 'A member submitted an expense for approval.'),
  ('expense.approved', 'expenses', 'status', 'approved', 'An expense was approved.'),
  ('expense.rejected', 'expenses', 'status', 'rejected', 'An expense was rejected (with a reason).'),
  ('budget.threshold_crossed', 'budget_alerts', null, null, 'A budget crossed one of its thresholds (hours or money used).')
on conflict (event_type) do update set table_name = excluded.table_name, status_column = excluded.status_column,
  to_status = excluded.to_status, description = excluded.description;
