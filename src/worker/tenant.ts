// Runs a task's queries inside one organization: a transaction with app.org_id (and the actor,
// if any) set, on the worker's own connection. Row-level security then applies exactly as for
// a request by that organization, so a task for one organization cannot read another's rows.
import type { PoolClient } from 'pg';
import type { JobHelpers } from 'graphile-worker';

export interface TenantScope {
  organizationId: string;
  /** The user the job acts for (audit actor); null: the system. */
  actorId?: string | null;
}

export async function withTenant<T>(helpers: JobHelpers, scope: TenantScope, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  return helpers.withPgClient((client) => inTenantTransaction(client as PoolClient, scope, () => fn(client as PoolClient)));
}

/**
 * One transaction on `client` inside the organization (withTenant, and tasks that hold their own
 * connection). snapshot: read only, every query seeing the same snapshot (a consistent export).
 */
export async function inTenantTransaction<T>(client: PoolClient, scope: TenantScope, fn: () => Promise<T>, options: { snapshot?: boolean } = {}): Promise<T> {
  await client.query(options.snapshot ? 'begin isolation level repeatable read read only' : 'begin');
  try {
    await client.query(
      "select set_config('app.org_id', $1, true), set_config('app.user_id', coalesce($2, ''), true)",
      [scope.organizationId, scope.actorId ?? null],
    );
    const result = await fn();
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback');
    throw error;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Every tenant job's payload names its organization; anything else is a bug in the producer. */
export function organizationOf(payload: unknown): string {
  const id = (payload as { organization_id?: unknown } | null)?.organization_id;
  if (typeof id !== 'string' || !UUID.test(id)) {
    // (Not the payload itself: the error is logged and kept on the job.)
    throw new Error(`job payload must carry organization_id (a uuid), got ${id === undefined ? 'none' : typeof id === 'string' ? 'a string that is not one' : `a ${typeof id}`}`);
  }
  return id;
}
