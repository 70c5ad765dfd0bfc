// scheduled_invoicing (crontab, src/worker/crontab.ts): fans out one tenant_invoicing job per
// organization that has an invoice schedule due on the day the crontab fired for (backfilled days
// included), through app_private.enqueue_scheduled_invoicing (sql/functions/invoice_schedules.sql).
// Job keys make a repeated or backfilled run enqueue each organization's day once.
import type { Task } from 'graphile-worker';
import { cronDay } from '../days.ts';

export const scheduled_invoicing: Task = async (payload, helpers) => {
  const day = cronDay(payload);
  const { rows } = await helpers.withPgClient((client) => client.query<{ n: number }>('select app_private.enqueue_scheduled_invoicing($1) as n', [day]));
  helpers.logger.info('scheduled invoicing enqueued', { day, organizations: rows[0].n });
};
