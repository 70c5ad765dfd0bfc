// Scheduled jobs (graphile-worker crontab syntax). `fill` makes the worker catch up on runs it
// missed while it was down (up to that long ago); job keys make each run count once.
export const crontab = [
  // 02:00 UTC every day: overdue invoices, expired proposals (per organization).
  '0 2 * * * daily_maintenance ?fill=3d&max=5',
].join('\n');
