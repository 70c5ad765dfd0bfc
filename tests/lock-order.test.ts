// Lock order (sql/functions/lock_order.sql): whatever changes a document's parts (payments,
// lines) or moves it along its lifecycle locks the document first, so concurrent callers queue
// behind each other instead of deadlocking. Each test holds the document in an open transaction,
// lines up several concurrent callers behind it (each on its own connection, as the visitor role
// with its organization, exactly as API requests run), lets the holder finish, and counts the
// outcomes: no DEADLOCK (40P01), and the document's figures agree with what was accepted.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import pg from 'pg';
import { closePools, createOrganization, roleName, sessionOf, signUp, urlFor, type Session } from './support/db.ts';
import { commitAs, one, signedEngagement } from './support/fixtures.ts';

let own: Session;
let clientId: string;
const clients: pg.Client[] = [];

beforeAll(async () => {
  const owner = await signUp('locks-owner');
  const orgId = await createOrganization(owner, 'locks');
  own = sessionOf(owner, orgId);
  clientId = (await commitAs(own, (c) => one<{ id: string }>(c, `insert into app_public.client_companies (name) values ('Lock order client') returning id`))).id;
}, 120_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await closePools();
});

/** A connection of its own (the shared pools hold 4), in a transaction as the visitor of `session`. */
async function visitorTransaction(session: Session): Promise<{ client: pg.Client; pid: number }> {
  const client = new pg.Client({ connectionString: urlFor('authenticator') });
  client.on('error', () => undefined);
  clients.push(client);
  await client.connect();
  await client.query('begin');
  const settings = { role: roleName('visitor'), 'app.user_id': session.userId ?? '', 'app.session_id': session.sessionId ?? '', 'app.org_id': session.orgId ?? '' };
  await client.query('select set_config(key, value, true) from json_each_text($1)', [JSON.stringify(settings)]);
  const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
  return { client, pid: rows[0].pid };
}

/** Runs `sql` in its own visitor transaction and commits; resolves to 'ok' or the SQLSTATE. */
async function attempt(session: Session, sql: string, params: unknown[], started: number[]): Promise<string> {
  const { client, pid } = await visitorTransaction(session);
  started.push(pid);
  try {
    await client.query(sql, params);
    await client.query('commit');
    return 'ok';
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    return (error as { code?: string }).code ?? 'no code';
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Waits (up to a minute: the machine may be busy) until `count` callers of `pids` wait for a lock. */
async function waitUntilWaiting(pids: number[], count: number): Promise<void> {
  const watcher = new pg.Client({ connectionString: urlFor('superuser') });
  await watcher.connect();
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (pids.length >= count) {
        const { rows } = await watcher.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where pid = any ($1) and wait_event_type = 'Lock'`, [pids]);
        if (rows[0].n >= count) return;
      }
      if (Date.now() > deadline) throw new Error(`not all ${count} callers came to wait for the lock within a minute`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await watcher.end();
  }
}

const tally = (results: string[]) => results.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r]: (acc[r] ?? 0) + 1 }), {});

/** A sent invoice of 1000.00 (one line, no tax), committed. */
async function sentInvoice(session = own, client = clientId): Promise<string> {
  return commitAs(session, async (c) => {
    const inv = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id) values ($1) returning id', [client]);
    await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Work', 4, 250)`, [inv.id]);
    await c.query('select app_public.send_invoice($1)', [inv.id]);
    return inv.id;
  });
}

describe('payments of a busy invoice queue instead of deadlocking', () => {
  test('8 payments of 150 wait behind an open transaction holding a 1000.00 invoice: 6 are applied, 2 are OVERPAYMENT, none DEADLOCK', async () => {
    const invoiceId = await sentInvoice();
    const holder = await visitorTransaction(own);
    await holder.client.query('select id from app_public.invoices where id = $1 for update', [invoiceId]);
    const pids: number[] = [];
    // Through recordPayment and through a plain insert (the API's createPayment): both take the same order.
    const payments = Array.from({ length: 8 }, (_, i) =>
      i % 2 === 0
        ? attempt(own, 'select app_public.record_payment($1, 150)', [invoiceId], pids)
        : attempt(own, 'insert into app_public.payments (invoice_id, amount) values ($1, 150)', [invoiceId], pids),
    );
    await waitUntilWaiting(pids, 8);
    await holder.client.query('commit');
    const results = await Promise.all(payments);
    expect(tally(results)).toEqual({ ok: 6, AT460: 2 }); // AT460: OVERPAYMENT (docs/ERRORS.md)
    const state = await commitAs(own, (c) =>
      one(c, `select i.amount_paid, i.balance, i.status, (select sum(p.amount) from app_public.payments p where p.invoice_id = i.id) as paid
              from app_public.invoices i where i.id = $1`, [invoiceId]),
    );
    expect(state).toEqual({ amount_paid: '900.00', balance: '100.00', status: 'sent', paid: '900.00' });
  }, 120_000);

  test('payments clearing the balance concurrently: the invoice is paid once, later ones are NOT_PAYABLE', async () => {
    const invoiceId = await sentInvoice();
    const holder = await visitorTransaction(own);
    await holder.client.query('select app_public.mark_invoice_viewed($1)', [invoiceId]); // a lifecycle step in progress
    const pids: number[] = [];
    const payments = Array.from({ length: 6 }, () => attempt(own, 'select app_public.record_payment($1, 250)', [invoiceId], pids));
    await waitUntilWaiting(pids, 6);
    await holder.client.query('commit');
    expect(tally(await Promise.all(payments))).toEqual({ ok: 4, AT461: 2 }); // AT461: NOT_PAYABLE (paid)
    const state = await commitAs(own, (c) => one(c, 'select amount_paid, balance, status from app_public.invoices where id = $1', [invoiceId]));
    expect(state).toEqual({ amount_paid: '1000.00', balance: '0.00', status: 'paid' });
  }, 120_000);
});

describe('the lock stays inside the organization', () => {
  test("a payment naming another organization's invoice, held by its owner, answers at once exactly like a random id", async () => {
    const other = await signUp('locks-other');
    const otherSession = sessionOf(other, await createOrganization(other, 'locks-other'));
    const otherClient = (await commitAs(otherSession, (c) => one<{ id: string }>(c, `insert into app_public.client_companies (name) values ('Theirs') returning id`))).id;
    const theirs = await sentInvoice(otherSession, otherClient);
    const holder = await visitorTransaction(otherSession);
    await holder.client.query('select id from app_public.invoices where id = $1 for update', [theirs]);
    const answer = async (sql: string, id: string) => {
      const { client } = await visitorTransaction(own);
      try {
        await client.query(`set local lock_timeout = '10s'`); // waiting for their lock would answer 55P03
        await client.query(sql, [id]);
        return 'ok';
      } catch (error) {
        const { code, message } = error as { code: string; message: string };
        return `${code}: ${message.replace(id, '<id>')}`;
      } finally {
        await client.query('rollback').catch(() => undefined);
        await client.end();
      }
    };
    const random = '00000000-0000-4000-8000-000000000001';
    for (const sql of ['select app_public.record_payment($1, 10)', 'insert into app_public.payments (invoice_id, amount) values ($1, 10)']) {
      const forTheirs = await answer(sql, theirs);
      expect(forTheirs).toBe(await answer(sql, random));
      expect(forTheirs).not.toMatch(/^55P03/);
    }
    await holder.client.query('rollback');
  }, 120_000);
});

describe('line edits queue behind the document', () => {
  test('lines added while the invoice is being sent wait for the send: NOT_EDITABLE once it is sent, added when the send is abandoned, never DEADLOCK', async () => {
    for (const outcome of ['commit', 'rollback'] as const) {
      const invoiceId = await commitAs(own, async (c) => {
        const inv = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id) values ($1) returning id', [clientId]);
        await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Work', 1, 100)`, [inv.id]);
        return inv.id;
      });
      const sender = await visitorTransaction(own);
      await sender.client.query('select app_public.send_invoice($1)', [invoiceId]);
      const pids: number[] = [];
      const lines = Array.from({ length: 5 }, (_, i) =>
        attempt(own, `insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, $2, 1, 10)`, [invoiceId, `Extra ${i}`], pids),
      );
      await waitUntilWaiting(pids, 5);
      await sender.client.query(outcome);
      const results = await Promise.all(lines);
      const state = await commitAs(own, (c) => one<{ status: string; subtotal: string; lines: number }>(c,
        'select status, subtotal, (select count(*)::int from app_public.invoice_line_items l where l.invoice_id = i.id) as lines from app_public.invoices i where i.id = $1', [invoiceId]));
      if (outcome === 'commit') {
        expect(tally(results)).toEqual({ AT451: 5 }); // AT451: NOT_EDITABLE
        expect(state).toEqual({ status: 'sent', subtotal: '100.00', lines: 1 });
      } else {
        expect(tally(results)).toEqual({ ok: 5 });
        expect(state).toEqual({ status: 'draft', subtotal: '150.00', lines: 6 });
      }
    }
  }, 180_000);
});

describe('lifecycle steps queue behind the document', () => {
  test('a contract signed by several callers at once is signed once and starts one engagement', async () => {
    const contractId = await commitAs(own, async (c) => {
      const e = await signedEngagement(c, 'locks');
      const proposal = await one<{ id: string }>(c, `insert into app_public.proposals (client_company_id, title) values ($1, 'Phase 2') returning id`, [e.clientId]);
      await c.query(`insert into app_public.proposal_line_items (proposal_id, description, quantity, unit_price) values ($1, 'Build', 1, 5000)`, [proposal.id]);
      await c.query('select app_public.send_proposal($1)', [proposal.id]);
      const contract = await one<{ id: string }>(c, `select id from app_public.accept_proposal($1, 'Casey Client')`, [proposal.id]);
      await c.query('select app_public.send_contract($1)', [contract.id]);
      return contract.id;
    });
    const first = await visitorTransaction(own);
    await first.client.query(`select app_public.sign_contract($1, 'Casey Client')`, [contractId]);
    const pids: number[] = [];
    const others = Array.from({ length: 3 }, () => attempt(own, `select app_public.sign_contract($1, 'Casey Client')`, [contractId], pids));
    await waitUntilWaiting(pids, 3);
    await first.client.query('commit');
    expect(tally(await Promise.all(others))).toEqual({ AT450: 3 }); // AT450: INVALID_TRANSITION (already signed)
    const engagements = await commitAs(own, (c) => one<{ n: number }>(c, 'select count(*)::int as n from app_public.engagements where contract_id = $1', [contractId]));
    expect(engagements.n).toBe(1);
  }, 120_000);
});
