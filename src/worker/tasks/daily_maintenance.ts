// daily_maintenance (crontab, src/worker/crontab.ts): fans out one tenant_daily job per
// organization for the day the crontab fired for (backfilled days included), through
// app_private.enqueue_daily_maintenance (sql/functions/maintenance.sql). Its job keys make a
// repeated or backfilled run enqueue each organization's day once. It also deletes the one-time
// secrets of emails whose links have expired (app_private.purge_expired_secrets,
// sql/functions/registration.sql), and keeps the activity log's month partitions three months
// ahead (app_private.maintain_activity_partitions, sql/functions/activity_partitions.sql).
import type { Task } from 'graphile-worker';

export const daily_maintenance: Task = async (payload, helpers) => {
  const ts = (payload as { _cron?: { ts?: string } })._cron?.ts;
  const day = (ts ? new Date(ts) : new Date()).toISOString().slice(0, 10);
  const { rows } = await helpers.withPgClient((client) =>
    client.query<{ n: number; purged: number; partitions: number }>(
      'select app_private.enqueue_daily_maintenance($1) as n, app_private.purge_expired_secrets() as purged, app_private.maintain_activity_partitions() as partitions',
      [day],
    ),
  );
  helpers.logger.info('daily maintenance enqueued', { day, organizations: rows[0].n, expiredSecretsPurged: rows[0].purged, activityPartitionsCreated: rows[0].partitions });
};
