// Retention of the tables that grow with use, in batches (sql/functions/retention_growing.sql):
// each rule removes at most RETENTION_BATCH_SIZE rows per call, each call its own transaction, and
// is called again until a call removes fewer, or RETENTION_MAX_BATCHES calls have run.
//
// Why 1,000: one batch is one short transaction (rows found through an index, oldest first; a
// webhook delivery's payload is a few KB, so a batch writes a few MB at most) holding at most
// 1,000 row locks, and a crash or a restart loses at most one batch. 1,000 batches per rule and
// run bound one run at 1,000,000 rows per rule (a backlog larger than that, e.g. the first run on
// an old database, goes on the next day: the log says `more`).
// Logs carry counts per rule, never values.
import type { PoolClient } from 'pg';

export const RETENTION_BATCH_SIZE = 1000;
export const RETENTION_MAX_BATCHES = 1000;

export interface RuleOutcome {
  /** Rows removed (or, for webhook payloads, stripped). */
  rows: number;
  /** The run stopped at RETENTION_MAX_BATCHES with rows left. */
  more: boolean;
}

/** Calls `batch` (one transaction removing at most `batchSize` rows) until a call removes fewer. */
export async function inBatches(batch: (batchSize: number) => Promise<number>, batchSize = RETENTION_BATCH_SIZE, maxBatches = RETENTION_MAX_BATCHES): Promise<RuleOutcome> {
  let rows = 0;
  for (let i = 0; i < maxBatches; i++) {
    const n = await batch(batchSize);
    rows += n;
    if (n < batchSize) return { rows, more: false };
  }
  return { rows, more: true };
}

/** The counts for a log line: { <rule>: rows }, and the rules that have rows left. */
export function retentionFacts(outcomes: Record<string, RuleOutcome>): { removed: Record<string, number>; more?: string[] } {
  const more = Object.keys(outcomes).filter((rule) => outcomes[rule]!.more);
  return { removed: Object.fromEntries(Object.entries(outcomes).map(([rule, o]) => [rule, o.rows])), ...(more.length > 0 ? { more } : {}) };
}

/** One statement in its own transaction, with the settings (set local) it needs. */
export async function inTransactionWith<T>(client: PoolClient, settings: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  await client.query('begin');
  try {
    if (Object.keys(settings).length > 0) await client.query('select set_config(key, value, true) from json_each_text($1)', [JSON.stringify(settings)]);
    const result = await fn();
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback');
    throw error;
  }
}
