// The whole business flow over real HTTP GraphQL, as a frontend would drive it: deal → proposal →
// contract → engagement → project from a template → time entries → invoice → payments → paid.
// Plus what the flow must refuse along the way (stable error codes, not SQL errors).
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import type { Atrium } from '../src/index.ts';
import { closePools, unique } from './support/db.ts';
import { errorCode, gql, registerAndConfirm, startTestApp, type GraphQLResponse } from './support/app.ts';

let app: Atrium;
let url: string;
let token: string;
let orgId: string;

beforeAll(async () => {
  app = await startTestApp();
  url = app.url!;
}, 60_000);
afterAll(async () => {
  await app?.stop();
  await closePools();
});

/** Runs a GraphQL operation with the current token; fails on any error and returns the data. */
async function ok<T = any>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const res = await gql<T>(url, query, variables, token);
  expect(res.errors).toBeUndefined();
  return res.data!;
}
const call = (query: string, variables: Record<string, unknown> = {}): Promise<GraphQLResponse> => gql(url, query, variables, token);

test('deal → proposal → contract → engagement → project → time → invoice → payments → paid', async () => {
  // Sign up, create the firm, and work in it.
  const email = `${unique('owner')}@example.com`;
  token = (await registerAndConfirm(url, { email, name: 'Olive Owner' })).accessToken;
  orgId = (await ok('mutation { createOrganization(input: { name: "Flow Studio" }) { organization { rowId } } }')).createOrganization.organization.rowId;
  token = (await ok('mutation($o: UUID) { switchOrganization(input: { organizationId: $o }) { accessToken } }', { o: orgId })).switchOrganization.accessToken;
  // Who the viewer is here: their membership in the current organization.
  const me = (await ok('{ currentMember { rowId role userId } }')).currentMember;
  expect(me).toMatchObject({ role: 'owner', rowId: expect.any(String) });
  const memberId = me.rowId as string;
  expect((await ok('{ organizationMembers { nodes { rowId } } }')).organizationMembers.nodes.map((m: { rowId: string }) => m.rowId)).toEqual([memberId]);

  // CRM: a client and a deal in the pipeline.
  const clientId = (await ok('mutation { createClientCompany(input: { clientCompany: { name: "Contoso" } }) { clientCompany { rowId } } }')).createClientCompany.clientCompany.rowId;
  const dealId = (await ok('mutation($c: UUID!) { createDeal(input: { deal: { clientCompanyId: $c, title: "New site", value: "12000", stage: qualified } }) { deal { rowId stage } } }', { c: clientId })).createDeal.deal.rowId;
  // Back down the funnel is allowed; skipping straight to won is refused.
  const skip = await call('mutation($o: UUID!, $d: UUID!) { updateDeal(input: { organizationId: $o, rowId: $d, patch: { stage: lead } }) { deal { stage } } }', { o: orgId, d: dealId });
  expect(skip.errors).toBeUndefined(); // qualified → lead is allowed (back in the funnel)
  const jump = await call('mutation($o: UUID!, $d: UUID!) { updateDeal(input: { organizationId: $o, rowId: $d, patch: { stage: won } }) { deal { stage } } }', { o: orgId, d: dealId });
  expect(errorCode(jump)).toBe('INVALID_TRANSITION');
  expect(jump.errors![0].message).toBe('A deal cannot go from lead to won.');
  // (A row of the organization the token names is also reached by its id alone.)
  expect((await ok('mutation($d: UUID!) { updateDealByRowId(input: { rowId: $d, patch: { stage: qualified } }) { deal { stage } } }', { d: dealId })).updateDealByRowId.deal.stage).toBe('qualified');

  // Sales: a proposal with its two lines in one request (none: EMPTY_DOCUMENT); totals are computed.
  const createProposal = (lines: Array<{ description: string; quantity: string; unitPrice: string }>) => call(
    'mutation($c: UUID!, $d: UUID!, $l: [DocumentLineInput]!) { createProposalWithLines(input: { clientCompanyId: $c, dealId: $d, title: "New site", taxRate: "10", lines: $l }) { proposal { rowId } } }',
    { c: clientId, d: dealId, l: lines });
  expect(errorCode(await createProposal([]))).toBe('EMPTY_DOCUMENT');
  const created = await createProposal([{ description: 'Design', quantity: '1', unitPrice: '2000' }, { description: 'Build (days)', quantity: '10', unitPrice: '1000' }]);
  expect(created.errors).toBeUndefined();
  const proposalId = (created.data as any).createProposalWithLines.proposal.rowId as string;
  const sent = (await ok('mutation($p: UUID!) { sendProposal(input: { proposalId: $p }) { proposal { status subtotal taxAmount total sentAt } } }', { p: proposalId })).sendProposal.proposal;
  expect(sent).toMatchObject({ status: 'sent', subtotal: '12000.00', taxAmount: '1200.00', total: '13200.00' });
  expect(sent.sentAt).toEqual(expect.any(String));
  const contract = (await ok('mutation($p: UUID!) { acceptProposal(input: { proposalId: $p, decidedByName: "Casey Client" }) { contract { rowId status value } } }', { p: proposalId })).acceptProposal.contract;
  expect(contract).toMatchObject({ status: 'draft', value: '13200.00' });
  expect((await ok('query($d: UUID!) { dealByRowId(rowId: $d) { stage closedAt } }', { d: dealId })).dealByRowId.stage).toBe('won');

  // Contract → engagement.
  expect(errorCode(await call('mutation($c: UUID!) { signContract(input: { contractId: $c, signerName: "Casey" }) { engagement { rowId } } }', { c: contract.rowId }))).toBe('INVALID_TRANSITION');
  await ok('mutation($c: UUID!) { sendContract(input: { contractId: $c }) { contract { status } } }', { c: contract.rowId });
  // Signed at the hourly rate agreed: the engagement starts priced.
  const engagement = (await ok('mutation($c: UUID!) { signContract(input: { contractId: $c, signerName: "Casey Client", hourlyRate: "120" }) { engagement { rowId status hourlyRate } } }', { c: contract.rowId })).signContract.engagement;
  expect(engagement).toMatchObject({ status: 'active', hourlyRate: '120.00' });

  // Delivery: a template with its tasks (one request) → a project with its tasks.
  const templateId = (await ok('mutation { createProjectTemplateWithTasks(input: { name: "Website", tasks: [{ title: "Design", offsetDays: 7 }, { title: "Build", offsetDays: 21 }] }) { projectTemplate { rowId } } }')).createProjectTemplateWithTasks.projectTemplate.rowId;
  const project = (await ok('mutation($e: UUID!, $t: UUID!) { createProjectFromTemplate(input: { engagementId: $e, templateId: $t, startsOn: "2026-03-02" }) { project { rowId name dueOn } } }', { e: engagement.rowId, t: templateId })).createProjectFromTemplate.project;
  expect(project).toMatchObject({ name: 'Website', dueOn: '2026-03-23' });
  const tasks = (await ok('query($p: UUID!) { tasks(condition: { projectId: $p }, orderBy: POSITION_ASC) { nodes { rowId title dueOn } } }', { p: project.rowId })).tasks.nodes;
  expect(tasks.map((t: { title: string; dueOn: string }) => [t.title, t.dueOn])).toEqual([['Design', '2026-03-09'], ['Build', '2026-03-23']]);

  // Time: 3 h and 1.5 h at the engagement's rate.
  for (const [taskId, minutes] of [[tasks[0].rowId, 180], [tasks[1].rowId, 90]] as const) {
    const entry = (await ok('mutation($e: UUID!, $t: UUID!, $m: UUID!, $min: Int!) { createTimeEntry(input: { timeEntry: { engagementId: $e, taskId: $t, memberId: $m, minutes: $min } }) { timeEntry { rate amount } } }', {
      e: engagement.rowId, t: taskId, m: memberId, min: minutes,
    })).createTimeEntry.timeEntry;
    expect(entry.rate).toBe('120.00');
  }

  // The week's time submitted and approved (by the owner, who may approve their own): only
  // approved time is invoiced.
  const today = new Date().toISOString().slice(0, 10);
  const sheet = (await ok('mutation($d: Date!, $m: UUID!) { submitTimesheet(input: { weekStartsOn: $d, memberId: $m }) { timesheet { rowId status } } }', { d: today, m: memberId })).submitTimesheet.timesheet;
  expect(sheet.status).toBe('submitted');
  expect((await ok('mutation($s: UUID!) { approveTimesheet(input: { timesheetId: $s }) { timesheet { status } } }', { s: sheet.rowId })).approveTimesheet.timesheet.status).toBe('approved');

  // Billing: invoice the time, send it (number 1), pay it in two parts.
  const invoice = (await ok('mutation($e: UUID!) { createInvoiceFromTime(input: { engagementId: $e }) { invoice { rowId status subtotal total number } } }', { e: engagement.rowId })).createInvoiceFromTime.invoice;
  expect(invoice).toMatchObject({ status: 'draft', subtotal: '540.00', total: '540.00', number: null });
  const issued = (await ok('mutation($i: UUID!) { sendInvoice(input: { invoiceId: $i }) { invoice { status number issuedOn dueOn balance } } }', { i: invoice.rowId })).sendInvoice.invoice;
  expect(issued).toMatchObject({ status: 'sent', number: 1, balance: '540.00' });
  const pay = (amount: string) => call('mutation($i: UUID!, $a: BigFloat!) { recordPayment(input: { invoiceId: $i, amount: $a, method: card }) { payment { amount } } }', { i: invoice.rowId, a: amount });
  expect((await pay('200')).errors).toBeUndefined();
  const over = await pay('340.01');
  expect(errorCode(over)).toBe('OVERPAYMENT');
  expect(over.errors![0].message).toBe('The payment of 340.01 is more than the balance of 340.00.');
  expect((await pay('340')).errors).toBeUndefined();
  const paid = (await ok('query($o: UUID!, $i: UUID!) { invoice(organizationId: $o, rowId: $i) { status amountPaid balance paidAt } }', { o: orgId, i: invoice.rowId })).invoice;
  expect(paid).toMatchObject({ status: 'paid', amountPaid: '540.00', balance: '0.00' });
  expect(paid.paidAt).toEqual(expect.any(String));
  expect(errorCode(await pay('1'))).toBe('NOT_PAYABLE');

  // Every step was audited.
  const events = (await ok('{ activityEvents(first: 100) { totalCount } }')).activityEvents.totalCount;
  expect(events).toBeGreaterThan(20);
}, 60_000);
