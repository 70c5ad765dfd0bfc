// Scheduled jobs (graphile-worker crontab syntax). `fill` makes the worker catch up on runs it
// missed while it was down (up to that long ago); job keys make each run count once.
export const crontab = [
  // 02:00 UTC every day: overdue invoices, expired proposals (per organization).
  '0 2 * * * daily_maintenance ?fill=3d&max=5',
  // 01:00 UTC every day: invoices from invoice_schedules (per organization with a schedule due).
  // The schedules catch up every missed period themselves; fill re-runs days the worker missed.
  '0 1 * * * scheduled_invoicing ?fill=3d&max=5',
  // 03:30 UTC every day: soft-deleted rows past each organization's retention window are purged.
  // The window is counted from now, so one missed run is enough to catch up (fill=1d).
  '30 3 * * * retention_purge ?fill=1d&max=5',
].join('\n');
