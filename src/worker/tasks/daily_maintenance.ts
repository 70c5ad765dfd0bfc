// daily_maintenance (crontab, src/worker/crontab.ts): fans out one tenant_daily job per
// organization for the day the crontab fired for (backfilled days included), through
// app_private.enqueue_daily_maintenance (sql/functions/maintenance.sql). Its job keys make a
// repeated or backfilled run enqueue each organization's day once.
import type { Task } from 'graphile-worker';

export const daily_maintenance: Task = async (payload, helpers) => {
  const ts = (payload as { _cron?: { ts?: string } })._cron?.ts;
  const day = (ts ? new Date(ts) : new Date()).toISOString().slice(0, 10);
  const { rows } = await helpers.withPgClient((client) => client.query<{ n: number }>('select app_private.enqueue_daily_maintenance($1) as n', [day]));
  helpers.logger.info('daily maintenance enqueued', { day, organizations: rows[0].n });
};
