// Helpers for tests of the worker's per-organization jobs (scheduled invoicing, retention):
// small organizations of their own, so each test's committed work touches nothing else, and
// worker transactions that commit or run in parallel as two workers would.
import type pg from 'pg';
import { createOrganization, inTransaction, pool, sessionOf, signUp, type Session, type User } from './db.ts';
import { commitAs, signedEngagement } from './fixtures.ts';

export interface SmallOrg {
  orgId: string;
  owner: User;
  /** The owner's session in the organization. */
  own: Session;
  clientId: string;
  contactId: string;
  engagementId: string;
}

/** A new organization with one client sold to: an active engagement (src/db/seed.ts). */
export async function smallOrg(label: string): Promise<SmallOrg> {
  const owner = await signUp(`${label}-owner`);
  const orgId = await createOrganization(owner, label);
  const own = sessionOf(owner, orgId);
  const sold = await commitAs(own, (c) => signedEngagement(c, label));
  return { orgId, owner, own, clientId: sold.clientId, contactId: sold.contactId, engagementId: sold.engagementId };
}

/** A transaction on the worker's connection inside `orgId`, as a task runs; left open for the caller. */
export async function openWorkerTransaction(orgId: string): Promise<pg.PoolClient> {
  const client = await pool('worker').connect();
  await client.query('begin');
  await client.query(`select set_config('app.org_id', $1, true)`, [orgId]);
  return client;
}

/** Runs `fn` on the worker's connection inside `orgId` and commits (a task's effect, for good). */
export const asWorkerCommitted = <T>(orgId: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> =>
  inTransaction('worker', { 'app.org_id': orgId }, fn, true);

