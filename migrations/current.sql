-- Jobs for other services (role DATABASE_PRODUCER, app_private.enqueue_job), fair priorities per
-- organization, queue depth and failed jobs for operators (sql/functions/jobs.sql).
--!include errors.sql
--!include functions/jobs.sql
--!include functions/webhooks.sql

-- Scheduled invoicing and the retention purge (docs/DATA_FLOWS.md).
--!include functions/invoice_schedules.sql
--!include functions/retention.sql

-- Scheduled invoicing and the retention purge run as the job worker (docs/DATA_FLOWS.md).
grant execute on function
  app_private.enqueue_scheduled_invoicing(date),
  app_private.generate_scheduled_invoices(date),
  app_private.enqueue_retention_purge(date),
  app_private.purge_deleted_records()
to :DATABASE_WORKER;
