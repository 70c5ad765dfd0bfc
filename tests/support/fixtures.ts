// Two tenants with at least one row in every tenant table, made through the same functions the
// API uses. A new tenant table must get rows here: the isolation matrix fails for a table
// without fixture rows in both organizations.
import type pg from 'pg';
import { approveTime, one, sellToNewClient, websiteTemplate, type SoldEngagement } from '../../src/db/seed.ts';
import { addMember, asVisitor, createOrganization, inTransaction, pool, sessionOf, signUp, unique, type Session, type User } from './db.ts';

export { approveTime, one };

export interface Tenant {
  orgId: string;
  owner: User;
  admin: User;
  member: User;
  viewer: User;
  /** A member whose custom role "Billing clerk" grants invoices.read/write and clients.read only. */
  clerk: User;
  /** A client contact's user with accepted portal access to `engagementId`. */
  portal: User;
  clientId: string;
  contactId: string;
  engagementId: string;
  projectId: string;
  taskId: string;
  /** A sent invoice of the engagement, partly paid. */
  invoiceId: string;
  /** A draft invoice with one line. */
  draftInvoiceId: string;
  clientThreadId: string;
  internalThreadId: string;
}

/** The membership id of `user` in `tenant`'s organization (read as the owner role). */
export const memberIdOf = async (tenant: Pick<Tenant, 'orgId'>, user: Pick<User, 'userId'>): Promise<string> =>
  (await pool('owner').query<{ id: string }>('select id from app_public.organization_members where organization_id = $1 and user_id = $2', [tenant.orgId, user.userId])).rows[0]!.id;

/** As `session`, committed: a shortcut for fixtures and tests that build state. */
export const commitAs = <T>(session: Session, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> => asVisitor(session, fn, { commit: true });

/** A new client sold to and signed (see sellToNewClient in src/db/seed.ts): an active engagement at 150/h. */
export const signedEngagement = (c: pg.PoolClient, label: string): Promise<SoldEngagement> =>
  sellToNewClient(c, { name: unique(`${label} Client`), contactEmail: `${unique('contact')}@example.com`, website: 'https://example.com' });

async function seedTenant(label: string): Promise<Tenant> {
  const owner = await signUp(`${label}-owner`);
  const orgId = await createOrganization(owner, label);
  const [admin, member, viewer, clerk] = await Promise.all([
    addMember(orgId, owner, 'admin', `${label}-admin`),
    addMember(orgId, owner, 'member', `${label}-member`),
    addMember(orgId, owner, 'viewer', `${label}-viewer`),
    addMember(orgId, owner, 'member', `${label}-clerk`),
  ]);
  const own = sessionOf(owner, orgId);
  const ids = await commitAs(own, async (c) => {
    const e = await signedEngagement(c, label);
    // A second client, with a draft proposal (a line that may still change).
    const other = await one<{ id: string }>(c, 'insert into app_public.client_companies (name) values ($1) returning id', [unique('Client')]);
    const draft = await one<{ id: string }>(c, `insert into app_public.proposals (client_company_id, title) values ($1, 'Retainer') returning id`, [other.id]);
    await c.query(`insert into app_public.proposal_line_items (proposal_id, description, quantity, unit_price) values ($1, 'Monthly support', 12, 500)`, [draft.id]);
    await c.query(`insert into app_public.deals (client_company_id, title) values ($1, 'Retainer')`, [other.id]);
    // A contact who asked to be forgotten: an erasure (its job may run in any test's worker).
    const leaving = await one<{ id: string }>(c, `insert into app_public.contacts (client_company_id, first_name, email) values ($1, 'Leaving', $2) returning id`, [other.id, `${unique('leaving')}@example.com`]);
    await c.query('select app_public.erase_contact($1)', [leaving.id]);

    // Delivery: a template with a milestone and tasks, a project from it, time.
    const template = { id: await websiteTemplate(c) };
    const project = await one<{ id: string }>(c, `select id from app_public.create_project_from_template($1, $2, 'Website', '2026-01-05')`, [e.engagementId, template.id]);
    const task = await one<{ id: string }>(c, `select id from app_public.tasks where project_id = $1 order by position limit 1`, [project.id]);
    const ownerMember = await one<{ id: string }>(c, 'select id from app_public.organization_members where user_id = $1', [owner.userId]);
    await c.query('update app_public.tasks set assignee_member_id = $2 where id = $1', [task.id, ownerMember.id]);
    // Rates and cost: the owner is a Designer, a rate card for designers (below the engagement's
    // own 150/h, which wins), and the owner's cost, frozen on each entry (time_entry_costs).
    const designer = await one<{ id: string }>(c, `insert into app_public.job_roles (name) values ('Designer') returning id`);
    await c.query('update app_public.organization_members set job_role_id = $1 where id = $2', [designer.id, ownerMember.id]);
    await c.query(`insert into app_public.bill_rates (job_role_id, hourly_rate, effective_from) values ($1, 120, '2026-01-01')`, [designer.id]);
    await c.query(`insert into app_public.member_cost_rates (member_id, hourly_cost) values ($1, 60)`, [ownerMember.id]);
    await c.query(`insert into app_public.exchange_rates (currency, rate, effective_on) values ('EUR', 1.08, '2026-01-01')`);
    await c.query(
      `insert into app_public.time_entries (engagement_id, task_id, member_id, work_date, minutes)
       values ($1, $2, $3, '2026-01-06', 120), ($1, $2, $3, '2026-01-07', 90)`,
      [e.engagementId, task.id, ownerMember.id],
    );

    // Communication: an internal and a client thread, a message in each.
    const internal = await one<{ id: string }>(c, `insert into app_public.threads (engagement_id, subject) values ($1, 'Team notes') returning id`, [e.engagementId]);
    const clientThread = await one<{ id: string }>(c, `insert into app_public.threads (engagement_id, subject, visibility) values ($1, 'Kick-off', 'client') returning id`, [e.engagementId]);
    await c.query(`insert into app_public.messages (thread_id, body) values ($1, 'Budget looks tight'), ($2, 'Welcome aboard!')`, [internal.id, clientThread.id]);

    // Billing: a schedule, an invoice of the time (sent, partly paid), a draft invoice.
    await c.query(`insert into app_public.invoice_schedules (engagement_id, kind, description, amount, frequency, next_run_on) values ($1, 'recurring', 'Monthly retainer', 1000, 'monthly', '2026-02-01')`, [e.engagementId]);
    await approveTime(c, e.engagementId);
    const invoice = await one<{ id: string }>(c, 'select id from app_public.create_invoice_from_time($1, 10)', [e.engagementId]);
    // And a week not submitted yet: time that may still change.
    await c.query(
      `insert into app_public.time_entries (engagement_id, task_id, member_id, work_date, minutes, billable, description)
       values ($1, $2, $3, '2026-01-20', 30, false, 'Internal review')`,
      [e.engagementId, task.id, ownerMember.id],
    );
    await c.query('select app_public.send_invoice($1)', [invoice.id]);
    await c.query(`select app_public.record_payment($1, 100, '2026-01-20', 'bank_transfer', 'first part')`, [invoice.id]);
    // Corrections: an invoice paid in full, then credited in part (a credit note) and the credit
    // refunded; another written off.
    for (const kind of ['credited', 'written off']) {
      const settled = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id, engagement_id) values ($1, $2) returning id', [e.clientId, e.engagementId]);
      await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Workshop', 1, 200)`, [settled.id]);
      await c.query('select app_public.send_invoice($1)', [settled.id]);
      if (kind === 'credited') {
        await c.query(`select app_public.record_payment($1, 200, '2026-01-21', 'bank_transfer', 'in full')`, [settled.id]);
        await c.query(`select app_public.issue_credit_note($1, 50, 'Discount agreed after the workshop')`, [settled.id]);
        await c.query(`select app_public.record_refund($1, 50, '2026-01-28', 'bank_transfer', 'discount')`, [settled.id]);
      } else {
        await c.query(`select app_public.write_off_invoice($1, 'Client went out of business')`, [settled.id]);
      }
    }
    const draftInvoice = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id, engagement_id) values ($1, $2) returning id', [e.clientId, e.engagementId]);
    await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Hosting', 1, 49)`, [draftInvoice.id]);

    // Payables and files.
    const vendor = await one<{ id: string }>(c, `insert into app_public.vendors (name, email) values ('Stock Photos Ltd', 'billing@stock.example') returning id`);
    await c.query(`insert into app_public.bills (vendor_id, engagement_id, reference, amount, due_on) values ($1, $2, 'SP-1', 300, '2030-01-01')`, [vendor.id, e.engagementId]);
    // (Completed without bytes: these tests are about rows; tests/files.test.ts uploads real ones.)
    await c.query(
      `select app_private.complete_file_upload(f.id)
       from (select (app_public.request_file_upload('brief.pdf', 'application/pdf', 1024, engagement_id => $1, client_visible => true)).id
             union all
             select (app_public.request_file_upload('margins.xlsx', 'application/vnd.ms-excel', 2048, engagement_id => $1)).id) f`,
      [e.engagementId],
    );

    // Tax codes: a standard rate (on no line: the fixture's invoices keep their invoice-level rate).
    const vat = await one<{ id: string }>(c, `insert into app_public.tax_codes (code, name) values ('VAT20', 'VAT 20%') returning id`);
    await c.query(`insert into app_public.tax_code_components (tax_code_id, name, rate) values ($1, 'VAT', 20)`, [vat.id]);

    // Expenses: a billable category with a markup; an approved train ticket with its receipt
    // (not invoiced yet), a draft lunch.
    const travel = await one<{ id: string }>(c, `insert into app_public.expense_categories (name, billable_by_default, markup_percent) values ('Travel', true, 10) returning id`);
    const receipt = await one<{ id: string }>(c, `select id from app_public.file_objects where name = 'brief.pdf'`);
    const ticket = await one<{ id: string }>(c,
      `insert into app_public.expenses (category_id, engagement_id, incurred_on, description, amount, receipt_file_id)
       values ($1, $2, '2026-01-08', 'Train to the client', 80, $3) returning id`, [travel.id, e.engagementId, receipt.id]);
    await c.query('select app_public.submit_expense($1)', [ticket.id]);
    await c.query('select app_public.approve_expense($1)', [ticket.id]);
    await c.query(`insert into app_public.expenses (category_id, incurred_on, description, amount, billable) values ($1, '2026-01-09', 'Team lunch', 45, false)`, [travel.id]);

    // Budgets: the engagement's hours (its 10% threshold crossed by the approved time: the alert
    // is recorded below, as the worker does); the owner's capacity.
    await c.query(`insert into app_public.budgets (engagement_id, name, kind, hours, thresholds, starts_on) values ($1, 'Website hours', 'time_and_materials', 20, '{10,100}', '2026-01-01')`, [e.engagementId]);
    await c.query(`insert into app_public.member_capacities (member_id, weekly_hours) values ($1, 40)`, [ownerMember.id]);

    // Custom role: Billing clerk.
    const role = await one<{ id: string }>(c, `insert into app_public.roles (name) values ('Billing clerk') returning id`);
    await c.query(`insert into app_public.role_permissions (role_id, permission_key) select $1, unnest(array['invoices.read', 'invoices.write', 'clients.read'])`, [role.id]);
    await c.query(`insert into app_public.role_assignments (member_id, role_id) select id, $2 from app_public.organization_members where user_id = $1`, [clerk.userId, role.id]);

    // A pending invitation.
    await c.query('select app_public.invite_member($1, $2)', [`${unique('invitee')}@example.com`, 'member']);

    // A webhook endpoint with one delivery (a test ping), then disabled: the ping is cancelled by
    // the worker, never sent.
    const hook = await one<{ endpoint_id: string }>(c, `select endpoint_id from app_public.create_webhook_endpoint('https://hooks.example.test/atrium', array['invoice.paid'])`);
    await c.query('select app_public.send_test_webhook($1)', [hook.endpoint_id]);
    await c.query('update app_public.webhook_endpoints set enabled = false where id = $1', [hook.endpoint_id]);

    const grant = await one<{ token: string }>(c, 'select token from app_public.grant_portal_access($1, $2)', [e.contactId, e.engagementId]);
    const contactEmail = await one<{ email: string }>(c, 'select email from app_public.contacts where id = $1', [e.contactId]);
    return { ...e, projectId: project.id, taskId: task.id, invoiceId: invoice.id, draftInvoiceId: draftInvoice.id, clientThreadId: clientThread.id, internalThreadId: internal.id, portalToken: grant.token, contactEmail: contactEmail.email };
  });

  // The budget's alert, recorded as the worker records it (only its session may).
  await inTransaction('worker', { 'app.org_id': orgId }, (c) => c.query('select app_private.check_budget_thresholds(array[$1::uuid])', [ids.engagementId]), true);

  // An export that failed (added as the owner role: a requested one would queue its job).
  await pool('owner').query(`insert into app_public.data_exports (organization_id, id, requested_by, status, failure_reason, storage_key)
     select $1::uuid, id, $2::uuid, 'failed', 'fixture', format('exports/%s/%s.zip', $1::uuid, id) from gen_random_uuid() as id`, [orgId, owner.userId]);

  // The contact signs up with the contact's email and accepts portal access.
  const portal = await signUp(`${label}-portal`, ids.contactEmail);
  await commitAs(sessionOf(portal), (c) => c.query('select app_public.accept_portal_access($1)', [ids.portalToken]));

  return {
    orgId, owner, admin, member, viewer, clerk, portal,
    clientId: ids.clientId, contactId: ids.contactId, engagementId: ids.engagementId, projectId: ids.projectId, taskId: ids.taskId,
    invoiceId: ids.invoiceId, draftInvoiceId: ids.draftInvoiceId, clientThreadId: ids.clientThreadId, internalThreadId: ids.internalThreadId,
  };
}

export async function twoTenants(): Promise<{ a: Tenant; b: Tenant }> {
  const [a, b] = await Promise.all([seedTenant('alpha'), seedTenant('beta')]);
  return { a, b };
}

export const oneTenant = (label = 'solo'): Promise<Tenant> => seedTenant(label);
