// retention_purge (crontab, src/worker/crontab.ts): fans out one tenant_retention_purge job per
// organization that has soft-deleted rows past its retention window, through
// app_private.enqueue_retention_purge (sql/functions/retention.sql). Job keys make a repeated run
// enqueue each organization's day once.
import type { Task } from 'graphile-worker';
import { cronDay } from '../days.ts';

export const retention_purge: Task = async (payload, helpers) => {
  const day = cronDay(payload);
  const { rows } = await helpers.withPgClient((client) => client.query<{ n: number }>('select app_private.enqueue_retention_purge($1) as n', [day]));
  helpers.logger.info('retention purge enqueued', { day, organizations: rows[0].n });
};
