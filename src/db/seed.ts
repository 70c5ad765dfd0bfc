// Demo data: three organizations (a studio, a consultancy, an agency), each with a member of every
// role, a billing clerk (custom role), clients, a sales pipeline, and one client taken through
// the whole lifecycle — deal → proposal → contract → engagement → project from a template → time
// → invoice → payments → paid — plus a client-portal user. Everything but the accounts themselves
// is made through the same SQL functions and row-level security the API uses (as the visitor
// role, on the API's connection), so the demo is also a smoke test of the rules.
//
// `npm run seed` loads it (once: it is skipped when the demo users exist); `npm start` loads it
// into an empty embedded database unless SEED_DEMO_DATA=false. Never in production.
import type { FileStorage } from '../storage/index.ts';
import pg from 'pg';
import type { Database } from './bootstrap.ts';
import type { Logger } from '../log.ts';

export const DEMO_PASSWORD = 'atrium-demo-password';

interface Session {
  userId?: string;
  sessionId?: string;
  orgId?: string;
}

/** Runs `fn` as an API request would: a transaction as the visitor with the session's settings. */
async function asVisitor<T>(pool: pg.Pool, visitor: string, session: Session, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    await client.query('select set_config(key, value, true) from json_each_text($1)', [
      JSON.stringify({ role: visitor, 'app.user_id': session.userId ?? '', 'app.session_id': session.sessionId ?? '', 'app.org_id': session.orgId ?? '' }),
    ]);
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** Runs one statement and returns its first row. */
export async function one<T = Record<string, unknown>>(c: pg.PoolClient, sql: string, params: unknown[] = []): Promise<T> {
  const { rows } = await c.query(sql, params);
  return rows[0] as T;
}

export interface SoldEngagement {
  clientId: string;
  contactId: string;
  dealId: string;
  proposalId: string;
  contractId: string;
  engagementId: string;
}

/**
 * Sells to a new client, as a member with the rights to: a client with a contact, a deal, a
 * proposal (two lines, 10% tax) sent and accepted, its contract sent and signed, and the
 * engagement it starts (hourly rate 150).
 */
export async function sellToNewClient(
  c: pg.PoolClient,
  client: { name: string; contactEmail: string; contactName?: [string, string]; project?: string; website?: string },
): Promise<SoldEngagement> {
  const [first, last] = client.contactName ?? ['Casey', 'Client'];
  const title = client.project ?? 'Website rebuild';
  const company = await one<{ id: string }>(c, 'insert into app_public.client_companies (name, website) values ($1, $2) returning id', [client.name, client.website ?? null]);
  const contact = await one<{ id: string }>(
    c,
    'insert into app_public.contacts (client_company_id, first_name, last_name, email, is_primary) values ($1, $2, $3, $4, true) returning id',
    [company.id, first, last, client.contactEmail],
  );
  const deal = await one<{ id: string }>(c, `insert into app_public.deals (client_company_id, title, stage, value, probability) values ($1, $2, 'proposal', 13200, 60) returning id`, [company.id, title]);
  const proposal = await one<{ id: string }>(c, `insert into app_public.proposals (client_company_id, deal_id, title, tax_rate) values ($1, $2, $3, 10) returning id`, [company.id, deal.id, title]);
  await c.query(
    `insert into app_public.proposal_line_items (proposal_id, position, description, quantity, unit_price)
     values ($1, 1, 'Discovery workshop', 1, 2000), ($1, 2, 'Design and build (days)', 10, 1000)`,
    [proposal.id],
  );
  await c.query('select app_public.send_proposal($1)', [proposal.id]);
  const signer = `${first} ${last}`;
  const contract = await one<{ id: string }>(c, 'select id from app_public.accept_proposal($1, $2)', [proposal.id, signer]);
  await c.query('select app_public.send_contract($1)', [contract.id]);
  const engagement = await one<{ id: string }>(c, 'select id from app_public.sign_contract($1, $2, 150)', [contract.id, signer]);
  return { clientId: company.id, contactId: contact.id, dealId: deal.id, proposalId: proposal.id, contractId: contract.id, engagementId: engagement.id };
}

/**
 * Submits and approves every week that has time of the engagement not yet invoiced (as a member
 * holding time.write and timesheets.approve, e.g. an owner): the organization invoices only
 * approved time (sql/functions/timesheets.sql).
 */
export async function approveTime(c: pg.PoolClient, engagementId: string): Promise<void> {
  const weeks = `select distinct t.member_id, date_trunc('week', t.work_date)::date as week
     from app_public.time_entries t
     where t.engagement_id = $1 and t.invoice_id is null and t.deleted_at is null`;
  await c.query(
    `select app_public.submit_timesheet(w.week, w.member_id) from (${weeks}) w
     where not exists (select from app_public.timesheets s where s.member_id = w.member_id and s.week_starts_on = w.week and s.status <> 'rejected')`,
    [engagementId],
  );
  await c.query(
    `select app_public.approve_timesheet(s.id) from app_public.timesheets s
     join (${weeks}) w on w.member_id = s.member_id and w.week = s.week_starts_on
     where s.status = 'submitted'`,
    [engagementId],
  );
}

/** A project template: two milestones and five tasks. */
export async function websiteTemplate(c: pg.PoolClient): Promise<string> {
  const template = await one<{ id: string }>(c, `insert into app_public.project_templates (name, description) values ('Website launch', 'Discovery to go-live in six weeks') returning id`);
  const design = await one<{ id: string }>(c, `insert into app_public.project_template_milestones (template_id, name, position, offset_days) values ($1, 'Design signed off', 1, 14) returning id`, [template.id]);
  const launch = await one<{ id: string }>(c, `insert into app_public.project_template_milestones (template_id, name, position, offset_days) values ($1, 'Launch', 2, 42) returning id`, [template.id]);
  await c.query(
    `insert into app_public.project_template_tasks (template_id, template_milestone_id, title, priority, position, offset_days, estimate_minutes) values
       ($1, $2, 'Stakeholder interviews', 'high', 1, 5, 480),
       ($1, $2, 'Wireframes and visual design', 'normal', 2, 12, 1440),
       ($1, $3, 'Build pages', 'normal', 3, 35, 4800),
       ($1, $3, 'QA and launch', 'urgent', 4, 42, 960),
       ($1, null, 'Retrospective', 'low', 5, 45, 120)`,
    [template.id, design.id, launch.id],
  );
  return template.id;
}

interface OrgSpec {
  name: string;
  domain: string;
  currency: string;
  clients: string[];
}

const ORGS: OrgSpec[] = [
  { name: 'Northwind Studio', domain: 'northwind.example', currency: 'USD', clients: ['Contoso Coffee', 'Fabrikam Bikes', 'Tailspin Toys'] },
  { name: 'Blue Harbor Consulting', domain: 'blueharbor.example', currency: 'EUR', clients: ['Litware Health', 'Adventure Works', 'Proseware'] },
  { name: 'Atlas Agency', domain: 'atlas.example', currency: 'GBP', clients: ['Wingtip Travel', 'Woodgrove Bank', 'Lucerne Publishing'] },
];
const ROLES = ['admin', 'member', 'viewer'] as const;

export interface DemoCredentials {
  organization: string;
  organizationId: string;
  users: Array<{ email: string; role: string }>;
}

/** Loads the demo data unless it is there already. Returns the sign-ins (password DEMO_PASSWORD). */
interface DemoFile {
  name: string;
  contentType: string;
  bytes: Buffer;
  clientVisible: boolean;
}

/** A one-page PDF that says `lines` (Helvetica, no compression): a real file for the demo. */
export function demoPdf(lines: string[]): Buffer {
  const text = lines.map((line, i) => `BT /F1 ${i === 0 ? 20 : 12} Tf 72 ${760 - i * 28} Td (${line.replace(/[()\\]/g, '')}) Tj ET`).join('\n');
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${Buffer.byteLength(text)} >>\nstream\n${text}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let pdf = '%PDF-1.4\n';
  const offsets = objects.map((body, i) => {
    const offset = Buffer.byteLength(pdf);
    pdf += `${i + 1} 0 obj\n${body}\nendobj\n`;
    return offset;
  });
  const xref = Buffer.byteLength(pdf);
  pdf += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n${offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`).join('')}`;
  pdf += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(pdf, 'latin1');
}

function demoFiles(organization: string): DemoFile[] {
  return [
    { name: 'Project plan.pdf', contentType: 'application/pdf', clientVisible: true, bytes: demoPdf([`${organization}: project plan`, 'Week 1-2: discovery and design', 'Week 3-6: build', 'Week 7: launch']) },
    { name: 'Staffing.csv', contentType: 'text/csv', clientVisible: false, bytes: Buffer.from('role,person,days\ndesign,Dana,10\nbuild,Bo,25\n') },
  ];
}

/**
 * Loads the demo organizations into an empty database; their files go into `storage` (the
 * configured store, as uploads would).
 */
export async function seedDemoData(db: Database, log: Logger, storage: FileStorage): Promise<{ created: boolean; credentials: DemoCredentials[] }> {
  const owner = new pg.Pool({ connectionString: db.ownerUrl, max: 1 });
  const api = new pg.Pool({ connectionString: db.authenticatorUrl, max: 2 });
  // pool.end() does not wait for its connections to close: one still closing when the database
  // stops right after (a signal during start-up) gets an error, which must not end the process.
  for (const p of [owner, api]) {
    p.on('error', () => undefined);
    p.on('connect', (client) => client.on('error', () => undefined));
  }
  const visitor = db.roles.visitor;
  const as = <T>(session: Session, fn: (c: pg.PoolClient) => Promise<T>) => asVisitor(api, visitor, session, fn);
  try {
    const existing = await demoCredentials(owner);
    if (existing.length > 0) return { created: false, credentials: existing };

    for (const spec of ORGS) {
      // Accounts are made directly (app_private.create_account, the owner's): the API's sign-up
      // goes through an email confirmation instead.
      const register = async (local: string, name: string) =>
        (await owner.query<{ user_id: string; session_id: string }>('select user_id, session_id from app_private.create_account($1, $2, $3)', [`${local}@${spec.domain}`, DEMO_PASSWORD, name])).rows[0];
      const ownerUser = await register('owner', `${spec.name} Owner`);
      const org = await as({ userId: ownerUser.user_id, sessionId: ownerUser.session_id }, (c) =>
        one<{ id: string }>(c, 'select id from app_public.create_organization($1)', [spec.name]),
      );
      const boss: Session = { userId: ownerUser.user_id, sessionId: ownerUser.session_id, orgId: org.id };
      await as(boss, (c) => c.query(`update app_public.organizations set currency = $2, payment_terms_days = 14 where id = $1`, [org.id, spec.currency]));
      const members: Record<string, Session> = {};
      for (const role of [...ROLES, 'clerk'] as const) {
        const { token } = await as(boss, (c) => one<{ token: string }>(c, 'select token from app_public.invite_member($1, $2)', [`${role}@${spec.domain}`, role === 'clerk' ? 'member' : role]));
        const user = await register(role, `${spec.name} ${role[0].toUpperCase()}${role.slice(1)}`);
        await as({ userId: user.user_id, sessionId: user.session_id }, (c) => c.query('select app_public.accept_invitation($1)', [token]));
        members[role] = { userId: user.user_id, sessionId: user.session_id, orgId: org.id };
      }
      const portalEmail = `client@${spec.domain}`;
      const ids = await as(boss, async (c) => {
        const memberId = async (s: Session) => (await one<{ id: string }>(c, 'select id from app_public.organization_members where user_id = $1', [s.userId])).id;
        // Custom role: Billing clerk (invoices, read clients; nothing of deals).
        const role = await one<{ id: string }>(c, `insert into app_public.roles (name, description) values ('Billing clerk', 'Invoices and payments; reads clients') returning id`);
        await c.query(`insert into app_public.role_permissions (role_id, permission_key) select $1, unnest(array['invoices.read', 'invoices.write', 'clients.read'])`, [role.id]);
        await c.query('insert into app_public.role_assignments (member_id, role_id) values ($1, $2)', [await memberId(members.clerk), role.id]);

        // The pipeline.
        const [won, ...others] = spec.clients;
        const sold = await sellToNewClient(c, { name: won, contactEmail: portalEmail, contactName: ['Robin', 'Rivera'], website: `https://${won.toLowerCase().replace(/\s+/g, '')}.example` });
        for (const [i, name] of others.entries()) {
          const client = await one<{ id: string }>(c, 'insert into app_public.client_companies (name) values ($1) returning id', [name]);
          await c.query(`insert into app_public.contacts (client_company_id, first_name, last_name, email) values ($1, 'Sam', 'Lee', $2)`, [client.id, `sam.lee.${i}@${spec.domain}`]);
          await c.query(
            `insert into app_public.deals (client_company_id, title, stage, value, probability, expected_close_on, owner_member_id)
             values ($1, 'Brand refresh', $2, $3, $4, current_date + 30, $5), ($1, 'Support retainer', 'lead', 6000, 10, current_date + 90, $5)`,
            [client.id, i === 0 ? 'negotiation' : 'qualified', 18000 + i * 5000, i === 0 ? 70 : 30, await memberId(members.member)],
          );
        }

        // Delivery.
        const template = await websiteTemplate(c);
        const project = await one<{ id: string }>(c, `select id from app_public.create_project_from_template($1, $2, 'Website launch', current_date - 21)`, [sold.engagementId, template]);
        const tasks = (await c.query<{ id: string }>('select id from app_public.tasks where project_id = $1 order by position', [project.id])).rows;
        const [designer, developer] = [await memberId(members.member), await memberId(members.admin)];
        // Rates and cost: job roles, an organization rate card per role (the engagement's own
        // rate comes first for its time), and what an hour of each costs the firm.
        const roles = (await c.query<{ id: string; name: string }>(`insert into app_public.job_roles (name) values ('Designer'), ('Developer') returning id, name`)).rows;
        const roleId = (name: string) => roles.find((r) => r.name === name)!.id;
        await c.query('update app_public.organization_members set job_role_id = $2 where id = $1', [designer, roleId('Designer')]);
        await c.query('update app_public.organization_members set job_role_id = $2 where id = $1', [developer, roleId('Developer')]);
        await c.query(`insert into app_public.bill_rates (job_role_id, hourly_rate, effective_from) values ($1, 140, date_trunc('year', current_date)::date), ($2, 160, date_trunc('year', current_date)::date)`, [roleId('Designer'), roleId('Developer')]);
        await c.query(`insert into app_public.member_cost_rates (member_id, hourly_cost) values ($1, 65), ($2, 80)`, [designer, developer]);
        // Capacity (utilization is measured against it): a full week, and four days.
        await c.query(`insert into app_public.member_capacities (member_id, weekly_hours) values ($1, 40), ($2, 32)`, [designer, developer]);
        await c.query(`update app_public.tasks set status = 'done', assignee_member_id = $2 where id = $1`, [tasks[0].id, designer]);
        await c.query(`update app_public.tasks set status = 'in_progress', assignee_member_id = $2 where id = $1`, [tasks[1].id, designer]);
        await c.query(`update app_public.tasks set assignee_member_id = $2 where id = $1`, [tasks[2].id, developer]);
        await c.query(
          `insert into app_public.time_entries (engagement_id, task_id, member_id, work_date, minutes, description) values
             ($1, $2, $4, current_date - 20, 240, 'Interviews with marketing'),
             ($1, $2, $4, current_date - 19, 180, 'Interview synthesis'),
             ($1, $3, $4, current_date - 15, 420, 'Wireframes'),
             ($1, $3, $5, current_date - 14, 90, 'Design review')`,
          [sold.engagementId, tasks[0].id, tasks[1].id, designer, developer],
        );
        await c.query(`insert into app_public.time_entries (engagement_id, member_id, work_date, minutes, billable, description) values ($1, $2, current_date - 10, 60, false, 'Internal planning')`, [sold.engagementId, developer]);

        // Billing: the weeks approved, the time invoiced, sent and paid in two parts; a retainer
        // schedule; an open invoice.
        await approveTime(c, sold.engagementId);
        const invoice = await one<{ id: string; total: string }>(c, 'select id, total from app_public.create_invoice_from_time($1, 10)', [sold.engagementId]);
        await c.query('select app_public.send_invoice($1)', [invoice.id]);
        await c.query(`select app_public.record_payment($1, 1000, current_date - 5, 'bank_transfer', 'Part payment')`, [invoice.id]);
        await c.query(`select app_public.record_payment($1, $2::numeric - 1000, current_date - 1, 'card', 'Balance')`, [invoice.id, invoice.total]);
        // A goodwill credit on the paid invoice (credit note 1), paid back to the client.
        const credit = await one<{ total: string }>(c, `select total from app_public.issue_credit_note($1, 100, 'Goodwill: design ran over estimate')`, [invoice.id]);
        await c.query(`select app_public.record_refund($1, $2, current_date, 'bank_transfer', 'Credit note 1')`, [invoice.id, credit.total]);
        // Last week's workshop (the owner's), approved but not invoiced yet: work in progress.
        const ownerMember = await memberId(boss);
        await c.query(`insert into app_public.time_entries (engagement_id, member_id, work_date, minutes, description) values ($1, $2, date_trunc('week', current_date)::date - 6, 180, 'Client workshop')`, [sold.engagementId, ownerMember]);
        const workshop = await one<{ id: string }>(c, `select id from app_public.submit_timesheet(date_trunc('week', current_date)::date - 6, $1)`, [ownerMember]);
        await c.query('select app_public.approve_timesheet($1)', [workshop.id]);
        // This week's time, submitted and waiting for approval.
        await c.query(`insert into app_public.time_entries (engagement_id, task_id, member_id, work_date, minutes, description) values ($1, $2, $3, current_date, 120, 'Component library')`, [sold.engagementId, tasks[1].id, designer]);
        await c.query('select app_public.submit_timesheet(current_date, $1)', [designer]);
        // Budgets from a month ago (the demo's time starts three weeks back): the engagement capped
        // at 40 hours and 6,000 (alerts come from the worker, as for every change), and the
        // website project's fixed fee.
        await c.query(
          `insert into app_public.budgets (engagement_id, project_id, name, kind, hours, amount, starts_on) values
             ($1, null, 'Engagement cap', 'capped', 40, 6000, current_date - 30), ($1, $2, 'Website launch', 'fixed_fee', null, 4000, current_date - 30)`,
          [sold.engagementId, project.id]);
        // Expenses: travel re-billed with a 10% markup on a draft invoice, software the firm
        // bears, and a taxi waiting for approval.
        const categories = (await c.query<{ id: string; name: string }>(
          `insert into app_public.expense_categories (name, billable_by_default, markup_percent) values ('Travel', true, 10), ('Software', false, 0) returning id, name`)).rows;
        const categoryId = (name: string) => categories.find((r) => r.name === name)!.id;
        const spent = (await c.query<{ id: string }>(
          `insert into app_public.expenses (member_id, category_id, engagement_id, incurred_on, description, amount) values
             ($1, $3, $5, current_date - 18, 'Train to the client workshop', 86.40),
             ($2, $4, null, current_date - 12, 'Prototyping tool, one month', 45)
           returning id`,
          [designer, developer, categoryId('Travel'), categoryId('Software'), sold.engagementId])).rows;
        for (const expense of spent) {
          await c.query('select app_public.submit_expense($1)', [expense.id]);
          await c.query('select app_public.approve_expense($1)', [expense.id]);
        }
        const taxi = await one<{ id: string }>(c, `insert into app_public.expenses (member_id, category_id, engagement_id, incurred_on, description, amount) values ($1, $2, $3, current_date - 2, 'Taxi from the station', 24) returning id`, [designer, categoryId('Travel'), sold.engagementId]);
        await c.query('select app_public.submit_expense($1)', [taxi.id]);
        const rebill = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id, engagement_id, tax_rate) values ($1, $2, 10) returning id', [sold.clientId, sold.engagementId]);
        await c.query('select app_public.add_expenses_to_invoice($1)', [rebill.id]);
        const open = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id, engagement_id, tax_rate) values ($1, $2, 10) returning id', [sold.clientId, sold.engagementId]);
        await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Hosting and support (month)', 1, 450)`, [open.id]);
        await c.query('select app_public.send_invoice($1)', [open.id]);
        await c.query(`insert into app_public.invoice_schedules (engagement_id, kind, description, amount, frequency, next_run_on) values ($1, 'recurring', 'Hosting and support', 450, 'monthly', date_trunc('month', current_date + 31)::date)`, [sold.engagementId]);

        // Communication and files.
        const kickoff = await one<{ id: string }>(c, `insert into app_public.threads (engagement_id, subject, visibility) values ($1, 'Kick-off and next steps', 'client') returning id`, [sold.engagementId]);
        const internal = await one<{ id: string }>(c, `insert into app_public.threads (engagement_id, subject) values ($1, 'Margins and staffing') returning id`, [sold.engagementId]);
        await c.query(`insert into app_public.messages (thread_id, body) values ($1, 'Welcome! The project plan is in the portal.'), ($2, 'Design is running 10% over estimate.')`, [kickoff.id, internal.id]);
        // Files, as the API makes them: requested here, their bytes stored, then completed (below).
        const files: Array<DemoFile & { id: string; storage_key: string }> = [];
        for (const file of demoFiles(spec.name)) {
          const row = await one<{ id: string; storage_key: string }>(c, 'select id, storage_key from app_public.request_file_upload($1, $2, $3, engagement_id => $4, client_visible => $5)', [
            file.name, file.contentType, file.bytes.length, sold.engagementId, file.clientVisible,
          ]);
          files.push({ ...file, ...row });
        }

        // Tax codes: the standard rate, the default of lines given no code (the documents above
        // carry a 10% rate of their own), and a reverse charge for the client abroad (below).
        const standard = await one<{ id: string }>(c, `insert into app_public.tax_codes (code, name, is_default) values ('STD', 'Standard rate', true) returning id`);
        await c.query(`insert into app_public.tax_code_components (tax_code_id, name, rate) values ($1, 'VAT', 20)`, [standard.id]);
        const reverseCharge = await one<{ id: string }>(c, `insert into app_public.tax_codes (code, name) values ('RC', 'Reverse charge (the client accounts for the tax)') returning id`);

        // A second currency: a client billed in another currency than the firm's (euros, or
        // dollars for a firm in euros), its rate into the base currency, and a draft invoice in it
        // (reverse-charged: the client's own tax code).
        const second = spec.currency === 'EUR' ? { currency: 'USD', rate: 0.93 } : { currency: 'EUR', rate: spec.currency === 'GBP' ? 0.86 : 1.08 };
        const abroad = await one<{ id: string }>(c, `insert into app_public.client_companies (name, currency, tax_code_id) values ($1, $2, $3) returning id`, [`${others[0] ?? 'Client'} International`, second.currency, reverseCharge.id]);
        await c.query(`insert into app_public.exchange_rates (currency, rate, effective_on) values ($1, $2, date_trunc('month', current_date)::date)`, [second.currency, second.rate]);
        const draftAbroad = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id) values ($1) returning id', [abroad.id]);
        await c.query(`insert into app_public.invoice_line_items (invoice_id, description, quantity, unit_price) values ($1, 'Localisation workshop', 1, 1200)`, [draftAbroad.id]);

        // Payables.
        const vendor = await one<{ id: string }>(c, `insert into app_public.vendors (name, email) values ('Pixel Stock Photos', 'billing@pixelstock.example') returning id`);
        const approved = await one<{ id: string }>(c, `insert into app_public.bills (vendor_id, engagement_id, reference, description, amount, due_on) values ($1, $2, 'PS-1042', 'Hero images', 320, current_date + 20) returning id`, [vendor.id, sold.engagementId]);
        await c.query('select app_public.approve_bill($1)', [approved.id]);
        await c.query(`insert into app_public.bills (vendor_id, reference, description, amount, due_on) values ($1, 'PS-1077', 'Icon set', 90, current_date + 30)`, [vendor.id]);

        const grant = await one<{ token: string }>(c, 'select token from app_public.grant_portal_access($1, $2)', [sold.contactId, sold.engagementId]);
        return { portalToken: grant.token, files };
      });
      for (const file of ids.files) await storage.put(file.storage_key, file.bytes, file.contentType);
      await as(boss, async (c) => {
        for (const file of ids.files) await c.query('select app_private.complete_file_upload($1)', [file.id]);
      });
      const portalUser = await register('client', 'Robin Rivera');
      await as({ userId: portalUser.user_id, sessionId: portalUser.session_id }, (c) => c.query('select app_public.accept_portal_access($1)', [ids.portalToken]));
      log.info({ organization: spec.name }, 'demo organization loaded');
    }
    return { created: true, credentials: await demoCredentials(owner) };
  } finally {
    await Promise.all([owner.end(), api.end()]);
  }
}

/** True when no organization exists yet (a new database). */
export async function isEmptyDatabase(db: Database): Promise<boolean> {
  const client = new pg.Client({ connectionString: db.ownerUrl });
  await client.connect();
  try {
    return (await client.query('select not exists (select from app_public.organizations) as empty')).rows[0].empty as boolean;
  } finally {
    await client.end();
  }
}

/** The demo organizations and their sign-ins, read back (empty when there is no demo data). */
async function demoCredentials(owner: pg.Pool): Promise<DemoCredentials[]> {
  const { rows } = await owner.query<{ organization: string; organization_id: string; email: string; role: string }>(
    `with spec (name, domain, ord) as (select * from unnest($1::text[], $2::text[]) with ordinality)
     select o.name as organization, o.id as organization_id, u.email,
       case
         when m.id is null then 'client portal'
         when exists (select from app_public.role_assignments ra where ra.organization_id = m.organization_id and ra.member_id = m.id) then 'member + Billing clerk'
         else m.role::text
       end as role
     from spec
     join app_public.organizations o on o.name = spec.name
     join app_public.users u on u.email like '%@' || spec.domain
     left join app_public.organization_members m on m.organization_id = o.id and m.user_id = u.id
     left join app_public.client_portal_access a on a.organization_id = o.id and a.user_id = u.id and a.revoked_at is null
     where m.id is not null or a.id is not null
     order by spec.ord, m.role desc nulls last, u.email`,
    [ORGS.map((o) => o.name), ORGS.map((o) => o.domain)],
  );
  const byOrg = new Map<string, DemoCredentials>();
  for (const r of rows) {
    const entry = byOrg.get(r.organization_id) ?? { organization: r.organization, organizationId: r.organization_id, users: [] };
    entry.users.push({ email: r.email, role: r.role });
    byOrg.set(r.organization_id, entry);
  }
  return [...byOrg.values()];
}

/** The sign-ins as text for the terminal. */
export function formatCredentials(credentials: DemoCredentials[]): string {
  const lines = [`Demo sign-ins (password for all: ${DEMO_PASSWORD}); log in with organizationId to enter one:`];
  for (const org of credentials) {
    lines.push(`  ${org.organization}  (organizationId ${org.organizationId})`);
    for (const u of org.users) lines.push(`    ${u.email.padEnd(28)} ${u.role}`);
  }
  return `${lines.join('\n')}\n`;
}
