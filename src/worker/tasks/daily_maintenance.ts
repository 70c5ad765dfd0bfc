// daily_maintenance (crontab, src/worker/crontab.ts): fans out one tenant_daily job per
// organization for the day the crontab fired for (backfilled days included), through
// app_private.enqueue_daily_maintenance (sql/functions/maintenance.sql). Its job keys make a
// repeated or backfilled run enqueue each organization's day once. Then it applies the
// system-wide retention rules (sql/functions/retention_growing.sql: ended sessions, used refresh
// tokens, expired reset tokens, registrations and email secrets, old sign-in throttle rows,
// enqueue counts and dispatch records, account emails, failed jobs), each in batches
// (../retention.ts), and logs how many rows each removed. It also keeps the activity log's month
// partitions three months ahead (app_private.maintain_activity_partitions,
// sql/functions/activity_partitions.sql) and drops the months older than every organization's
// longest window (app_private.drop_expired_activity_partitions,
// sql/functions/activity_retention.sql).
import type { PoolClient } from 'pg';
import type { Task } from 'graphile-worker';
import { inBatches, inTransactionWith, retentionFacts, type RuleOutcome } from '../retention.ts';

export interface DailyMaintenanceOptions {
  /**
   * REFRESH_TOKEN_TTL_SECONDS, as the API uses it: used refresh tokens are kept that long after
   * their use. Unset: the database's default (30 days, app_private.refresh_token_ttl()).
   */
  refreshTokenTtlSeconds?: number;
}

export function dailyMaintenance(options: DailyMaintenanceOptions = {}): Task {
  const settings: Record<string, string> = options.refreshTokenTtlSeconds === undefined ? {} : { 'app.refresh_token_ttl_seconds': String(options.refreshTokenTtlSeconds) };
  return async (payload, helpers) => {
    const ts = (payload as { _cron?: { ts?: string } })._cron?.ts;
    const day = (ts ? new Date(ts) : new Date()).toISOString().slice(0, 10);
    const { rows } = await helpers.withPgClient((client) =>
      client.query<{ n: number; partitions: number }>('select app_private.enqueue_daily_maintenance($1) as n, app_private.maintain_activity_partitions() as partitions', [day]),
    );
    helpers.logger.info('daily maintenance enqueued', { day, organizations: rows[0]!.n, activityPartitionsCreated: rows[0]!.partitions });

    const outcomes: Record<string, RuleOutcome> = {};
    await helpers.withPgClient(async (pgClient) => {
      const client = pgClient as PoolClient;
      const rules = (await client.query<{ rule: string }>('select app_private.system_retention_rules() as rule')).rows.map((r) => r.rule);
      for (const rule of rules) {
        outcomes[rule] = await inBatches((batchSize) =>
          inTransactionWith(client, settings, async () => (await client.query<{ n: number }>('select app_private.purge_system_rows($1, $2) as n', [rule, batchSize])).rows[0]!.n),
        );
      }
    });
    const dropped = await helpers.withPgClient(async (client) =>
      (await client.query<{ month: string }>(`select to_char(month, 'YYYY-MM') as month from app_private.drop_expired_activity_partitions() as month`)).rows.map((r) => r.month),
    );
    helpers.logger.info('retention applied (system-wide)', { day, ...retentionFacts(outcomes), activityMonthsDropped: dropped });
  };
}
