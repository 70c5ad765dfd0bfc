// Exports (docs/EXPORT_AND_IMPORT.md): an owner requests one of the organization, the data_export
// job writes the zip into the store, DataExport.downloadUrl downloads it, and
// `import-organization` loads it into a fresh database of its own (provisioned here, on the same
// kind of server as the run's). Exports of one person (exportContact, exportUser) and the final
// export of a deleted organization go through the same job. What must never happen: secrets in
// the zip, a member without the right requesting one, another organization seeing or getting one
// (or learning that its ids exist), a link that outlives it, a final export lost with the purge.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobHelpers } from 'graphile-worker';
import { strFromU8, unzipSync, zipSync } from 'fflate';
import pg from 'pg';
import { withCredentials } from '../src/db/bootstrap.ts';
import type { ExportManifest } from '../src/export/format.ts';
import { ImportRefused, importOrganization, loadOrder } from '../src/export/import.ts';
import type { Atrium } from '../src/index.ts';
import { createStorage, type FileStorage } from '../src/storage/index.ts';
import { dataExport } from '../src/worker/tasks/data_export.ts';
import { dataExportDeleteObject, dataExportExpire } from '../src/worker/tasks/data_export_expire.ts';
import { errorCode, gql, startTestApp, tokenFor } from './support/app.ts';
import { runCli } from './support/cli.ts';
import { asVisitor, closePools, pgError, pool, sessionOf, testConfig, type User } from './support/db.ts';
import { commitAs, one, oneTenant, twoTenants, type Tenant } from './support/fixtures.ts';
import { asWorkerCommitted } from './support/jobs.ts';
import { provisionTestDatabase, type Provisioned } from './support/provision.ts';

let a: Tenant;
let b: Tenant;
let app: Atrium;
let store: FileStorage;
let target: Provisioned;
let targetOwnerUrl: string;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-export-test-'));

beforeAll(async () => {
  [{ a, b }, target] = await Promise.all([twoTenants(), provisionTestDatabase()]);
  targetOwnerUrl = withCredentials(target.env.DATABASE_URL, target.env.DATABASE_OWNER, target.env.DATABASE_OWNER_PASSWORD);
  app = await startTestApp();
  store = await createStorage(testConfig().files, { publicUrl: app.url!, jwtSecret: process.env.JWT_SECRET! });
  await commitAs(sessionOf(a.owner, a.orgId), async (c) => {
    // Something soft-deleted but still restorable: the organization's data too.
    await c.query(`select app_public.soft_delete_deal(id) from app_public.deals where client_company_id <> $1 limit 1`, [a.clientId]);
    // A change order: a proposal naming its engagement, whose contract names the first proposal
    // (the foreign keys go round: proposals → engagements → contracts → proposals).
    await c.query(`insert into app_public.proposals (client_company_id, engagement_id, title) values ($1, $2, 'Change order')`, [a.clientId, a.engagementId]);
  });
}, 180_000);
afterAll(async () => {
  await store?.close();
  await app?.stop();
  await target?.teardown();
  await closePools();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Runs a task the way the worker does, on the worker's connection (the test's own job, not the queue's). */
function helpersFor(attempts = 1, maxAttempts = 5): JobHelpers {
  return {
    withPgClient: async (fn: (client: unknown) => Promise<unknown>) => {
      const client = await pool('worker').connect();
      try {
        return await fn(client);
      } finally {
        client.release();
      }
    },
    logger: { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined },
    job: { id: '0', task_identifier: 'data_export', attempts, max_attempts: maxAttempts },
  } as unknown as JobHelpers;
}

interface ExportRow {
  rowId: string;
  status: string;
  byteSize: string | null;
  rowCounts: Record<string, number> | null;
  expiresAt: string | null;
  downloadUrl: string | null;
}
const EXPORT_FIELDS = 'rowId status byteSize rowCounts expiresAt downloadUrl';

async function request(tenant: Tenant, who: 'owner' | 'admin' | 'member' | 'viewer') {
  return gql<{ requestOrganizationExport: { dataExport: ExportRow } }>(
    app.url!, `mutation { requestOrganizationExport(input: {}) { dataExport { ${EXPORT_FIELDS} } } }`, {}, await tokenFor(tenant[who], tenant.orgId));
}
async function read(tenant: Tenant, who: 'owner' | 'admin' | 'member', orgId: string, id: string): Promise<ExportRow | null> {
  const res = await gql<{ dataExport: ExportRow | null }>(app.url!, `query($o: UUID!, $id: UUID!) { dataExport(organizationId: $o, rowId: $id) { ${EXPORT_FIELDS} } }`, { o: orgId, id }, await tokenFor(tenant[who], tenant.orgId));
  expect(res.errors).toBeUndefined();
  return res.data!.dataExport;
}
const jobsOf = async (task: string, exportId: string) =>
  (await pool('owner').query<{ payload: Record<string, unknown>; run_at: Date }>(
    `select j.payload, j.run_at from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
     where t.identifier = $1 and (j.payload->>'export_id' = $2 or j.payload->'data'->>'export_id' = $2)`, [task, exportId])).rows;

/** Requests an export of `tenant` as its owner and runs the job; returns the ready row and the zip's files. */
async function exported(tenant: Tenant, pageRows?: number): Promise<{ row: ExportRow; zip: Buffer; files: Record<string, Uint8Array> }> {
  const res = await request(tenant, 'owner');
  expect(res.errors).toBeUndefined();
  const id = res.data!.requestOrganizationExport.dataExport.rowId;
  const [job] = await jobsOf('data_export', id);
  expect(job.payload).toEqual({ organization_id: tenant.orgId, export_id: id });
  await dataExport({ storage: store, pageRows })(job.payload, helpersFor());
  const row = (await read(tenant, 'owner', tenant.orgId, id))!;
  expect(row.status).toBe('ready');
  const download = await fetch(row.downloadUrl!);
  expect(download.status).toBe(200);
  const zip = Buffer.from(await download.arrayBuffer());
  expect(zip.length).toBe(Number(row.byteSize));
  return { row, zip, files: unzipSync(zip) };
}

/** `node src/cli.ts import-organization <zip>` against the target database. */
const importCli = (zip: string) => runCli(['import-organization', zip], { ...process.env, ...target.env, LOG_LEVEL: 'error' });

/** The activity events of exports made after this one's snapshot are not in it. */
// (events written after the export's snapshot: its own, and those of jobs other tests' workers run)
const onlyOlder = (table: string) => (table === 'activity_events' ? `and occurred_at <= '${snapshotAt}'` : '');
let snapshotAt: string;

describe('an organization export', () => {
  let row: ExportRow;
  let zip: Buffer;
  let files: Record<string, Uint8Array>;
  let manifest: ExportManifest;
  beforeAll(async () => {
    // Seven rows per round trip: most tables take several (the paths of a big organization).
    ({ row, zip, files } = await exported(a, 7));
    manifest = JSON.parse(strFromU8(files['manifest.json'])) as ExportManifest;
    snapshotAt = (await pool('owner').query<{ at: string }>('select started_at::text as at from app_public.data_exports where id = $1', [row.rowId])).rows[0].at;
  }, 120_000);

  test('covers every table of the organization, from the catalog: its row, every app_public table with organization_id, the users they name', async () => {
    const { rows } = await pool('owner').query<{ name: string }>(
      `select c.relname as name from pg_class c
       where c.relnamespace = 'app_public'::regnamespace and c.relkind in ('r', 'p') and c.relname <> 'data_exports'
         and (c.relname in ('organizations', 'users') or exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'organization_id'))
       order by 1`);
    expect(manifest.tables.map((t) => t.name).sort()).toEqual(rows.map((r) => r.name));
    for (const t of manifest.tables) {
      expect(Object.keys(files)).toEqual(expect.arrayContaining([`${t.name}.json`, `${t.name}.csv`]));
      const parsed = JSON.parse(strFromU8(files[`${t.name}.json`])) as unknown[];
      expect(parsed).toHaveLength(t.rows);
      // A header and one line per row (no field of the fixtures spans lines).
      expect(strFromU8(files[`${t.name}.csv`]).split('\r\n').filter(Boolean)).toHaveLength(t.rows + 1);
    }
    expect(manifest).toMatchObject({ formatVersion: 1, kind: 'organization', organizationId: a.orgId, exportId: row.rowId });
    expect(manifest.schema.hash).toMatch(/^sha1:/);
    expect(row.rowCounts).toEqual(Object.fromEntries(manifest.tables.map((t) => [t.name, t.rows])));
    // The organization's rows as the owner sees them (all, soft-deleted included), table by table.
    // (The activity log goes on: the export's own steps after its snapshot are not in it.)
    for (const t of manifest.tables.filter((x) => !['users', 'organizations'].includes(x.name))) {
      const { rows: [count] } = await pool('owner').query<{ n: number }>(`select count(*)::int as n from app_public.${t.name} where organization_id = $1 ${onlyOlder(t.name)}`, [a.orgId]);
      expect([t.name, t.rows]).toEqual([t.name, count.n]);
    }
    expect(manifest.tables.find((t) => t.name === 'deals')!.rows).toBeGreaterThan(0);
  });

  test('holds no secret: no password, token or secret column, no secret column of the audit (webhook payloads), no value of app_private', async () => {
    for (const t of manifest.tables) expect(t.columns.filter((c) => /password|secret|token|hash/.test(c))).toEqual([]);
    expect(manifest.tables.find((t) => t.name === 'webhook_deliveries')!.columns).not.toContain('payload');
    const text = Object.values(files).map((f) => strFromU8(f)).join('\n');
    const { rows: secrets } = await pool('owner').query<{ value: string }>(
      `select s.password_hash as value from app_private.user_secrets s join app_public.organization_members m on m.user_id = s.user_id where m.organization_id = $1
       union all select secret from app_private.webhook_secrets where organization_id = $1
       union all select encode(token_hash, 'hex') from app_private.invitation_secrets where organization_id = $1
       union all select encode(token_hash, 'hex') from app_private.portal_access_secrets where organization_id = $1
       union all select encode(s.refresh_token_hash, 'hex') from app_private.sessions s join app_public.organization_members m on m.user_id = s.user_id where m.organization_id = $1`,
      [a.orgId]);
    expect(secrets.length).toBeGreaterThan(4);
    for (const { value } of secrets) expect(text.includes(value)).toBe(false);
    expect(text).not.toMatch(/\$2[aby]\$/); // no bcrypt hash of any kind
    // Nothing of the other organization either.
    expect(text.includes(b.orgId)).toBe(false);
  });

  test('asks for the email to the requester with a link to the app and no secret, and queues the expiry at expiresAt', async () => {
    const [email] = await jobsOf('send_email', row.rowId);
    expect(email.payload).toMatchObject({ organization_id: a.orgId, template: 'data_export_ready', to: a.owner.email, data: { export_id: row.rowId } });
    expect(email.payload.has_secrets).toBeUndefined();
    expect(JSON.stringify(email.payload)).not.toMatch(/https?:|token|signature/i);
    const [expiry] = await jobsOf('data_export_expire', row.rowId);
    expect(expiry.run_at.getTime()).toBe(new Date(row.expiresAt!).getTime());
    // Seven days by default.
    expect(new Date(row.expiresAt!).getTime() - Date.now()).toBeGreaterThan(6.9 * 86_400_000);
  });

  test('imports into an empty database: every table, ids, invoice and payment totals, the invoice counter; once only', async () => {
    const file = path.join(tmp, 'a.zip');
    fs.writeFileSync(file, zip);
    // As an operator runs it: the CLI, configured for the target database.
    const cli = await importCli(file);
    expect(cli).toMatchObject({ code: 0, stderr: '' });
    expect(cli.stdout).toContain(`Organization ${a.orgId} imported.`);
    // The delivery log needs its payloads, which are secret: it starts empty.
    expect(cli.stdout).toMatch(/webhook_deliveries +not imported: .*payload/);
    const skipped = ['webhook_deliveries'];
    const there = new pg.Pool({ connectionString: targetOwnerUrl, max: 2 });
    try {
      const users = (JSON.parse(strFromU8(files['users.json'])) as Array<{ id: string }>).map((u) => u.id);
      expect(users.length).toBeGreaterThan(5);
      for (const t of manifest.tables.filter((x) => !skipped.includes(x.name))) {
        const where = t.name === 'users' ? `id = any ($2::uuid[])` : t.name === 'organizations' ? 'id = $1' : 'organization_id = $1';
        const ids = async (p: pg.Pool) => (await p.query<{ id: string }>(`select id from app_public.${t.name} where (${where}) ${onlyOlder(t.name)} and $1::uuid is not null and $2::uuid[] is not null order by id`, [a.orgId, users])).rows.map((r) => r.id);
        expect([t.name, await ids(there)]).toEqual([t.name, await ids(pool('owner'))]);
      }
      const totals = `select i.id, i.number, i.status, i.subtotal, i.tax_amount, i.total, i.amount_paid, i.balance,
          (select coalesce(sum(p.amount), 0) from app_public.payments p where p.organization_id = i.organization_id and p.invoice_id = i.id) as paid
        from app_public.invoices i where i.organization_id = $1 order by i.id`;
      const source = (await pool('owner').query(totals, [a.orgId])).rows;
      expect(source.some((r) => Number(r.paid) > 0)).toBe(true);
      expect((await there.query(totals, [a.orgId])).rows).toEqual(source);
      const changeOrders = 'select id, engagement_id from app_public.proposals where organization_id = $1 and engagement_id is not null order by id';
      expect((await pool('owner').query(changeOrders, [a.orgId])).rows).toHaveLength(1);
      expect((await there.query(changeOrders, [a.orgId])).rows).toEqual((await pool('owner').query(changeOrders, [a.orgId])).rows);
      const counter = 'select last_number from app_private.invoice_counters where organization_id = $1';
      expect((await there.query(counter, [a.orgId])).rows).toEqual((await pool('owner').query(counter, [a.orgId])).rows);
      // No job was queued for the history (no email, no webhook, no expiry).
      const { rows: jobs } = await there.query(`select t.identifier from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
         where j.payload->>'organization_id' = $1 and t.identifier <> 'dispatch_activity'`, [a.orgId]);
      expect(jobs).toEqual([]);
      // Webhook endpoints wait for a new secret.
      expect((await there.query('select count(*)::int as n from app_public.webhook_endpoints where organization_id = $1 and enabled', [a.orgId])).rows[0].n).toBe(0);
    } finally {
      await there.end();
    }
    await expect(importOrganization(targetOwnerUrl, file)).rejects.toThrow(/already exists/);
    const again = await importCli(file);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`Import refused: organization ${a.orgId} already exists in this database`);
  }, 120_000);

  test('imports page by page: another organization, five rows per statement, has every row of its export and no other; an old event lands in its month', async () => {
    // An event of May 2019, in that month's partition here (made in the writers' lock order).
    await pool('owner').query(`lock table app_public.organizations in share row exclusive mode; lock table app_public.activity_events in access exclusive mode;
      create table if not exists app_partitions.activity_events_2019_05 partition of app_public.activity_events for values from ('2019-05-01') to ('2019-06-01')`);
    const old = (await pool('owner').query<{ id: string }>(
      `insert into app_public.activity_events (organization_id, action, table_name, record_id, new_values, occurred_at) values ($1, 'insert', 'contacts', gen_random_uuid(), '{}', '2019-05-10') returning id`, [b.orgId])).rows[0].id;
    const other = await exported(b, 7);
    const file = path.join(tmp, 'b.zip');
    fs.writeFileSync(file, other.zip);
    const result = await importOrganization(targetOwnerUrl, file, { pageRows: 5 });
    expect(Object.keys(result.skipped)).toEqual(['webhook_deliveries']);
    const there = new pg.Pool({ connectionString: targetOwnerUrl, max: 2 });
    try {
      const otherManifest = JSON.parse(strFromU8(other.files['manifest.json'])) as ExportManifest;
      for (const t of otherManifest.tables.filter((x) => x.name !== 'webhook_deliveries')) {
        const exportedIds = (JSON.parse(strFromU8(other.files[`${t.name}.json`])) as Array<{ id: string }>).map((r) => r.id).sort();
        const where = t.name === 'users' ? 'id = any ($2::uuid[])' : t.name === 'organizations' ? 'id = $1' : 'organization_id = $1';
        const { rows } = await there.query<{ id: string }>(`select id::text from app_public.${t.name} where (${where}) and $1::uuid is not null and $2::uuid[] is not null order by id`, [b.orgId, exportedIds]);
        expect([t.name, rows.map((r) => r.id)]).toEqual([t.name, exportedIds]);
        if (t.name !== 'users') expect([t.name, result.rows[t.name]]).toEqual([t.name, t.rows]);
      }
      // The import made its month first: the event is not in the default partition.
      expect((await there.query(`select tableoid::regclass::text as part from app_public.activity_events where id = $1`, [old])).rows).toEqual([{ part: 'app_partitions.activity_events_2019_05' }]);
    } finally {
      await there.end();
    }
  }, 120_000);

  test('an import refuses a changed file (its checksum) and a zip that is not an export', async () => {
    const changed = { ...files, 'invoices.json': new TextEncoder().encode('[\n]\n') };
    const file = path.join(tmp, 'changed.zip');
    fs.writeFileSync(file, zipSync(changed));
    await expect(importOrganization(targetOwnerUrl, file)).rejects.toThrow(/invoices\.json does not match its checksum/);
    fs.writeFileSync(file, zipSync({ 'notes.txt': new TextEncoder().encode('hello') }));
    await expect(importOrganization(targetOwnerUrl, file)).rejects.toThrow(ImportRefused);
  });

  test('the load order puts parents first and breaks a cycle of foreign keys at a nullable one', () => {
    const fk = (table: string, references: string, nullable: string[] = []) => ({ table, references, columns: [], nullable });
    const { order, later } = loadOrder(['proposals', 'engagements', 'contracts', 'clients'], [
      fk('proposals', 'clients'), fk('contracts', 'proposals'), fk('engagements', 'contracts'), fk('proposals', 'engagements', ['engagement_id']),
    ]);
    expect(order).toEqual(['clients', 'proposals', 'contracts', 'engagements']);
    expect([...later]).toEqual([['proposals', ['engagement_id']]]);
    // A table that only waits for the cycle (its nullable key sorts first) keeps its reference.
    const waiting = loadOrder(['proposals', 'engagements', 'contracts', 'clients', 'expenses'], [
      fk('proposals', 'clients'), fk('contracts', 'proposals'), fk('engagements', 'contracts'), fk('proposals', 'engagements', ['engagement_id']),
      fk('expenses', 'engagements', ['engagement_id']),
    ]);
    expect(waiting.order).toEqual(['clients', 'proposals', 'contracts', 'engagements', 'expenses']);
    expect([...waiting.later]).toEqual([['proposals', ['engagement_id']]]);
  });
});

describe('who may export', () => {
  test('members and viewers may not request an export (NOT_PERMITTED); admins may; a second request answers the export on its way, unless it is stuck for a day', async () => {
    expect(errorCode(await request(a, 'member'))).toBe('NOT_PERMITTED');
    expect(errorCode(await request(a, 'viewer'))).toBe('NOT_PERMITTED');
    const first = await request(b, 'admin');
    expect(first.errors).toBeUndefined();
    const second = await request(b, 'owner');
    expect(second.data!.requestOrganizationExport.dataExport.rowId).toBe(first.data!.requestOrganizationExport.dataExport.rowId);
    expect(second.data!.requestOrganizationExport.dataExport.status).toBe('requested');
    // One that never finished (its job gave up without saying so) blocks nothing after a day.
    await pool('owner').query(`update app_public.data_exports set created_at = now() - interval '25 hours' where id = $1`, [first.data!.requestOrganizationExport.dataExport.rowId]);
    const third = await request(b, 'owner');
    expect(third.data!.requestOrganizationExport.dataExport.rowId).not.toBe(first.data!.requestOrganizationExport.dataExport.rowId);
    expect((await pool('owner').query('select status, failure_reason from app_public.data_exports where id = $1', [first.data!.requestOrganizationExport.dataExport.rowId])).rows[0])
      .toEqual({ status: 'failed', failure_reason: 'It did not finish within a day.' });
  });

  test('another organization\'s export is invisible, and its job cannot be pointed at it; members do not see exports', async () => {
    const { row } = await exported(a);
    expect(await read(b, 'owner', a.orgId, row.rowId)).toBeNull();
    expect(await read(a, 'member', a.orgId, row.rowId)).toBeNull();
    expect(await read(a, 'admin', a.orgId, row.rowId)).toMatchObject({ rowId: row.rowId, status: 'ready' });
    const seen = await asVisitor(sessionOf(b.owner, b.orgId), async (c) => (await c.query('select id from app_public.data_exports where organization_id = $1', [a.orgId])).rows);
    expect(seen).toEqual([]);
    // A job in b's name for a's export does nothing to it.
    const other = await request(a, 'owner');
    const id = other.data!.requestOrganizationExport.dataExport.rowId;
    await dataExport({ storage: store })({ organization_id: b.orgId, export_id: id }, helpersFor());
    expect((await read(a, 'owner', a.orgId, id))!.status).toBe('requested');
    await dataExport({ storage: store })({ organization_id: a.orgId, export_id: id }, helpersFor());
  });
});

describe('expiry', () => {
  test('the link is given only until expiresAt; the expiry job deletes the zip and marks the export expired', async () => {
    const { row } = await exported(a);
    const key = `exports/${a.orgId}/${row.rowId}.zip`;
    expect(await store.head(key)).not.toBeNull();
    // Not yet due: nothing happens.
    await dataExportExpire({ storage: store })({ organization_id: a.orgId, export_id: row.rowId }, helpersFor());
    expect((await read(a, 'owner', a.orgId, row.rowId))!.status).toBe('ready');
    await pool('owner').query(`update app_public.data_exports set expires_at = now() - interval '1 second' where id = $1`, [row.rowId]);
    expect((await read(a, 'owner', a.orgId, row.rowId))!.downloadUrl).toBeNull();
    await dataExportExpire({ storage: store })({ organization_id: a.orgId, export_id: row.rowId }, helpersFor());
    expect((await read(a, 'owner', a.orgId, row.rowId))!).toMatchObject({ status: 'expired', downloadUrl: null });
    expect(await store.head(key)).toBeNull();
  });

  test('an export that fails on its last attempt is marked failed with the reason', async () => {
    const res = await request(b, 'owner');
    const id = res.data!.requestOrganizationExport.dataExport.rowId;
    const broken: FileStorage = { ...store, putFile: async () => { throw new Error('store down'); } };
    await expect(dataExport({ storage: broken })({ organization_id: b.orgId, export_id: id }, helpersFor(1, 5))).rejects.toThrow('store down');
    expect((await pool('owner').query('select status from app_public.data_exports where id = $1', [id])).rows[0].status).toBe('running');
    await expect(dataExport({ storage: broken })({ organization_id: b.orgId, export_id: id }, helpersFor(5, 5))).rejects.toThrow('store down');
    expect((await pool('owner').query('select status, failure_reason from app_public.data_exports where id = $1', [id])).rows[0]).toEqual({ status: 'failed', failure_reason: 'store down' });
  });
});

// Exports of one person ------------------------------------------------------------------------

/** Runs the data_export job of `id` (of `orgId`), then downloads the zip as `reader` would. */
async function made(orgId: string, id: string, reader: User): Promise<{ row: ExportRow; manifest: ExportManifest; files: Record<string, Uint8Array>; text: string }> {
  const [job] = await jobsOf('data_export', id);
  expect(job.payload).toEqual({ organization_id: orgId, export_id: id });
  await dataExport({ storage: store, pageRows: 3 })(job.payload, helpersFor());
  const res = await gql<{ dataExport: ExportRow }>(app.url!, `query($o: UUID!, $id: UUID!) { dataExport(organizationId: $o, rowId: $id) { ${EXPORT_FIELDS} } }`, { o: orgId, id }, await tokenFor(reader, orgId));
  expect(res.errors).toBeUndefined();
  const row = res.data!.dataExport;
  expect(row.status).toBe('ready');
  const download = await fetch(row.downloadUrl!);
  expect(download.status).toBe(200);
  const files = unzipSync(Buffer.from(await download.arrayBuffer()));
  const manifest = JSON.parse(strFromU8(files['manifest.json'])) as ExportManifest;
  return { row, manifest, files, text: Object.values(files).map((f) => strFromU8(f)).join('\n') };
}
const rowsIn = <T = Record<string, unknown>>(files: Record<string, Uint8Array>, table: string): T[] =>
  (files[`${table}.json`] ? JSON.parse(strFromU8(files[`${table}.json`])) : []) as T[];

/** Every secret of the database's accounts, sessions, invitations, portal access and webhooks. */
async function allSecrets(): Promise<string[]> {
  const { rows } = await pool('owner').query<{ value: string }>(
    `select password_hash as value from app_private.user_secrets where password_hash is not null
     union all select secret from app_private.webhook_secrets
     union all select encode(token_hash, 'hex') from app_private.invitation_secrets
     union all select encode(token_hash, 'hex') from app_private.portal_access_secrets
     union all select encode(refresh_token_hash, 'hex') from app_private.sessions`);
  return rows.map((r) => r.value);
}

async function exportContactAs(tenant: Tenant, who: User, contactId: string) {
  return gql<{ exportContact: { dataExport: ExportRow } }>(
    app.url!, 'mutation($id: UUID!) { exportContact(input: { contactId: $id }) { dataExport { rowId status } } }', { id: contactId }, await tokenFor(who, tenant.orgId));
}

describe('an export of one contact', () => {
  let got: Awaited<ReturnType<typeof made>>;
  let mentionTaskId: string;
  let portalMessageId: string;
  let otherContactEmail: string;
  beforeAll(async () => {
    const contactEmail = (await pool('owner').query<{ email: string }>('select email from app_public.contacts where id = $1', [a.contactId])).rows[0].email;
    ({ id: mentionTaskId } = await commitAs(sessionOf(a.owner, a.orgId), (c) =>
      one<{ id: string }>(c, `update app_public.tasks set description = 'Send the draft to ' || $2 where id = $1 returning id`, [a.taskId, contactEmail])));
    ({ id: portalMessageId } = await commitAs(sessionOf(a.portal, a.orgId), (c) =>
      one<{ id: string }>(c, `insert into app_public.messages (thread_id, body) values ($1, 'Looks good to us') returning id`, [a.clientThreadId])));
    // Another contact of the same client: not theirs.
    otherContactEmail = `other-${Date.now()}@example.com`;
    await commitAs(sessionOf(a.owner, a.orgId), (c) => c.query(`insert into app_public.contacts (client_company_id, first_name, last_name, email) values ($1, 'Otto', 'Other', $2)`, [a.clientId, otherContactEmail]));
    const res = await exportContactAs(a, a.admin, a.contactId);
    expect(res.errors).toBeUndefined();
    got = await made(a.orgId, res.data!.exportContact.dataExport.rowId, a.admin);
  }, 120_000);

  test('holds the contact, the rows that reference or mention it, what its portal account wrote, and the events of all of them', () => {
    expect(got.manifest).toMatchObject({ kind: 'contact', subjectId: a.contactId, organizationId: a.orgId });
    expect(rowsIn<{ id: string }>(got.files, 'contacts').map((r) => r.id)).toEqual([a.contactId]);
    expect(rowsIn<{ contact_id: string }>(got.files, 'client_portal_access').map((r) => r.contact_id)).toEqual([a.contactId]);
    expect(rowsIn<{ id: string }>(got.files, 'users').map((r) => r.id)).toEqual([a.portal.userId]);
    expect(rowsIn<{ id: string }>(got.files, 'tasks').map((r) => r.id)).toEqual([mentionTaskId]);
    // Rows of other tables only where they name the contact (a signer's name, a recipient).
    const contact = rowsIn<{ email: string; phone: string | null; first_name: string; last_name: string | null }>(got.files, 'contacts')[0];
    const named = new RegExp([contact.email, contact.phone, `${contact.first_name} ${contact.last_name ?? ''}`.trim()].filter((v): v is string => !!v).map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'i');
    for (const t of got.manifest.tables.filter((x) => !['contacts', 'client_portal_access', 'users', 'messages', 'activity_events'].includes(x.name))) {
      for (const r of rowsIn(got.files, t.name)) expect([t.name, named.test(JSON.stringify(r))]).toEqual([t.name, true]);
    }
    expect(rowsIn<{ id: string }>(got.files, 'messages').map((r) => r.id)).toEqual([portalMessageId]);
    const events = rowsIn<{ table_name: string; record_id: string }>(got.files, 'activity_events');
    for (const [table, id] of [['contacts', a.contactId], ['tasks', mentionTaskId], ['messages', portalMessageId]]) {
      expect(events.some((e) => e.table_name === table && e.record_id === id)).toBe(true);
    }
    // Only events of those rows, or holding the contact's values.
    const mine = new Set(got.manifest.tables.filter((t) => t.name !== 'activity_events').flatMap((t) => rowsIn<{ id: string }>(got.files, t.name).map((r) => r.id)));
    const contactEmail = rowsIn<{ email: string }>(got.files, 'contacts')[0].email;
    expect(events.filter((e) => !mine.has(e.record_id) && !JSON.stringify(e).includes(contactEmail))).toEqual([]);
    for (const t of got.manifest.tables) {
      expect(strFromU8(got.files[`${t.name}.csv`]).split('\r\n').filter(Boolean).length).toBeGreaterThanOrEqual(t.rows + 1);
    }
    expect(got.row.rowCounts).toEqual(Object.fromEntries(got.manifest.tables.map((t) => [t.name, t.rows])));
  });

  test('holds nothing of another contact, another tenant, or any secret', async () => {
    expect(got.text.includes(otherContactEmail)).toBe(false);
    expect(got.text.includes(b.orgId)).toBe(false);
    expect(got.text.includes(b.contactId)).toBe(false);
    for (const secret of await allSecrets()) expect(got.text.includes(secret)).toBe(false);
    expect(got.text).not.toMatch(/\$2[aby]\$/);
    for (const t of got.manifest.tables) expect(t.columns.filter((c) => /password|secret|token|hash/.test(c))).toEqual([]);
  });

  test('emails the requester a link to the app, naming no one', async () => {
    const [email] = await jobsOf('send_email', got.row.rowId);
    expect(email.payload).toMatchObject({ template: 'data_export_ready', to: a.admin.email, data: { export_id: got.row.rowId, contents: 'everything it holds about one of its client contacts' } });
    const contact = rowsIn<{ email: string; first_name: string }>(got.files, 'contacts')[0];
    expect(JSON.stringify(email.payload)).not.toContain(contact.email);
    expect(JSON.stringify(email.payload)).not.toMatch(/https?:|token|signature/i);
  });

  test('owners and admins only (NOT_PERMITTED for members, viewers and a clerk who reads clients); another organization\'s contact answers as a random id', async () => {
    for (const who of [a.member, a.viewer, a.clerk]) expect(errorCode(await exportContactAs(a, who, a.contactId))).toBe('NOT_PERMITTED');
    const theirs = await exportContactAs(a, a.owner, b.contactId);
    const random = await exportContactAs(a, a.owner, randomUUID());
    expect(errorCode(theirs)).toBe('NOT_FOUND');
    expect({ code: errorCode(theirs), message: theirs.errors![0].message }).toEqual({ code: errorCode(random), message: random.errors![0].message });
    // Nothing was added for them.
    expect((await pool('owner').query('select 1 from app_public.data_exports where subject_id = $1', [b.contactId])).rows).toEqual([]);
  });
});

async function exportUserAs(tenant: Tenant, who: User) {
  return gql<{ exportUser: { dataExport: ExportRow } }>(app.url!, 'mutation { exportUser(input: {}) { dataExport { rowId status } } }', {}, await tokenFor(who, tenant.orgId));
}

describe('an export of one\'s own data', () => {
  let got: Awaited<ReturnType<typeof made>>;
  let dealId: string;
  beforeAll(async () => {
    // The member changes a record of the organization: their event, whose values are the firm's.
    ({ id: dealId } = await commitAs(sessionOf(a.member, a.orgId), (c) =>
      one<{ id: string }>(c, `insert into app_public.deals (client_company_id, title) values ($1, 'Confidential pipeline deal') returning id`, [a.clientId])));
    const res = await exportUserAs(a, a.member);
    expect(res.errors).toBeUndefined();
    got = await made(a.orgId, res.data!.exportUser.dataExport.rowId, a.member);
  }, 120_000);

  test('holds the account, its sessions and memberships, the member row, and the events they authored (values only of their own rows)', async () => {
    expect(got.manifest).toMatchObject({ kind: 'user', subjectId: a.member.userId, organizationId: a.orgId });
    expect(rowsIn(got.files, 'users')).toEqual([expect.objectContaining({ id: a.member.userId, email: a.member.email })]);
    expect(Object.keys(rowsIn(got.files, 'users')[0]).sort()).toEqual(['created_at', 'email', 'id', 'name', 'updated_at']);
    const { rows: sessions } = await pool('owner').query<{ id: string }>('select id from app_private.sessions where user_id = $1 order by id', [a.member.userId]);
    expect(rowsIn<{ id: string }>(got.files, 'sessions').map((r) => r.id)).toEqual(sessions.map((r) => r.id));
    expect(Object.keys(rowsIn(got.files, 'sessions')[0])).not.toContain('refresh_token_hash');
    expect(rowsIn(got.files, 'memberships')).toEqual([expect.objectContaining({ organization_id: a.orgId, role: 'member' })]);
    const memberRows = rowsIn<{ user_id: string; id: string }>(got.files, 'organization_members');
    expect(memberRows.map((r) => r.user_id)).toEqual([a.member.userId]);
    const events = rowsIn<{ actor_id: string | null; table_name: string; record_id: string; new_values: unknown }>(got.files, 'activity_events');
    const dealEvent = events.find((e) => e.table_name === 'deals' && e.record_id === dealId);
    expect(dealEvent).toMatchObject({ actor_id: a.member.userId, new_values: null });
    expect(got.text.includes('Confidential pipeline deal')).toBe(false);
    expect(events.filter((e) => e.actor_id !== a.member.userId && !memberRows.some((m) => m.id === e.record_id) && e.table_name !== 'role_assignments' && e.table_name !== 'time_entries')).toEqual([]);
    expect(events.some((e) => e.table_name === 'organization_members' && e.record_id === memberRows[0].id && e.new_values !== null)).toBe(true);
  });

  test('holds no secret, no other member and nothing of another tenant', async () => {
    for (const secret of await allSecrets()) expect(got.text.includes(secret)).toBe(false);
    expect(got.text).not.toMatch(/\$2[aby]\$/);
    for (const other of [a.owner, a.admin, a.viewer, a.portal]) expect(got.text.includes(other.email)).toBe(false);
    expect(got.text.includes(b.orgId)).toBe(false);
  });

  test('everyone may export their own data and reads only their own exports; it needs an organization', async () => {
    const viewers = await exportUserAs(a, a.viewer);
    expect(viewers.errors).toBeUndefined();
    const id = viewers.data!.exportUser.dataExport.rowId;
    expect(await read(a, 'member', a.orgId, id)).toBeNull(); // a member does not see the viewer's
    expect(await read(a, 'member', a.orgId, got.row.rowId)).toMatchObject({ rowId: got.row.rowId });
    expect(await read(a, 'owner', a.orgId, id)).toMatchObject({ rowId: id }); // owners and admins see every export
    expect(await read(b, 'owner', a.orgId, id)).toBeNull();
    expect(errorCode(await gql(app.url!, 'mutation { exportUser(input: {}) { dataExport { rowId } } }', {}, await tokenFor(a.member, null)))).toBe('NO_ORGANIZATION');
    // Its job, in another organization's name, does nothing.
    await dataExport({ storage: store })({ organization_id: b.orgId, export_id: id }, helpersFor());
    expect((await read(a, 'owner', a.orgId, id))!.status).toBe('requested');
  });
});

// The final export of a deleted organization --------------------------------------------------

describe('the final export of a deleted organization', () => {
  test('deleteOrganization queues it for the owner; it outlives the purge until 30 days after, downloadable by that owner only, then its zip goes', async () => {
    const doomed = await oneTenant('final');
    const slug = (await pool('owner').query<{ slug: string }>('select slug from app_public.organizations where id = $1', [doomed.orgId])).rows[0].slug;
    expect((await pgError(commitAs(sessionOf(doomed.admin, doomed.orgId), (c) => c.query('select app_public.delete_organization($1)', [slug])))).code).toBeDefined();
    const org = await commitAs(sessionOf(doomed.owner, doomed.orgId), (c) => one<{ deletion_due_at: Date }>(c, 'select deletion_due_at from app_public.delete_organization($1)', [slug]));
    const { rows: [final] } = await pool('owner').query<{ id: string; requested_by: string; status: string }>(
      `select id, requested_by, status from app_public.data_exports where organization_id = $1 and final`, [doomed.orgId]);
    expect(final).toMatchObject({ requested_by: doomed.owner.userId, status: 'requested' });
    const { row, manifest } = await made(doomed.orgId, final.id, doomed.owner);
    expect(manifest.kind).toBe('organization');
    // Downloadable through the grace period and 30 days after the purge.
    const keep = new Date(org.deletion_due_at.getTime() + 30 * 86_400_000);
    expect(new Date(row.expiresAt!).getTime()).toBe(keep.getTime());
    const [email] = await jobsOf('send_email', final.id);
    expect(email.payload).toMatchObject({ to: doomed.owner.email, data: { contents: 'all of its data, made because its deletion was requested' } });

    await pool('owner').query(`update app_public.organizations set deletion_due_at = now() - interval '1 second' where id = $1`, [doomed.orgId]);
    await asWorkerCommitted(doomed.orgId, (c) => c.query('select app_private.purge_organization()'));
    expect((await pool('owner').query('select 1 from app_public.organizations where id = $1', [doomed.orgId])).rows).toEqual([]);
    const key = `exports/${doomed.orgId}/${final.id}.zip`;
    expect(await store.head(key)).not.toBeNull();
    // Its zip is deleted when it expires, not before.
    const { rows: jobs } = await pool('owner').query<{ run_at: Date }>(`select run_at from graphile_worker.jobs where key = $1`, [`data_export_delete_object:${final.id}`]);
    expect(jobs.map((j) => j.run_at.getTime())).toEqual([keep.getTime()]);
    await dataExportDeleteObject({ storage: store })({ organization_id: doomed.orgId, export_id: final.id }, helpersFor());

    const mine = async (user: User) => gql<{ myFinalExports: { nodes: Array<{ exportId: string; expiresAt: string; downloadUrl: string }> } }>(
      app.url!, '{ myFinalExports { nodes { exportId expiresAt downloadUrl } } }', {}, await tokenFor(user, null));
    // (A delete job run early, by mistake or by a retry, deletes nothing before expiry.)
    expect(await store.head(key)).not.toBeNull();
    const listed = await mine(doomed.owner);
    expect(listed.errors).toBeUndefined();
    expect(listed.data!.myFinalExports.nodes.map((n) => n.exportId)).toEqual([final.id]);
    const download = await fetch(listed.data!.myFinalExports.nodes[0].downloadUrl);
    expect(download.status).toBe(200);
    expect(JSON.parse(strFromU8(unzipSync(Buffer.from(await download.arrayBuffer()))['manifest.json'])).exportId).toBe(final.id);
    for (const other of [doomed.admin, a.owner]) expect((await mine(other)).data!.myFinalExports.nodes).toEqual([]);

    // Expired: the job deletes the zip and forgets the export.
    await pool('owner').query(`update app_private.kept_exports set expires_at = now() - interval '1 second' where export_id = $1`, [final.id]);
    expect((await mine(doomed.owner)).data!.myFinalExports.nodes).toEqual([]);
    await dataExportDeleteObject({ storage: store })({ organization_id: doomed.orgId, export_id: final.id }, helpersFor());
    expect(await store.head(key)).toBeNull();
    expect((await pool('owner').query('select 1 from app_private.kept_exports where export_id = $1', [final.id])).rows).toEqual([]);
  }, 180_000);

  test('cancelling the deletion makes the final export an ordinary one, expiring validDays after it was made', async () => {
    const kept = await oneTenant('regret');
    const slug = (await pool('owner').query<{ slug: string }>('select slug from app_public.organizations where id = $1', [kept.orgId])).rows[0].slug;
    await commitAs(sessionOf(kept.owner, kept.orgId), (c) => c.query('select app_public.delete_organization($1)', [slug]));
    const { rows: [final] } = await pool('owner').query<{ id: string }>('select id from app_public.data_exports where organization_id = $1 and final', [kept.orgId]);
    const { row } = await made(kept.orgId, final.id, kept.owner);
    expect(new Date(row.expiresAt!).getTime() - Date.now()).toBeGreaterThan(59 * 86_400_000);
    await commitAs(sessionOf(kept.owner, kept.orgId), (c) => c.query('select app_public.cancel_organization_deletion()'));
    const { rows: [after] } = await pool('owner').query<{ final: boolean; expires_at: Date; ready_at: Date }>('select final, expires_at, ready_at from app_public.data_exports where id = $1', [final.id]);
    expect(after.final).toBe(false);
    expect(after.expires_at.getTime() - after.ready_at.getTime()).toBe(30 * 86_400_000);
    const [expiry] = await jobsOf('data_export_expire', final.id);
    expect(expiry.run_at.getTime()).toBe(after.expires_at.getTime());
  }, 180_000);
});
