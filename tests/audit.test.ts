// Audit: every write to a tenant table yields exactly one activity_events row per changed row,
// with the right actor and organization; secrets are never copied; the log is immutable for
// every role the app uses; and each change enqueues its outbox job in the same transaction.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import pg from 'pg';
import { asVisitor, closePools, pgError, pool, roleName, sessionOf, signUp, createOrganization, addMember, urlFor, type User } from './support/db.ts';

let owner: User;
let viewer: User;
let orgId: string;

beforeAll(async () => {
  owner = await signUp('audit-owner');
  orgId = await createOrganization(owner, 'audit');
  viewer = await addMember(orgId, owner, 'viewer');
});
afterAll(closePools);

interface Event {
  organization_id: string;
  actor_id: string | null;
  action: string;
  table_name: string;
  record_id: string;
  old_values: Record<string, unknown> | null;
  new_values: Record<string, unknown> | null;
  transaction_id: string;
}

const eventsFor = async (recordId: string): Promise<Event[]> =>
  (await pool('owner').query<Event>('select * from app_public.activity_events where record_id = $1 order by occurred_at, action', [recordId])).rows;

describe('one event per change, with actor and organization', () => {
  test('insert, update, soft delete and restore of a client company', async () => {
    const session = sessionOf(owner, orgId);
    const id = await asVisitor(session, async (c) => (await c.query(`insert into app_public.client_companies (name) values ('Initech') returning id`)).rows[0].id as string, { commit: true });
    await asVisitor(session, (c) => c.query(`update app_public.client_companies set website = 'https://initech.example' where id = $1`, [id]), { commit: true });
    await asVisitor(session, (c) => c.query('select app_public.soft_delete_client_company($1)', [id]), { commit: true });
    await asVisitor(session, (c) => c.query('select app_public.restore_client_company($1)', [id]), { commit: true });

    const events = await eventsFor(id);
    expect(events.map((e) => e.action)).toEqual(['insert', 'update', 'soft_delete', 'restore']);
    for (const e of events) {
      expect(e).toMatchObject({ organization_id: orgId, actor_id: owner.userId, table_name: 'client_companies', record_id: id });
    }
    expect(events[0].old_values).toBeNull();
    expect(events[0].new_values).toMatchObject({ name: 'Initech', website: null });
    expect(events[1].old_values).toMatchObject({ website: null });
    expect(events[1].new_values).toMatchObject({ website: 'https://initech.example' });
    expect(events[2].new_values?.deleted_at).not.toBeNull();
    expect(events[3].new_values?.deleted_at).toBeNull();
    expect(new Set(events.map((e) => e.transaction_id)).size).toBe(4);
  });

  test('a hard delete records the row as it was', async () => {
    const session = sessionOf(owner, orgId);
    const { rows } = await asVisitor(session, (c) => c.query(`select invitation_id from app_public.invite_member('gone@example.com', 'member')`), { commit: true });
    const id = rows[0].invitation_id as string;
    await asVisitor(session, (c) => c.query('delete from app_public.invitations where id = $1', [id]), { commit: true });
    const events = await eventsFor(id);
    expect(events.map((e) => e.action)).toEqual(['insert', 'delete']);
    expect(events[1]).toMatchObject({ actor_id: owner.userId, organization_id: orgId, new_values: null });
    expect(events[1].old_values).toMatchObject({ email: 'gone@example.com', role: 'member' });
  });

  test('a statement changing three rows writes three events; an update that changes nothing writes none', async () => {
    const session = sessionOf(owner, orgId);
    const ids = await asVisitor(session, async (c) => (await c.query(`insert into app_public.client_companies (name) values ('A'), ('B'), ('C') returning id`)).rows.map((r) => r.id as string), { commit: true });
    await asVisitor(session, (c) => c.query(`update app_public.client_companies set notes = 'bulk' where id = any($1)`, [ids]), { commit: true });
    await asVisitor(session, (c) => c.query(`update app_public.client_companies set notes = notes where id = any($1)`, [ids]), { commit: true });
    for (const id of ids) expect((await eventsFor(id)).map((e) => e.action)).toEqual(['insert', 'update']);
  });

  test('membership changes are audited too, in the organization they belong to', async () => {
    const member = await addMember(orgId, owner, 'member', 'promoted');
    await asVisitor(sessionOf(owner, orgId), (c) => c.query(`update app_public.organization_members set role = 'admin' where user_id = $1`, [member.userId]), { commit: true });
    const { rows } = await pool('owner').query<Event>(
      `select * from app_public.activity_events where table_name = 'organization_members' and new_values ->> 'user_id' = $1 order by occurred_at`,
      [member.userId],
    );
    expect(rows.map((e) => [e.action, e.new_values?.role, e.organization_id])).toEqual([
      ['insert', 'member', orgId],
      ['update', 'admin', orgId],
    ]);
    expect(rows[0].actor_id).toBe(member.userId); // the invitee joined by accepting
    expect(rows[1].actor_id).toBe(owner.userId);
  });
});

/** In a rolled-back transaction of the owner: an audited table app_public.audit_probe with `columns` (api_key secret). */
async function withAuditProbe(columns: string, body: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  const client = await pool('owner').connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('app.org_id', $1, true)`, [orgId]);
    await client.query(`
      create table app_public.audit_probe (
        organization_id uuid not null references app_public.organizations,
        id uuid not null default gen_random_uuid(),
        ${columns}, api_key text,
        created_at timestamptz not null default now(), updated_at timestamptz not null default now(),
        primary key (organization_id, id));
      call app_private.make_tenant_table('app_public.audit_probe', 'clients', secret_columns => array['api_key']);`);
    await body(client);
  } finally {
    await client.query('rollback');
    client.release();
  }
}

test('columns marked secret are never copied into the log', () =>
  withAuditProbe('label text', async (client) => {
    const { rows } = await client.query(`insert into app_public.audit_probe (organization_id, label, api_key) values ($1, 'x', 'sk_live_123') returning id`, [orgId]);
    await client.query(`update app_public.audit_probe set api_key = 'sk_live_456', label = 'y'`);
    const events = (await client.query<Event>('select * from app_public.activity_events where record_id = $1 order by occurred_at, action', [rows[0].id])).rows;
    expect(events.map((e) => e.action)).toEqual(['insert', 'update']);
    expect(JSON.stringify(events)).not.toContain('sk_live');
    expect(events[0].new_values).toMatchObject({ label: 'x' });
    expect(events[0].new_values).not.toHaveProperty('api_key');
  }));

// The trigger reads the classification from its arguments (sql/functions/triggers.sql): a table
// classified or given a parent after its audit triggers exist is honoured from its next change on,
// and its secret columns stay secret.
test('a classification or parent given after the audit triggers exist is honoured by the next change', () =>
  withAuditProbe('label text, remark text, client_company_id uuid', async (client) => {
    const insert = `insert into app_public.audit_probe (organization_id, label, remark, api_key, client_company_id) values ($1, 'x', 'said', 'sk_live_123', gen_random_uuid()) returning id`;
    const before = (await client.query(insert, [orgId])).rows[0].id;
    await client.query(`call app_private.classify_columns('app_public.audit_probe', '{"label": ["free_text", "mask"], "remark": ["free_text", "omit"]}')`);
    await client.query(`call app_private.set_audit_parent('app_public.audit_probe', 'client_company_id', 'app_public.client_companies')`);
    const after = (await client.query(insert, [orgId])).rows[0].id;
    const event = async (id: string) => (await client.query<Event & { parent_table: string | null }>('select * from app_public.activity_events where record_id = $1', [id])).rows[0]!;
    expect((await event(before)).new_values).toMatchObject({ label: 'x', remark: 'said' });
    expect((await event(before)).parent_table).toBeNull();
    const classified = await event(after);
    expect(classified.new_values).toMatchObject({ label: '[masked]' });
    expect(classified.new_values).not.toHaveProperty('remark');
    expect(classified.new_values).not.toHaveProperty('api_key');
    expect(classified.parent_table).toBe('client_companies');
  }));

describe('activity_events is append-only for every role the app uses (42501)', () => {
  const statements = {
    update: `update app_public.activity_events set action = 'update'`,
    delete: 'delete from app_public.activity_events',
    truncate: 'truncate app_public.activity_events',
  };
  const attempt = async (role: 'owner' | 'worker' | 'authenticator', sql: string, asRole?: string) => {
    const client = await pool(role).connect();
    try {
      await client.query('begin');
      if (asRole) await client.query(`select set_config('role', $1, true)`, [asRole]);
      await client.query(`select set_config('app.org_id', $1, true), set_config('app.user_id', $2, true), set_config('app.session_id', $3, true)`, [orgId, owner.userId, owner.sessionId]);
      await client.query(sql);
    } finally {
      await client.query('rollback');
      client.release();
    }
  };
  for (const [what, sql] of Object.entries(statements)) {
    test(`${what}: owner, worker, authenticator and visitor are all refused`, async () => {
      expect((await pgError(attempt('owner', sql))).code).toBe('42501');
      expect((await pgError(attempt('worker', sql))).code).toBe('42501');
      expect((await pgError(attempt('authenticator', sql))).code).toBe('42501');
      expect((await pgError(attempt('authenticator', sql, roleName('visitor')))).code).toBe('42501');
    });
  }
  test('the log is there to read: members of every role see their organization\'s events (invitations: admins only)', async () => {
    const count = async (u: User, where = 'true') =>
      asVisitor(sessionOf(u, orgId), async (c) => Number((await c.query(`select count(*) from app_public.activity_events where ${where}`)).rows[0].count));
    const notInvitations = `table_name <> 'invitations'`;
    expect(await count(viewer)).toBeGreaterThan(0);
    expect(await count(viewer, notInvitations)).toBe(await count(owner, notInvitations));
    expect(await count(owner, `table_name = 'invitations'`)).toBeGreaterThan(0);
    expect(await count(viewer, `table_name = 'invitations'`)).toBe(0);
  });
  test('nobody inserts events directly', async () => {
    const sql = `insert into app_public.activity_events (organization_id, action, table_name, record_id) values ('${orgId}', 'insert', 'x', gen_random_uuid())`;
    expect((await pgError(asVisitor(sessionOf(owner, orgId), (c) => c.query(sql)))).code).toBe('42501');
  });
});

describe('outbox: the job is enqueued in the same transaction as the change', () => {
  const jobsFor = async (transactionId: string) =>
    (
      await pool('owner').query<{ key: string; payload: { organization_id: string; transaction_id: number } }>(
        `select j.key, j.payload from graphile_worker._private_jobs j
         join graphile_worker._private_tasks t on t.id = j.task_id
         where t.identifier = 'dispatch_activity' and j.payload ->> 'transaction_id' = $1`,
        [transactionId],
      )
    ).rows;

  test('a committed change enqueues one dispatch job for its organization and transaction', async () => {
    const txid = await asVisitor(
      sessionOf(owner, orgId),
      async (c) => {
        await c.query(`insert into app_public.client_companies (name) values ('Outbox one')`);
        await c.query(`insert into app_public.client_companies (name) values ('Outbox two')`);
        return (await c.query(`select pg_current_xact_id()::text as txid, now() as at`)).rows[0] as { txid: string; at: Date };
      },
      { commit: true },
    );
    const jobs = await jobsFor(txid.txid);
    expect(jobs).toHaveLength(1); // two statements, one transaction: job_key collapses them
    // The transaction's time, for the dispatch to look in that month of the log only.
    expect(jobs[0].payload).toEqual({ organization_id: orgId, transaction_id: Number(txid.txid), occurred_at: expect.any(String) });
    expect(new Date((jobs[0].payload as unknown as { occurred_at: string }).occurred_at).getTime()).toBe(txid.at.getTime());
    expect(jobs[0].key).toBe(`dispatch_activity:${orgId}:${txid.txid}`);
  });

  test('a rolled-back change enqueues nothing', async () => {
    const txid = await asVisitor(sessionOf(owner, orgId), async (c) => {
      await c.query(`insert into app_public.client_companies (name) values ('Never')`);
      return (await c.query(`select pg_current_xact_id()::text as txid`)).rows[0].txid as string;
    }); // asVisitor rolls back by default
    expect(await jobsFor(txid)).toEqual([]);
    expect((await pool('owner').query(`select 1 from app_public.client_companies where name = 'Never'`)).rowCount).toBe(0);
  });
});

describe('bulk updates stay linear after single-row updates on the same connection', () => {
  // PL/pgSQL keeps the audit statement's plan for the session. Planned while updates changed one
  // row each, a nested loop pairing old and new rows would make a 1,000-row update pair them in
  // n² steps; the trigger plans that statement without nested loops (sql/functions/triggers.sql).
  test("the audit trigger's pairing of old and new rows is never a nested loop", async () => {
    const client = new pg.Client({ connectionString: urlFor('superuser') });
    await client.connect();
    const notices: string[] = [];
    client.on('notice', (notice) => notices.push(notice.message ?? ''));
    try {
      await client.query('begin');
      await client.query('create schema audit_plan_probe');
      await client.query(`create table audit_plan_probe.items (
        organization_id uuid not null references app_public.organizations, id uuid not null default gen_random_uuid(),
        n integer not null default 0, created_at timestamptz not null default now(), updated_at timestamptz not null default now(),
        primary key (organization_id, id))`);
      await client.query(`call app_private.attach_audit('audit_plan_probe.items')`);
      await client.query(`insert into audit_plan_probe.items (organization_id) select $1 from generate_series(1, 1000)`, [orgId]);
      const one = (await client.query('select id from audit_plan_probe.items limit 1')).rows[0].id;
      for (let i = 0; i < 8; i++) await client.query('update audit_plan_probe.items set n = n + 1 where id = $1', [one]);
      await client.query(`load 'auto_explain'`);
      await client.query(`select set_config(name, value, true) from (values ('auto_explain.log_min_duration', '0'), ('auto_explain.log_nested_statements', 'on'), ('auto_explain.log_level', 'notice'), ('client_min_messages', 'notice')) s(name, value)`);
      const updated = await client.query('update audit_plan_probe.items set n = n + 1');
      await client.query(`set local auto_explain.log_min_duration = -1`);
      expect(updated.rowCount).toBe(1000);
      const plan = notices.find((n) => n.includes('with pairs as materialized'));
      expect(plan).toBeDefined();
      expect(plan).toMatch(/Merge Join|Hash Join/);
      expect(plan).not.toMatch(/Nested Loop/);
      const events = await client.query(`select count(*)::int as n from app_public.activity_events where table_name = 'items' and transaction_id = pg_current_xact_id()::text::bigint and action = 'update'`);
      expect(events.rows[0].n).toBe(1000 + 8);
    } finally {
      await client.query('rollback').catch(() => undefined);
      await client.end();
    }
  });
});
