// Erasure of a contact (sql/functions/erasure.sql): after eraseContact and its job, the contact's
// email addresses (the current one and an earlier one), phone and full name are nowhere in the
// database (every text, json and jsonb column of every table, the activity log and the job queue
// included), the ledger keeps its amounts and references, the erasure itself is on record without
// the data, and the activity log stays closed to every other change.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { startWorker } from '../src/worker/index.ts';
import { addMember, asVisitor, closePools, inTransaction, pgError, pool, sessionOf, signUp, urlFor } from './support/db.ts';
import { approveTime, commitAs, one, signedEngagement, twoTenants, type Tenant } from './support/fixtures.ts';
import { testLogger } from './support/log.ts';

let a: Tenant;
let b: Tenant;
const tag = randomBytes(4).toString('hex');
const person = {
  oldEmail: `ingrid.old.${tag}@example.com`,
  email: `ingrid.${tag}@example.com`,
  phone: `+44 20 7946 ${tag.slice(0, 4)}`,
  fullName: `Ingrid Erasmus${tag}`,
};
const needles = Object.values(person);
let contactId: string;
let invoiceId: string;
let invoiceTotal: string;
let erasureId: string;
let readyExportId: string;
let portalUploadId: string;
let memberUploadId: string;

/** Every (schema.table.column, rows) where `needle` occurs in a text-like, json or jsonb column of any table. */
async function whereIs(needle: string): Promise<string[]> {
  const su = pool('superuser');
  const { rows: columns } = await su.query<{ tbl: string; col: string }>(
    `select format('%I.%I', n.nspname, c.relname) as tbl, a.attname as col
     from pg_class c
     join pg_namespace n on n.oid = c.relnamespace
     join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
     join pg_type t on t.oid = a.atttypid
     left join pg_type element on element.oid = t.typelem and t.typcategory = 'A'
     -- (Partitions are read through their parent: one that another test file drops meanwhile,
     -- such as a month of the activity log, is not read on its own.)
     where c.relkind in ('r', 'p', 'm') and not c.relispartition and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
       and (coalesce(element.typcategory, t.typcategory) = 'S' or a.atttypid in ('json'::regtype, 'jsonb'::regtype))`,
  );
  const found: string[] = [];
  for (const { tbl, col } of columns) {
    const { rows } = await su.query<{ n: number }>(`select count(*)::int as n from ${tbl} where "${col}"::text ilike '%' || $1 || '%'`, [needle]);
    if (rows[0].n) found.push(`${tbl}.${col}`);
  }
  return found;
}

beforeAll(async () => {
  ({ a, b } = await twoTenants());
  const own = sessionOf(a.owner, a.orgId);
  let engagementId: string;
  ({ contactId, invoiceId, engagementId } = await commitAs(own, async (c) => {
    const e = await signedEngagement(c, 'erasure');
    const [first, last] = person.fullName.split(' ');
    await c.query('update app_public.contacts set first_name = $2, last_name = $3, email = $4, phone = $5, job_title = $6 where id = $1',
      [e.contactId, first, last, person.oldEmail, person.phone, 'Head of Marketing']);
    await c.query('update app_public.contacts set email = $2 where id = $1', [e.contactId, person.email]);
    // Her data in the firm's own text: a task title and a time entry (then invoiced and sent: locked),
    // the client's notes (masked in the log), a message, a proposal emailed to her.
    const project = await one<{ id: string }>(c, `insert into app_public.projects (engagement_id, name) values ($1, 'Launch') returning id`, [e.engagementId]);
    const task = await one<{ id: string }>(c, 'insert into app_public.tasks (project_id, title, description) values ($1, $2, $3) returning id',
      [project.id, `Workshop with ${person.fullName}`, `Send the agenda to ${person.email}`]);
    const member = await one<{ id: string }>(c, 'select id from app_public.organization_members where user_id = $1', [a.owner.userId]);
    await c.query(`insert into app_public.time_entries (engagement_id, task_id, member_id, work_date, minutes, description) values ($1, $2, $3, '2026-02-02', 120, $4)`,
      [e.engagementId, task.id, member.id, `Call with ${person.fullName} (${person.phone})`]);
    await approveTime(c, e.engagementId);
    const invoice = await one<{ id: string }>(c, 'select id from app_public.create_invoice_from_time($1)', [e.engagementId]);
    await c.query('select app_public.send_invoice($1)', [invoice.id]);
    await c.query('update app_public.client_companies set notes = $2 where id = $1', [e.clientId, `Ask for ${person.fullName}, mobile ${person.phone}`]);
    const thread = await one<{ id: string }>(c, `insert into app_public.threads (engagement_id, subject) values ($1, 'Kick-off') returning id`, [e.engagementId]);
    await c.query('insert into app_public.messages (thread_id, body) values ($1, $2)', [thread.id, `Reached ${person.fullName} at ${person.email}`]);
    const proposal = await one<{ id: string }>(c, `insert into app_public.proposals (client_company_id, title) values ($1, 'Phase two') returning id`, [e.clientId]);
    await c.query(`insert into app_public.proposal_line_items (proposal_id, description, quantity, unit_price) values ($1, 'Design', 1, 900)`, [proposal.id]);
    await c.query('select app_public.send_proposal($1)', [proposal.id]);
    return { contactId: e.contactId, invoiceId: invoice.id, engagementId: e.engagementId };
  }));
  // A file she uploaded through the client portal, and one a member uploaded beside it. (Her portal
  // access is written directly: accepting an invitation needs an account under her email, and that
  // account is hers, not the firm's to erase.)
  const uploader = await signUp('erasure-portal');
  await pool('owner').query(
    'insert into app_public.client_portal_access (organization_id, contact_id, engagement_id, user_id, accepted_at) values ($1, $2, $3, $4, now())',
    [a.orgId, contactId, engagementId, uploader.userId],
  );
  const upload = (user: Tenant['owner'], name: string) =>
    commitAs(sessionOf(user, a.orgId), async (c) => {
      const file = await one<{ id: string }>(c, `select (app_public.request_file_upload($1, 'application/pdf', 1024, engagement_id => $2, client_visible => true)).id`, [name, engagementId]);
      await c.query('select app_private.complete_file_upload($1)', [file.id]);
      return file.id;
    });
  portalUploadId = await upload(uploader, 'signed-brief.pdf');
  memberUploadId = await upload(a.owner, 'moodboard.pdf');
  // A webhook delivery that copied her data (as one made from an event before she was erased).
  await pool('owner').query(
    `insert into app_public.webhook_deliveries (organization_id, endpoint_id, event_type, payload, source_table, status, last_error)
     select organization_id, id, 'client_company.created', jsonb_build_object('data', jsonb_build_object('contact', $2::text)), 'client_companies', 'failed', $3
     from app_public.webhook_endpoints where organization_id = $1 limit 1`,
    [a.orgId, person.email, `530 mailbox ${person.email} unavailable`],
  );
  invoiceTotal = (await pool('owner').query<{ total: string }>('select total::text from app_public.invoices where id = $1', [invoiceId])).rows[0].total;
  // An export made before the erasure (it holds her data): ready, a week to go.
  readyExportId = (await pool('owner').query<{ id: string }>(
    `insert into app_public.data_exports (organization_id, id, status, storage_key, requested_by, started_at, ready_at, expires_at, byte_size, row_counts)
     select $1::uuid, x.id, 'ready', format('exports/%s/%s.zip', $1::uuid, x.id), $2, now(), now(), now() + interval '7 days', 1, '{}'
     from (select gen_random_uuid() as id) x returning id`,
    [a.orgId, a.owner.userId],
  )).rows[0].id;
}, 60_000);
afterAll(closePools);

/** Runs a worker until `done()` holds (at most 60 s). */
async function workUntil(done: () => Promise<boolean>): Promise<void> {
  const worker = await startWorker({ connectionString: urlFor('worker'), concurrency: 1, log: testLogger('test-worker'), crontab: false, onlyTasks: ['erase_personal_data', 'erase_account'] });
  try {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !(await done())) await sleep(200);
  } finally {
    await worker.stop();
  }
}

const eraseAs = (user: Tenant['owner'], orgId: string, id: string) =>
  commitAs(sessionOf(user, orgId), (c) => one<{ id: string; status: string; scope: string; subject_id: string }>(c, 'select * from app_public.erase_contact($1)', [id]));
const erasureRow = async (id: string) => (await pool('owner').query('select * from app_public.erasures where id = $1', [id])).rows[0];

describe('eraseContact', () => {
  test('before: her data is in live rows, the activity log and the job queue (the scan finds it)', async () => {
    const email = await whereIs(person.email);
    expect(email).toEqual(expect.arrayContaining(['app_public.contacts.email', 'app_public.activity_events.new_values', 'app_public.tasks.description', 'app_public.messages.body', 'app_public.webhook_deliveries.payload']));
    // the proposal's email to her: queued, or already sent by another test's worker
    expect(email.some((place) => place === 'graphile_worker._private_jobs.payload' || place === 'app_private.email_messages.recipient')).toBe(true);
    expect(await whereIs(person.oldEmail)).toContain('app_public.activity_events.old_values');
    expect(await whereIs(person.fullName)).toEqual(expect.arrayContaining(['app_public.invoice_line_items.description', 'app_public.time_entries.description']));
  });

  test('only an owner may erase (NOT_PERMITTED), another organization\'s contact is NOT_FOUND like a random id', async () => {
    for (const user of [a.admin, a.member, a.clerk]) expect((await pgError(eraseAs(user, a.orgId, contactId))).code).toBe('AT403');
    const theirs = await pgError(eraseAs(b.owner, b.orgId, contactId));
    const random = await pgError(eraseAs(b.owner, b.orgId, '00000000-0000-4000-8000-000000000000'));
    expect(theirs).toEqual(random);
    expect(theirs.code).toBe('AT404');
  });

  test('the job erases her everywhere: no email (old or new), phone or full name left in any column of any table', async () => {
    // An email to her that a worker has already taken (locked, not yet sent).
    const heldKey = `held:${tag}`;
    await pool('owner').query(`select app_private.enqueue_email('proposal_sent', $1, '{}', $2, $3)`, [person.email, heldKey, a.orgId]);
    await pool('owner').query(`update graphile_worker._private_jobs set locked_at = now(), locked_by = 'a-worker-elsewhere' where key = $1`, [`send_email:${heldKey}`]);

    const erasure = await eraseAs(a.owner, a.orgId, contactId);
    expect(erasure).toMatchObject({ scope: 'contact', subject_id: contactId, status: 'pending' });
    expect((await eraseAs(a.owner, a.orgId, contactId)).id).toBe(erasure.id); // asked twice: one erasure
    erasureId = erasure.id;

    await workUntil(async () => (await erasureRow(erasure.id)).status === 'done');
    const done = await erasureRow(erasure.id);
    expect(done).toMatchObject({ status: 'done', requested_by: a.owner.userId });
    expect(done.redacted).toMatchObject({ contacts: 1, activity_events: expect.any(Number), tasks: 1, time_entries: 1, invoice_line_items: 1, webhook_deliveries: 1 });
    // the proposal's email: still queued (the job is removed) or already sent (its record redacted)
    expect((done.redacted.jobs ?? 0) + (done.redacted.email_messages ?? 0)).toBeGreaterThanOrEqual(1);

    for (const needle of needles) expect({ needle, found: await whereIs(needle) }).toEqual({ needle, found: [] });
    // The worker holding that email finds it gone out already: it is never sent.
    expect((await pool('owner').query('select 1 from graphile_worker._private_jobs where key = $1', [`send_email:${heldKey}`])).rows).toEqual([]);
    const claimed = await inTransaction('worker', { 'app.org_id': a.orgId }, async (c) => (await c.query(`select app_private.claim_email($1, 'proposal_sent', $2) as attempt`, [heldKey, person.email])).rows[0].attempt, false);
    expect(claimed).toBeNull();
    // The export made before expires now: its zip is deleted by data_export_expire (queued, or run by a worker with a file store).
    const exported = (await pool('owner').query<{ due: boolean; status: string }>('select expires_at <= now() as due, status from app_public.data_exports where id = $1', [readyExportId])).rows[0];
    expect(exported.due).toBe(true);
    const expiry = (await pool('owner').query(`select 1 from graphile_worker._private_jobs where key = $1 and run_at <= now()`, [`data_export_expire:${readyExportId}`])).rows;
    expect(expiry.length === 1 || exported.status === 'expired').toBe(true);
    const contact = (await pool('owner').query('select first_name, last_name, email, phone, job_title from app_public.contacts where id = $1', [contactId])).rows[0];
    expect(contact).toEqual({ first_name: 'Erased', last_name: 'contact', email: null, phone: null, job_title: null });
    // Her record's events lost even the short values (a first name alone, a job title).
    const { rows: events } = await pool('owner').query(`select new_values from app_public.activity_events where table_name = 'contacts' and record_id = $1 and action = 'insert'`, [contactId]);
    expect(events[0].new_values).toMatchObject({ first_name: '[erased]', job_title: null });
    const { rows: titled } = await pool('owner').query(`select 1 from app_public.activity_events where record_id = $1 and (new_values::text like '%Head of Marketing%' or old_values::text like '%Head of Marketing%')`, [contactId]);
    expect(titled).toEqual([]);
    // Her portal upload is gone, its stored object queued for deletion; the member's file stays.
    expect(done.redacted.file_objects).toBeGreaterThanOrEqual(1);
    const files = (await pool('owner').query('select id from app_public.file_objects where id = any($1)', [[portalUploadId, memberUploadId]])).rows;
    expect(files).toEqual([{ id: memberUploadId }]);
    const objectJob = (await pool('owner').query(`select payload from graphile_worker._private_jobs where key = $1`, [`file_delete_object:${portalUploadId}`])).rows;
    expect(objectJob).toEqual([{ payload: { organization_id: a.orgId, file_id: portalUploadId, storage_key: `org/${a.orgId}/${portalUploadId}` } }]);
  }, 90_000);

  test('the ledger keeps its amounts and references; the erasure is on record, for admins and owners', async () => {
    const invoice = (await pool('owner').query('select total::text, status, client_company_id from app_public.invoices where id = $1', [invoiceId])).rows[0];
    expect(invoice).toMatchObject({ total: invoiceTotal, status: 'sent' });
    const lines = (await pool('owner').query('select description from app_public.invoice_line_items where invoice_id = $1', [invoiceId])).rows;
    expect(lines[0].description).toMatch(/^Workshop with \[erased\]/);

    const read = (user: Tenant['owner']) => asVisitor(sessionOf(user, a.orgId), async (c) => (await c.query(`select scope, subject_id, status from app_public.erasures where subject_id = $1`, [contactId])).rows);
    expect(await read(a.owner)).toEqual([{ scope: 'contact', subject_id: contactId, status: 'done' }]);
    expect(await read(a.admin)).toEqual([{ scope: 'contact', subject_id: contactId, status: 'done' }]);
    expect(await read(a.member)).toEqual([]);
    const logged = (await pool('owner').query(`select action, actor_id from app_public.activity_events where table_name = 'erasures' and organization_id = $1 and record_id = $2 order by seq`, [a.orgId, erasureId])).rows;
    expect(logged).toEqual([{ action: 'insert', actor_id: a.owner.userId }, { action: 'update', actor_id: a.owner.userId }]);
  });
});

describe('eraseMember and deleteAccount', () => {
  test('an owner removes a member who leaves and erases their email and name from the organization; the account stays theirs', async () => {
    const leaver = await addMember(a.orgId, a.owner, 'member', `leaver-${tag}`);
    await commitAs(sessionOf(leaver, a.orgId), (c) => c.query(`insert into app_public.tasks (project_id, title, description) values ($1, 'Handover', $2)`, [a.projectId, `Questions to ${leaver.email} until Friday, ${leaver.name}`]));
    const memberId = (await pool('owner').query<{ id: string }>('select id from app_public.organization_members where organization_id = $1 and user_id = $2', [a.orgId, leaver.userId])).rows[0].id;
    expect(await whereIs(leaver.email)).toEqual(expect.arrayContaining(['app_public.invitations.email', 'app_public.tasks.description', 'app_public.activity_events.new_values']));

    const erase = (user: Tenant['owner'], id: string) => commitAs(sessionOf(user, a.orgId), (c) => one<{ id: string }>(c, 'select * from app_public.erase_member($1)', [id]));
    expect((await pgError(erase(a.admin, memberId))).code).toBe('AT403');
    const ownMembership = (await pool('owner').query<{ id: string }>('select id from app_public.organization_members where organization_id = $1 and user_id = $2', [a.orgId, a.owner.userId])).rows[0].id;
    expect((await pgError(erase(a.owner, ownMembership))).code).toBe('AT403');
    const erasure = await erase(a.owner, memberId);
    expect((await pool('owner').query('select 1 from app_public.organization_members where id = $1', [memberId])).rows).toEqual([]);

    await workUntil(async () => (await erasureRow(erasure.id)).status === 'done');
    expect(await whereIs(leaver.email)).toEqual(['app_public.users.email']);
    expect(await whereIs(leaver.name)).toEqual(['app_public.users.name']);
  }, 90_000);

  test('deleteAccount: the last owner is refused; anyone else leaves every organization, is signed out, and their email and name are gone from the whole database', async () => {
    expect((await pgError(commitAs(sessionOf(a.owner), (c) => c.query('select app_public.delete_account()')))).code).toBe('AT420'); // LAST_OWNER

    const quitter = await addMember(a.orgId, a.owner, 'admin', `quitter-${tag}`);
    const { rows: invite } = await asVisitor(sessionOf(b.owner, b.orgId), (c) => c.query('select token from app_public.invite_member($1, $2)', [quitter.email, 'member']), { commit: true });
    await commitAs(sessionOf(quitter), (c) => c.query('select app_public.accept_invitation($1)', [invite[0].token]));
    await commitAs(sessionOf(quitter, b.orgId), (c) => c.query(`insert into app_public.client_companies (name, website) values ($1, 'https://quitter.example')`, [`Referred by ${quitter.name}`]));

    expect((await commitAs(sessionOf(quitter, a.orgId), (c) => one<{ ok: boolean }>(c, 'select app_public.delete_account() as ok'))).ok).toBe(true);
    const su = pool('owner');
    expect((await su.query('select organization_id from app_public.organization_members where user_id = $1', [quitter.userId])).rows).toEqual([]);
    expect((await su.query('select 1 from app_private.sessions where user_id = $1 and revoked_at is null', [quitter.userId])).rows).toEqual([]);
    expect((await su.query('select 1 from app_private.user_secrets where user_id = $1', [quitter.userId])).rows).toEqual([]);
    const erasures = (await su.query<{ organization_id: string }>(`select organization_id from app_public.erasures where scope = 'user' and subject_id = $1 order by organization_id`, [quitter.userId])).rows;
    expect(erasures.map((e) => e.organization_id).sort()).toEqual([a.orgId, b.orgId].sort());

    await workUntil(async () => (await su.query(`select 1 from app_public.users where id = $1 and name = 'Erased user'`, [quitter.userId])).rows.length === 1);
    expect((await su.query(`select count(*)::int as n from app_public.erasures where subject_id = $1 and status = 'done'`, [quitter.userId])).rows[0].n).toBe(2);
    expect(await whereIs(quitter.email)).toEqual([]);
    expect(await whereIs(quitter.name)).toEqual([]);
  }, 120_000);
});

describe('the activity log stays append-only outside an erasure', () => {
  const someEvent = async () => (await pool('owner').query<{ id: string }>('select id from app_public.activity_events where organization_id = $1 limit 1', [a.orgId])).rows[0].id;

  test('the owner role cannot rewrite values, even with the erasure setting but no erasure running', async () => {
    const id = await someEvent();
    expect((await pgError(pool('owner').query(`update app_public.activity_events set new_values = '{}' where id = $1`, [id]))).code).toBe('42501');
    const client = await pool('owner').connect();
    try {
      await client.query('begin');
      await client.query(`select set_config('app.erasure', gen_random_uuid()::text, true)`);
      expect((await pgError(client.query(`update app_public.activity_events set new_values = '{}' where id = $1`, [id]))).code).toBe('42501');
      await client.query('rollback');
    } finally {
      client.release();
    }
  });

  test('an erasure\'s transaction may rewrite its own organization\'s values only, nothing else about an event', async () => {
    const client = await pool('owner').connect();
    const theirs = (await pool('owner').query<{ id: string }>('select id from app_public.activity_events where organization_id = $1 limit 1', [b.orgId])).rows[0].id;
    const mine = await someEvent();
    try {
      await client.query('begin');
      await client.query(`insert into app_private.erasure_transactions values (pg_current_xact_id()::text::bigint, $1, gen_random_uuid())`, [a.orgId]);
      await client.query(`select set_config('app.erasure', 'x', true)`);
      await client.query('savepoint s');
      expect((await pgError(client.query(`update app_public.activity_events set new_values = '{}' where id = $1`, [theirs]))).code).toBe('42501');
      await client.query('rollback to savepoint s');
      expect((await pgError(client.query(`update app_public.activity_events set action = 'update' where id = $1`, [mine]))).code).toBe('42501');
      await client.query('rollback to savepoint s');
      expect((await pgError(client.query(`delete from app_public.activity_events where id = $1`, [mine]))).code).toBe('42501');
      await client.query('rollback to savepoint s');
      await client.query(`update app_public.activity_events set new_values = '{}' where id = $1`, [mine]); // the door works
      await client.query('rollback');
    } finally {
      client.release();
    }
  });

  test('the roles the app uses cannot open the door: the visitor and the worker may not write erasure_transactions, and the visitor may not run an erasure', async () => {
    for (const role of ['authenticator', 'worker'] as const) {
      const error = await pgError(inTransaction(role, {}, (c) => c.query(`insert into app_private.erasure_transactions values (1, gen_random_uuid(), gen_random_uuid())`), false));
      expect(error.code).toBe('42501');
    }
    const visitor = await pgError(asVisitor(sessionOf(a.owner, a.orgId), (c) => c.query('select app_private.run_erasure(gen_random_uuid())')));
    expect(visitor.code).toBe('42501');
  });
});
