-- app_public columns that hold money, quantities, percentages, dates, points in time or email
-- addresses without the domain that bounds them (sql/functions/value_domains.sql):
--   numeric, real, double precision, money  must be app_public.money_amount, quantity,
--                                           percentage, tax_percentage or exchange_rate (a float
--                                           never holds money)
--   date                                    must be app_public.business_date
--   timestamp (without time zone)           never: use timestamptz
--   timestamptz                             app_public.business_timestamp, unless the column is
--                                           allowed below as one the database sets itself AND the
--                                           visitor can neither insert nor update it
--   text whose name says email              must be app_public.email_address (any string type)
-- (Integers need no domain: PostgreSQL refuses what they cannot hold, and each column's own
-- check bounds it.) A number added to a large existing table may be a plain numeric instead (a
-- column of a domain with rules is added by rewriting the table): only if listed below, kept by
-- the database alone (the visitor cannot write it) and bounded by the named, validated check.
with bounded_by_table_check (table_name, column_name, constraint_name, why) as (values
  ('invoices', 'amount_credited', 'invoices_amount_credited_range', 'kept by the credit notes trigger (sql/functions/corrections.sql); added in migration 000040')
),
set_by_database (column_name, why) as (values
  -- Timestamps no caller gives: PostgreSQL or Atrium's own functions write now() into them.
  ('created_at', 'default now()'),
  ('updated_at', 'default now(), then the updated_at trigger (sql/functions/triggers.sql)'),
  ('occurred_at', 'default now() (activity_events, written by the audit trigger)'),
  ('deleted_at', 'soft_delete_<x>() / restore_<x>() (sql/functions/tenant_tables.sql)'),
  ('expires_at', 'default now() + 7 days (invitations)'),
  -- Stamped with now() by the status machines (app_private.status_transitions.stamp_column) or
  -- the lifecycle function of the step.
  ('sent_at', 'status machine'), ('viewed_at', 'status machine'), ('accepted_at', 'status machine, accept_* functions'),
  ('rejected_at', 'status machine'), ('expired_at', 'status machine'), ('signed_at', 'status machine'),
  ('cancelled_at', 'status machine'), ('closed_at', 'status machine'), ('completed_at', 'status machine'),
  ('reached_at', 'status machine'), ('approved_at', 'status machine'), ('paid_at', 'status machine'),
  ('overdue_at', 'status machine (daily maintenance)'), ('revoked_at', 'revoke_portal_access()'),
  -- Written by the worker's tasks.
  ('disabled_at', 'webhook delivery (auto-disable)'), ('delivered_at', 'webhook delivery'), ('last_attempt_at', 'webhook delivery'),
  ('last_invoiced_at', 'scheduled invoicing'),
  ('payload_removed_at', 'webhook payload retention (sql/functions/retention_growing.sql)'),
  -- Files (sql/functions/files.sql).
  ('upload_expires_at', 'now() + the upload window, on insert (file_objects trigger)'), ('uploaded_at', 'complete_file_upload()'),
  ('scanned_at', 'the file_uploaded job (record_file_scan())'),
  -- Deleting an organization (sql/functions/organization_deletion.sql).
  ('deletion_requested_at', 'delete_organization()'), ('deletion_due_at', 'delete_organization(): now() + the grace period'),
  -- Data exports (sql/functions/data_exports.sql): stamped by the data_export job's functions.
  ('started_at', 'start_data_export()'), ('ready_at', 'finish_data_export()'),
  -- Timesheets (sql/functions/timesheets.sql): stamped by their functions.
  ('submitted_at', 'submit_timesheet()'), ('decided_at', 'approve_timesheet() / reject_timesheet()')
),
columns as (
  select c.relname, a.attname, a.atttypid, coalesce(nullif(t.typbasetype, 0), t.oid) as base,
         (select b.typcategory from pg_type b where b.oid = coalesce(nullif(t.typbasetype, 0), t.oid)) as category,
         has_column_privilege(current_setting('atrium.visitor'), c.oid, a.attnum, 'INSERT')
           or has_column_privilege(current_setting('atrium.visitor'), c.oid, a.attnum, 'UPDATE') as visitor_writes
  from pg_attribute a
  join pg_class c on c.oid = a.attrelid
  join pg_type t on t.oid = a.atttypid
  where c.relnamespace = 'app_public'::regnamespace
    and c.relkind in ('r', 'p')
    and a.attnum > 0 and not a.attisdropped
)
select relname as "table", attname as "column", format_type(atttypid, null) as type, rule
from columns
cross join lateral (select case
  when base in ('numeric'::regtype, 'float4'::regtype, 'float8'::regtype, 'money'::regtype)
    and atttypid not in ('app_public.money_amount'::regtype, 'app_public.quantity'::regtype, 'app_public.percentage'::regtype, 'app_public.tax_percentage'::regtype, 'app_public.exchange_rate'::regtype)
    and not (atttypid = 'numeric'::regtype and not visitor_writes and exists (
      select from bounded_by_table_check b
      join pg_constraint k on k.conname = b.constraint_name and k.contype = 'c' and k.convalidated
      where b.table_name = relname and b.column_name = attname and k.conrelid = ('app_public.' || quote_ident(relname))::regclass))
    then 'a number that is not money_amount, quantity or percentage'
  when base = 'date'::regtype and atttypid <> 'app_public.business_date'::regtype
    then 'a date that is not business_date'
  when base = 'timestamp'::regtype
    then 'a timestamp without time zone'
  when base = 'timestamptz'::regtype and atttypid <> 'app_public.business_timestamp'::regtype
    and (visitor_writes or attname not in (select column_name from set_by_database))
    then 'a timestamptz that is not business_timestamp (and not set by the database alone)'
  when category = 'S' and attname ~ 'email' and atttypid <> 'app_public.email_address'::regtype
    then 'an email address that is not email_address'
end as rule) as r
where rule is not null
order by 1, 2;
