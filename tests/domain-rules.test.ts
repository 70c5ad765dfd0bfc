// The business rules the database enforces: status machines, derived totals, edit locks, invoice
// numbering under concurrency, payments, the client-company delete guard, templates and time.
// Each test runs as an API request would (the visitor role, RLS on) and fails if its rule goes.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { asVisitor, closePools, pgError, pool, sessionOf, type Session } from './support/db.ts';
import { approveTime, commitAs, one, oneTenant, signedEngagement, type Tenant } from './support/fixtures.ts';

let t: Tenant;
let own: Session;

beforeAll(async () => {
  t = await oneTenant('rules');
  own = sessionOf(t.owner, t.orgId);
}, 120_000);
afterAll(closePools);

const codeOf = async (p: Promise<unknown>) => (await pgError(p)).code;

describe('status machines', () => {
  test('a deal moves only along the pipeline; winning stamps closed_at', async () => {
    await asVisitor(own, async (c) => {
      const deal = await one<{ id: string; stage: string }>(c, `insert into app_public.deals (client_company_id, title) values ($1, 'Audit') returning id, stage`, [t.clientId]);
      expect(deal.stage).toBe('lead');
      await c.query('savepoint s');
      expect(await codeOf(c.query(`update app_public.deals set stage = 'won' where id = $1`, [deal.id]))).toBe('AT450');
      await c.query('rollback to savepoint s');
      await c.query(`update app_public.deals set stage = 'qualified' where id = $1`, [deal.id]);
      const won = await one<{ stage: string; closed_at: Date | null }>(c, `update app_public.deals set stage = 'won' where id = $1 returning stage, closed_at`, [deal.id]);
      expect(won.stage).toBe('won');
      expect(won.closed_at).toBeInstanceOf(Date);
    });
  });

  test('a new row may only start in an initial status', async () => {
    const err = await pgError(asVisitor(own, (c) => c.query(`insert into app_public.deals (client_company_id, title, stage) values ($1, 'x', 'won')`, [t.clientId])));
    expect(err.code).toBe('AT450');
    expect(err.message).toBe('A new deal cannot start as won.');
  });

  test('statuses with a lifecycle function cannot be written directly (42501)', async () => {
    expect(await codeOf(asVisitor(own, (c) => c.query(`update app_public.invoices set status = 'paid' where id = $1`, [t.invoiceId])))).toBe('42501');
    expect(await codeOf(asVisitor(own, (c) => c.query(`update app_public.proposals set status = 'accepted'`)))).toBe('42501');
  });

  test('lifecycle steps out of order are refused with INVALID_TRANSITION, and stamp their timestamps in order', async () => {
    await asVisitor(own, async (c) => {
      const e = await signedEngagement(c, 'order');
      const proposal = await one<{ status: string; sent_at: Date; accepted_at: Date; decided_by_name: string }>(c, 'select status, sent_at, accepted_at, decided_by_name from app_public.proposals where id = $1', [e.proposalId]);
      expect(proposal.status).toBe('accepted');
      expect(proposal.sent_at.getTime()).toBeLessThanOrEqual(proposal.accepted_at.getTime());
      expect(proposal.decided_by_name).toBe('Casey Client');
      await c.query('savepoint s');
      expect(await codeOf(c.query('select app_public.send_proposal($1)', [e.proposalId]))).toBe('AT450');
      await c.query('rollback to savepoint s');
      expect(await codeOf(c.query('select app_public.accept_proposal($1)', [e.proposalId]))).toBe('AT450');
      await c.query('rollback to savepoint s');
      expect(await codeOf(c.query(`select app_public.sign_contract($1, 'Someone')`, [e.contractId]))).toBe('AT450');
      await c.query('rollback to savepoint s');
      const contract = await one<{ status: string; signer_name: string; signed_at: Date; value: string }>(c, 'select status, signer_name, signed_at, value from app_public.contracts where id = $1', [e.contractId]);
      expect(contract).toMatchObject({ status: 'signed', signer_name: 'Casey Client', value: '13200.00' });
      // The deal behind the accepted proposal was won.
      expect((await one<{ stage: string }>(c, 'select stage from app_public.deals where id = $1', [e.dealId])).stage).toBe('won');
      // Engagements: completed is final.
      await c.query(`update app_public.engagements set status = 'completed' where id = $1`, [e.engagementId]);
      expect(await codeOf(c.query(`update app_public.engagements set status = 'active' where id = $1`, [e.engagementId]))).toBe('AT450');
    });
  });

  test('the transitions are rows a DBA reads in app_private.status_transitions', async () => {
    const { rows } = await pool('owner').query(`select to_status from app_private.status_transitions where table_name = 'invoices' and from_status = 'draft' order by 1`);
    expect(rows.map((r) => r.to_status)).toEqual(['cancelled', 'sent']);
  });
});

describe('totals', () => {
  test('line amounts, subtotal, tax and total are derived from the lines, whatever is typed', async () => {
    await asVisitor(own, async (c) => {
      const p = await one<{ id: string }>(c, `insert into app_public.proposals (client_company_id, title, tax_rate) values ($1, 'Totals', 20) returning id`, [t.clientId]);
      const line = await one<{ id: string; amount: string }>(c, `insert into app_public.proposal_line_items (proposal_id, description, quantity, unit_price) values ($1, 'A', 3, 33.33) returning id, amount`, [p.id]);
      expect(line.amount).toBe('99.99');
      await c.query(`insert into app_public.proposal_line_items (proposal_id, description, quantity, unit_price) values ($1, 'B', 1.5, 10)`, [p.id]);
      const totals = () => one<{ subtotal: string; tax_amount: string; total: string }>(c, 'select subtotal, tax_amount, total from app_public.proposals where id = $1', [p.id]);
      expect(await totals()).toEqual({ subtotal: '114.99', tax_amount: '23.00', total: '137.99' });
      await c.query('update app_public.proposal_line_items set quantity = 1 where id = $1', [line.id]);
      expect(await totals()).toEqual({ subtotal: '48.33', tax_amount: '9.67', total: '58.00' });
      await c.query('delete from app_public.proposal_line_items where id = $1', [line.id]);
      expect(await totals()).toEqual({ subtotal: '15.00', tax_amount: '3.00', total: '18.00' });
      await c.query('savepoint s');
      expect(await codeOf(c.query('update app_public.proposals set subtotal = 1 where id = $1', [p.id]))).toBe('42501');
      await c.query('rollback to savepoint s');
      expect(await codeOf(c.query('update app_public.proposal_line_items set amount = 1'))).toBe('428C9');
    });
  });

  test('a sent document is frozen: its lines and terms no longer change, a sent invoice cannot be deleted', async () => {
    await asVisitor(own, async (c) => {
      const steps: [string, unknown[]][] = [
        [`insert into app_public.invoice_line_items (invoice_id, description, unit_price) values ($1, 'late', 5)`, [t.invoiceId]],
        ['update app_public.invoice_line_items set unit_price = 1 where invoice_id = $1', [t.invoiceId]],
        ['delete from app_public.invoice_line_items where invoice_id = $1', [t.invoiceId]],
        ['update app_public.invoices set tax_rate = 0 where id = $1', [t.invoiceId]],
        ['select app_public.soft_delete_invoice($1)', [t.invoiceId]],
      ];
      for (const [sql, params] of steps) {
        await c.query('savepoint s');
        expect({ sql, code: await codeOf(c.query(sql, params)) }).toEqual({ sql, code: 'AT451' });
        await c.query('rollback to savepoint s');
      }
      // A draft changes freely.
      await c.query(`update app_public.invoices set tax_rate = 5 where id = $1`, [t.draftInvoiceId]);
      expect((await one<{ total: string }>(c, 'select total from app_public.invoices where id = $1', [t.draftInvoiceId])).total).toBe('51.45');
    });
  });
});

describe('invoice numbers', () => {
  test('are allocated on send, per organization, without gaps or duplicates under concurrent senders', async () => {
    const solo = await oneTenant('numbers');
    const session = sessionOf(solo.owner, solo.orgId);
    const drafts = await commitAs(session, async (c) => {
      const ids: string[] = [];
      for (let i = 0; i < 12; i++) {
        const inv = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id) values ($1) returning id', [solo.clientId]);
        await c.query(`insert into app_public.invoice_line_items (invoice_id, description, unit_price) values ($1, 'Work', 100)`, [inv.id]);
        ids.push(inv.id);
      }
      return ids;
    });
    // The fixture already sent invoices 1 to 3 (one invoiced time, two were settled by
    // corrections). One send is rolled back: its number must be reused.
    const fixture = (await pool('owner').query<{ n: number }>('select count(number)::int as n from app_public.invoices where organization_id = $1', [solo.orgId])).rows[0]!.n;
    expect(fixture).toBe(3);
    await asVisitor(session, (c) => c.query('select app_public.send_invoice($1)', [drafts[0]]));
    // Twelve senders on separate connections at once (the test pool allows 4 at a time, so
    // they queue on the counter row's lock as well as on connections).
    await Promise.all(drafts.map((id) => commitAs(session, (c) => c.query('select app_public.send_invoice($1)', [id]))));
    const { rows } = await pool('owner').query<{ number: number }>('select number from app_public.invoices where organization_id = $1 and number is not null order by number', [solo.orgId]);
    expect(rows.map((r) => r.number)).toEqual(Array.from({ length: fixture + 12 }, (_, i) => i + 1));
    // The other tenant's numbering is its own.
    const { rows: other } = await pool('owner').query<{ number: number }>('select number from app_public.invoices where organization_id = $1 and number is not null order by number', [t.orgId]);
    expect(other.map((r) => r.number)).toEqual([1, 2, 3]);
  });

  test('a sent invoice gets its issue date and a due date from the payment terms', async () => {
    const sent = await pool('owner').query<{ ok: boolean }>(
      `select i.issued_on = current_date and i.due_on = current_date + o.payment_terms_days as ok
       from app_public.invoices i join app_public.organizations o on o.id = i.organization_id where i.id = $1`,
      [t.invoiceId],
    );
    expect(sent.rows[0].ok).toBe(true);
  });
});

describe('payments', () => {
  test('partial payments add up, an overpayment is refused, the last payment marks the invoice paid', async () => {
    await asVisitor(own, async (c) => {
      const inv = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id) values ($1) returning id', [t.clientId]);
      await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Work', 4, 250)`, [inv.id]);
      await c.query('savepoint s');
      expect(await codeOf(c.query('select app_public.record_payment($1, 10)', [inv.id]))).toBe('AT461'); // a draft takes no payments
      await c.query('rollback to savepoint s');
      await c.query('select app_public.send_invoice($1)', [inv.id]);
      await c.query('select app_public.record_payment($1, 400)', [inv.id]);
      const state = () => one<{ amount_paid: string; balance: string; status: string; paid_at: Date | null }>(c, 'select amount_paid, balance, status, paid_at from app_public.invoices where id = $1', [inv.id]);
      expect(await state()).toEqual({ amount_paid: '400.00', balance: '600.00', status: 'sent', paid_at: null });
      await c.query('savepoint s');
      const over = await pgError(c.query('select app_public.record_payment($1, 600.01)', [inv.id]));
      expect(over.code).toBe('AT460');
      expect(over.message).toBe('The payment of 600.01 is more than the balance of 600.00.');
      await c.query('rollback to savepoint s');
      // A direct insert obeys the same rule.
      expect(await codeOf(c.query('insert into app_public.payments (invoice_id, amount) values ($1, 601)', [inv.id]))).toBe('AT460');
      await c.query('rollback to savepoint s');
      await c.query('insert into app_public.payments (invoice_id, amount) values ($1, 600)', [inv.id]);
      const paid = await state();
      expect(paid).toMatchObject({ amount_paid: '1000.00', balance: '0.00', status: 'paid' });
      expect(paid.paid_at).toBeInstanceOf(Date);
      await c.query('savepoint s');
      expect(await codeOf(c.query('select app_public.record_payment($1, 1)', [inv.id]))).toBe('AT461');
      await c.query('rollback to savepoint s');
      // Payments are a ledger: never changed or deleted.
      expect(await codeOf(c.query('update app_public.payments set amount = 1 where invoice_id = $1', [inv.id]))).toBe('42501');
    });
  });

  test('an invoice with payments cannot be cancelled; one without can, and frees its time', async () => {
    await asVisitor(own, async (c) => {
      await c.query('savepoint s');
      expect(await codeOf(c.query('select app_public.cancel_invoice($1)', [t.invoiceId]))).toBe('AT450');
    });
    await asVisitor(own, async (c) => {
      await c.query(`insert into app_public.time_entries (engagement_id, member_id, minutes) select $1, id, 60 from app_public.organization_members where user_id = $2`, [t.engagementId, t.owner.userId]);
      await approveTime(c, t.engagementId);
      const inv = await one<{ id: string; subtotal: string }>(c, 'select id, subtotal from app_public.create_invoice_from_time($1)', [t.engagementId]);
      expect(inv.subtotal).toBe('150.00'); // 1 h at the engagement's 150/h
      await c.query('select app_public.send_invoice($1)', [inv.id]);
      await c.query('select app_public.cancel_invoice($1)', [inv.id]);
      const again = await one<{ subtotal: string }>(c, 'select subtotal from app_public.create_invoice_from_time($1)', [t.engagementId]);
      expect(again.subtotal).toBe('150.00');
    });
  });
});

describe('time entries', () => {
  test('the rate defaults to the engagement rate; invoiced time is frozen; a task of another engagement is refused', async () => {
    await asVisitor(own, async (c) => {
      const member = await one<{ id: string }>(c, 'select id from app_public.organization_members where user_id = $1', [t.owner.userId]);
      const entry = await one<{ rate: string; amount: string }>(c, 'insert into app_public.time_entries (engagement_id, member_id, minutes) values ($1, $2, 45) returning rate, amount', [t.engagementId, member.id]);
      expect(entry).toEqual({ rate: '150.00', amount: '112.50' });
      await c.query('savepoint s');
      expect(await codeOf(c.query('update app_public.time_entries set minutes = 1 where invoice_id = $1', [t.invoiceId]))).toBe('AT451');
      await c.query('rollback to savepoint s');
      const other = await signedEngagement(c, 'other');
      expect(await codeOf(c.query('insert into app_public.time_entries (engagement_id, task_id, member_id, minutes) values ($1, $2, $3, 30)', [other.engagementId, t.taskId, member.id]))).toBe('22023');
    });
  });
});

describe('projects from templates', () => {
  test('copy the template milestones and tasks as rows, with due dates from the start date', async () => {
    const { rows } = await pool('owner').query(
      `select t.title, t.due_on::text as due, m.name as milestone, m.due_on::text as milestone_due
       from app_public.tasks t left join app_public.milestones m on m.organization_id = t.organization_id and m.id = t.milestone_id
       where t.project_id = $1 order by t.position`,
      [t.projectId],
    );
    expect(rows).toEqual([
      { title: 'Stakeholder interviews', due: '2026-01-10', milestone: 'Design signed off', milestone_due: '2026-01-19' },
      { title: 'Wireframes and visual design', due: '2026-01-17', milestone: 'Design signed off', milestone_due: '2026-01-19' },
      { title: 'Build pages', due: '2026-02-09', milestone: 'Launch', milestone_due: '2026-02-16' },
      { title: 'QA and launch', due: '2026-02-16', milestone: 'Launch', milestone_due: '2026-02-16' },
      { title: 'Retrospective', due: '2026-02-19', milestone: null, milestone_due: null },
    ]);
    const project = await pool('owner').query('select due_on::text as due, template_id is not null as from_template from app_public.projects where id = $1', [t.projectId]);
    expect(project.rows[0]).toEqual({ due: '2026-02-19', from_template: true });
  });
});

describe('client companies', () => {
  test('one with live engagements cannot be deleted (HAS_LIVE_ENGAGEMENTS); once they are completed it can', async () => {
    await asVisitor(own, async (c) => {
      await c.query('savepoint s');
      const err = await pgError(c.query('select app_public.soft_delete_client_company($1)', [t.clientId]));
      expect(err.code).toBe('AT452');
      expect(err.message).toMatch(/1 active or on-hold engagement/);
      await c.query('rollback to savepoint s');
      await c.query(`update app_public.engagements set status = 'completed' where id = $1`, [t.engagementId]);
      await c.query('select app_public.soft_delete_client_company($1)', [t.clientId]);
      expect((await c.query('select from app_public.client_companies where id = $1', [t.clientId])).rowCount).toBe(0);
    });
  });
});

describe('bills', () => {
  test('only owners and admins approve, reject or pay; the approver is recorded; an approved bill is frozen', async () => {
    const bill = (await pool('owner').query<{ id: string }>('select id from app_public.bills where organization_id = $1', [t.orgId])).rows[0].id;
    expect(await codeOf(asVisitor(sessionOf(t.member, t.orgId), (c) => c.query('select app_public.approve_bill($1)', [bill])))).toBe('AT403');
    await asVisitor(sessionOf(t.admin, t.orgId), async (c) => {
      await c.query('savepoint s');
      expect(await codeOf(c.query('select app_public.pay_bill($1)', [bill]))).toBe('AT450'); // pending → paid skips approval
      await c.query('rollback to savepoint s');
      const approved = await one<{ status: string; approved_by: string; approved_at: Date }>(c, 'select * from app_public.approve_bill($1)', [bill]);
      expect(approved).toMatchObject({ status: 'approved', approved_by: t.admin.userId });
      expect(approved.approved_at).toBeInstanceOf(Date);
      await c.query('savepoint s');
      expect(await codeOf(c.query('update app_public.bills set amount = 1 where id = $1', [bill]))).toBe('AT451');
      await c.query('rollback to savepoint s');
      expect((await one<{ status: string }>(c, 'select * from app_public.pay_bill($1)', [bill])).status).toBe('paid');
    });
  });
});

describe('consistency and records kept', () => {
  test("a document's engagement must be one of its client's (composite foreign key)", async () => {
    await asVisitor(own, async (c) => {
      const other = await one<{ id: string }>(c, 'insert into app_public.client_companies (name) values ($1) returning id', ['Someone else']);
      expect(await codeOf(c.query(`insert into app_public.invoices (client_company_id, engagement_id) values ($1, $2)`, [other.id, t.engagementId]))).toBe('23503');
    });
  });

  test('a sent proposal, a signed contract and an approved bill cannot be deleted', async () => {
    await asVisitor(own, async (c) => {
      const e = await signedEngagement(c, 'kept');
      const contract = await one<{ id: string }>(c, 'select id from app_public.contracts where proposal_id = $1', [e.proposalId]);
      const vendor = await one<{ id: string }>(c, `insert into app_public.vendors (name) values ('V') returning id`);
      const bill = await one<{ id: string }>(c, `insert into app_public.bills (vendor_id, amount) values ($1, 10) returning id`, [vendor.id]);
      await c.query('select app_public.approve_bill($1)', [bill.id]);
      for (const [fn, id] of [['soft_delete_proposal', e.proposalId], ['soft_delete_contract', contract.id], ['soft_delete_bill', bill.id]]) {
        await c.query('savepoint s');
        expect({ fn, code: await codeOf(c.query(`select app_public.${fn}($1)`, [id])) }).toEqual({ fn, code: 'AT451' });
        await c.query('rollback to savepoint s');
      }
    });
  });

  test('members edit only the messages they wrote', async () => {
    await asVisitor(sessionOf(t.admin, t.orgId), async (c) => {
      expect((await c.query(`update app_public.messages set body = 'rewritten' where thread_id = $1`, [t.clientThreadId])).rowCount).toBe(0);
      await c.query(`insert into app_public.messages (thread_id, body) values ($1, 'mine')`, [t.clientThreadId]);
      expect((await c.query(`update app_public.messages set body = 'mine, edited' where thread_id = $1`, [t.clientThreadId])).rowCount).toBe(1);
    });
  });
});
