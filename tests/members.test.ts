// Membership rules under concurrency: an organization always keeps an owner, even when its two
// owners step down at the same moment on two connections.
import { afterAll, expect, test } from '@jest/globals';
import type pg from 'pg';
import { addMember, closePools, createOrganization, pool, roleName, signUp, type User } from './support/db.ts';

afterAll(closePools);

test('two owners demoting themselves concurrently: the second waits, then fails with LAST_OWNER', async () => {
  const first = await signUp('co-owner-1');
  const orgId = await createOrganization(first, 'concurrent');
  const second = await addMember(orgId, first, 'owner', 'co-owner-2');
  const [c1, c2] = await Promise.all([pool('authenticator').connect(), pool('authenticator').connect()]);
  const demote = async (client: pg.PoolClient, user: User) => {
    await client.query('begin');
    await client.query(`select set_config('role', $1, true), set_config('app.user_id', $2, true), set_config('app.session_id', $3, true), set_config('app.org_id', $4, true)`, [
      roleName('visitor'),
      user.userId,
      user.sessionId,
      orgId,
    ]);
    return client.query(`update app_public.organization_members set role = 'admin' where user_id = $1`, [user.userId]);
  };
  try {
    expect((await demote(c1, first)).rowCount).toBe(1); // holds the organization's lock until commit
    const secondDemotion = demote(c2, second).then(
      () => 'updated',
      (e: { code: string }) => e.code,
    );
    const raced = await Promise.race([secondDemotion, new Promise((resolve) => setTimeout(() => resolve('waiting'), 300))]);
    expect(raced).toBe('waiting');
    await c1.query('commit');
    expect(await secondDemotion).toBe('AT420');
  } finally {
    await Promise.all([c1.query('rollback').catch(() => undefined), c2.query('rollback').catch(() => undefined)]);
    c1.release();
    c2.release();
  }
  const { rows } = await pool('owner').query(`select user_id from app_public.organization_members where organization_id = $1 and role = 'owner'`, [orgId]);
  expect(rows).toEqual([{ user_id: second.userId }]);
});
