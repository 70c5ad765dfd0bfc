// Deleting an organization (sql/functions/organization_deletion.sql): owners only, confirmed by
// the slug, after a grace period an owner may cancel; then every row the organization owns in every
// table, its activity log and its queued jobs are gone, another organization is untouched, the
// members' accounts stay, and only a record without data remains.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { setTimeout as sleep } from 'node:timers/promises';
import { startWorker } from '../src/worker/index.ts';
import { closePools, pgError, pool, sessionOf, urlFor } from './support/db.ts';
import { commitAs, one, oneTenant, twoTenants, type Tenant } from './support/fixtures.ts';
import { asWorkerCommitted } from './support/jobs.ts';
import { testLogger } from './support/log.ts';

let a: Tenant;
let b: Tenant;
beforeAll(async () => {
  ({ a, b } = await twoTenants());
}, 60_000);
afterAll(closePools);

const owner = () => pool('owner');
const slugOf = async (orgId: string) => (await owner().query<{ slug: string }>('select slug from app_public.organizations where id = $1', [orgId])).rows[0].slug;
const sqlstate = async (code: string) => (await owner().query<{ sqlstate: string }>('select sqlstate from app_private.error_codes where code = $1', [code])).rows[0].sqlstate;
const purgeJob = async (orgId: string) => (await owner().query<{ run_at: Date }>(`select run_at from graphile_worker.jobs where key = $1`, [`organization_purge:${orgId}`])).rows[0];

/** Rows of `orgId` in every table with an organization_id (app_public, app_private), and its events. */
async function rowsOf(orgId: string): Promise<Record<string, number>> {
  const { rows: tables } = await owner().query<{ t: string }>(
    `select c.oid::regclass::text as t from pg_class c
     where c.relnamespace in ('app_public'::regnamespace, 'app_private'::regnamespace) and c.relkind in ('r', 'p') and not c.relispartition
       and exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)`,
  );
  const counts: Record<string, number> = {};
  for (const { t } of tables) {
    const { rows } = await owner().query<{ n: number }>(`select count(*)::int as n from ${t} where organization_id = $1`, [orgId]);
    if (rows[0].n) counts[t] = rows[0].n;
  }
  return counts;
}

describe('deleteOrganization', () => {
  test('owners only, confirmed by the slug; due after the grace period, with the purge queued for then; an owner may cancel', async () => {
    const slug = await slugOf(a.orgId);
    const ask = (user: Tenant['owner'], s: string) => commitAs(sessionOf(user, a.orgId), (c) => one<{ deletion_due_at: Date | null }>(c, 'select * from app_public.delete_organization($1)', [s]));
    expect((await pgError(ask(a.admin, slug))).code).toBe(await sqlstate('NOT_PERMITTED'));
    expect((await pgError(ask(a.owner, `${slug}-typo`))).code).toBe(await sqlstate('INVALID_VALUE'));

    const asked = await ask(a.owner, slug);
    const days = (asked.deletion_due_at!.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThan(30.1);
    expect((await purgeJob(a.orgId)).run_at.getTime()).toBe(asked.deletion_due_at!.getTime());

    const cancelled = await commitAs(sessionOf(a.owner, a.orgId), (c) => one<{ deletion_due_at: Date | null }>(c, 'select * from app_public.cancel_organization_deletion()'));
    expect(cancelled.deletion_due_at).toBeNull();
    expect(await purgeJob(a.orgId)).toBeUndefined();
    expect((await pgError(commitAs(sessionOf(a.member, a.orgId), (c) => c.query('select app_public.cancel_organization_deletion()')))).code).toBe(await sqlstate('NOT_PERMITTED'));

    await ask(a.owner, slug);
    // Not due yet: the purge does nothing.
    expect((await asWorkerCommitted(a.orgId, (c) => one<{ r: unknown }>(c, 'select app_private.purge_organization() as r'))).r).toBeNull();
    expect(await slugOf(a.orgId)).toBe(slug);
  });

  test('when due, every row of the organization in every table goes, its log and jobs too; the other organization and the accounts stay', async () => {
    const before = await rowsOf(a.orgId);
    expect(Object.keys(before).length).toBeGreaterThan(30);
    expect(before['app_public.activity_events']).toBeGreaterThan(0);
    const theirs = await rowsOf(b.orgId);
    const files = (await owner().query<{ id: string }>('select id from app_public.file_objects where organization_id = $1', [a.orgId])).rows.map((r) => r.id);
    expect(files.length).toBeGreaterThan(0);
    const exports = (await owner().query<{ id: string }>('select id from app_public.data_exports where organization_id = $1', [a.orgId])).rows.map((r) => r.id);
    expect(exports.length).toBeGreaterThan(0);

    await owner().query(`update app_public.organizations set deletion_due_at = now() - interval '1 second' where id = $1`, [a.orgId]);
    const deleted = (await asWorkerCommitted(a.orgId, (c) => one<{ r: Record<string, number> }>(c, 'select app_private.purge_organization() as r'))).r;
    expect(deleted['app_public.activity_events']).toBeGreaterThan(0);
    expect(deleted['app_public.invoices']).toBe(before['app_public.invoices']);

    // Nothing of it is left, but the deletion of its stored files' objects and export zips (queued by the purge).
    expect(await rowsOf(a.orgId)).toEqual({});
    expect((await owner().query('select 1 from app_public.organizations where id = $1', [a.orgId])).rows).toEqual([]);
    const jobs = (await owner().query<{ task_identifier: string; file_id: string | null; export_id: string | null }>(
      `select t.identifier as task_identifier, j.payload ->> 'file_id' as file_id, j.payload ->> 'export_id' as export_id
       from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id where j.payload ->> 'organization_id' = $1`, [a.orgId])).rows;
    expect(jobs.filter((j) => j.task_identifier === 'file_delete_object').map((j) => j.file_id).sort()).toEqual([...files].sort());
    expect(jobs.filter((j) => j.task_identifier === 'data_export_delete_object').map((j) => j.export_id).sort()).toEqual([...exports].sort());
    expect(jobs.filter((j) => !['file_delete_object', 'data_export_delete_object'].includes(j.task_identifier)).map((j) => j.task_identifier)).toEqual([]);

    // The other organization lost nothing (its own jobs, which workers of other test files may run
    // meanwhile, only add rows: dispatch records, sent emails, events).
    const theirsAfter = await rowsOf(b.orgId);
    const lost = Object.entries(theirs).filter(([table, n]) => table.startsWith('app_public.') && (theirsAfter[table] ?? 0) < n);
    expect(lost).toEqual([]);
    expect(Object.keys(theirsAfter).filter((table) => table.startsWith('app_public.')).sort()).toEqual(Object.keys(theirs).filter((table) => table.startsWith('app_public.')).sort());
    expect((await owner().query('select count(*)::int as n from app_public.users where id = any($1)', [[a.owner.userId, a.member.userId, a.portal.userId]])).rows[0].n).toBe(3);
    const record = (await owner().query('select requested_by, rows_deleted from app_private.deleted_organizations where id = $1', [a.orgId])).rows[0];
    expect(record.requested_by).toBe(a.owner.userId);
    expect(record.rows_deleted).toEqual(deleted);
  }, 60_000);

  test('the worker runs the organization_purge job when it is due', async () => {
    const doomed = await oneTenant('doomed');
    await commitAs(sessionOf(doomed.owner, doomed.orgId), async (c) => c.query('select app_public.delete_organization($1)', [await slugOf(doomed.orgId)]));
    await owner().query(`update app_public.organizations set deletion_due_at = now() where id = $1`, [doomed.orgId]);
    await owner().query(`update graphile_worker._private_jobs set run_at = now() where key = $1`, [`organization_purge:${doomed.orgId}`]);
    const worker = await startWorker({ connectionString: urlFor('worker'), concurrency: 1, log: testLogger('test-worker'), crontab: false, onlyTasks: ['organization_purge'] });
    try {
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && (await owner().query('select 1 from app_public.organizations where id = $1', [doomed.orgId])).rows.length) await sleep(200);
    } finally {
      await worker.stop();
    }
    expect((await owner().query('select 1 from app_private.deleted_organizations where id = $1', [doomed.orgId])).rows.length).toBe(1);
  }, 90_000);
});
