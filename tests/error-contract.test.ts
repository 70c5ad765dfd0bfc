// One error contract (docs/ERRORS.md): every code the document lists — in every table: the
// database's catalogue, the further SQLSTATEs, the rules of value types, the HTTP layer and the
// GraphQL layer — is provoked here for real, and its answer checked: `extensions.code` is the
// code, `extensions.httpStatus` the documented status, the HTTP status the one the document says
// (the documented one for the HTTP layer; 200 for an error of GraphQL execution; 400 for a document
// refused before it runs, to a client accepting application/graphql-response+json), and the
// message a sentence for people (no SQL, no stack). Then every catalogued failure path of a value
// (each row of app_private.error_sqlstates and app_private.domain_rules) answers its own code and
// message.
//
// The table PROVOKE below holds, for each code, how to provoke it. A code added to docs/ERRORS.md
// without an entry fails this file, and so does an entry for a code the document does not list.
// Most codes are provoked over real HTTP against two apps: the ordinary one, and `edge`, with
// the small limits that RATE_LIMITED, SERVICE_UNAVAILABLE, RESPONSE_TOO_LARGE,
// PERSISTED_OPERATION_REQUIRED and QUERY_TIMEOUT need. A few cannot be reached by any request;
// for those the real PostgreSQL error is raised in SQL and passed through the API's own mapping
// (makeMaskError with the catalogue, src/http/errors.ts), and the entry says why.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type pg from 'pg';
import { GraphQLError } from 'postgraphile/graphql';
import { createTokenService } from '../src/auth/tokens.ts';
import { startAtrium, type Atrium } from '../src/index.ts';
import { pgSettingsFor } from '../src/http/auth.ts';
import { EDGE_ERRORS, ErrorCatalog, makeMaskError } from '../src/http/errors.ts';
import { createLogger } from '../src/log.ts';
import { ROOT } from '../src/paths.ts';
import { confirmationToken, tokenFor } from './support/app.ts';
import { addMember, asVisitor, closePools, inTransaction, pgError, pool, roleName, sessionOf, signUp, testConfig, unique, urlFor, type User } from './support/db.ts';
import { commitAs, one, oneTenant, signedEngagement, type Tenant } from './support/fixtures.ts';
import { DOMAIN_RULE_SAMPLES, SQLSTATE_SAMPLES } from './support/value-errors.ts';

// ---------------------------------------------------------------------------------------------
// What docs/ERRORS.md documents

interface DocumentedRow {
  section: string;
  code: string;
  /** The row's HTTP column, in tables that have one. */
  httpStatus?: number;
}

/**
 * Every row of every table of `markdown` that has a `code` column, with its `HTTP` column when the
 * table has one. Read by the tables' headers, so a new table of codes is read too.
 */
function documentedRows(markdown: string): DocumentedRow[] {
  const rows: DocumentedRow[] = [];
  let section = '';
  let header: string[] | undefined;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('#')) section = line.replace(/^#+\s*/, '');
    if (!line.startsWith('|')) {
      header = undefined;
      continue;
    }
    const cells = line.replace(/^\|/, '').replace(/\|\s*$/, '').split('|').map((cell) => cell.trim());
    if (!header) {
      header = cells.map((cell) => cell.toLowerCase());
      continue;
    }
    if (cells.every((cell) => /^:?-+:?$/.test(cell))) continue;
    const codeAt = header.indexOf('code');
    if (codeAt < 0) continue;
    const httpAt = header.indexOf('http');
    rows.push({ section, code: cells[codeAt]!.replace(/`/g, ''), ...(httpAt >= 0 ? { httpStatus: Number(cells[httpAt]) } : {}) });
  }
  return rows;
}

const DOCUMENTED_ROWS = documentedRows(fs.readFileSync(path.join(ROOT, 'docs/ERRORS.md'), 'utf8'));
/** Each documented code, once (its status: tested below to be one per code). */
const DOCUMENTED_CODES = [...new Set(DOCUMENTED_ROWS.map((row) => row.code))].sort();
const documentedStatus = (code: string): number | undefined => DOCUMENTED_ROWS.find((row) => row.code === code && row.httpStatus !== undefined)?.httpStatus;

// ---------------------------------------------------------------------------------------------
// Fixtures: one tenant, two apps, the catalogue

let t: Tenant;
/** An organization member whose only role is "Role manager" (roles.read, roles.write). */
let roleManager: User;
let catalog: ErrorCatalog;
/** The ordinary app (webhook URLs checked as in production). */
let app: Atrium;
/** An app with small limits: see EDGE_ENV. */
let edge: Atrium;
let ownerToken: string;
const operationsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-error-contract-'));

/** Registered operations of the edge app (it runs only these: PERSISTED_OPERATIONS). */
const OPERATIONS = {
  // Waits on a row lock the test holds: a request in progress for as long as the test wants.
  hold: 'mutation($o: UUID!, $id: UUID!) { updateClientCompany(input: { organizationId: $o, rowId: $id, patch: { notes: "held" } }) { clientMutationId } }',
  // An answer far above GRAPHQL_MAX_RESPONSE_BYTES.
  schema: '{ __schema { types { name description } } }',
  // Files, whose store (S3 at a closed port) does not answer.
  requestUpload: 'mutation { requestFileUpload(input: { name: "a.pdf", contentType: "application/pdf", sizeBytes: "10" }) { fileObject { rowId } } }',
  completeUpload: 'mutation($id: UUID!) { completeFileUpload(input: { id: $id }) { clientMutationId: __typename } }',
};

const EDGE_ENV = {
  PERSISTED_OPERATIONS: operationsDir,
  RATE_LIMIT_ANONYMOUS: '2/1m',
  GRAPHQL_MAX_CONCURRENT: '1',
  GRAPHQL_MAX_QUEUED: '0',
  GRAPHQL_MAX_RESPONSE_BYTES: '1024',
  STATEMENT_TIMEOUT_MS: '2500',
  // A file store that does not answer (STORAGE_UNAVAILABLE).
  FILES_DRIVER: 's3',
  S3_ENDPOINT: 'http://127.0.0.1:9',
  S3_BUCKET: 'atrium-files',
  S3_ACCESS_KEY_ID: 'test',
  S3_SECRET_ACCESS_KEY: 'test-secret',
};

/** What the apps log (read as JSON lines, never printed). */
const appLog: Array<{ level: number; name: string; msg?: string }> = [];

function startApp(name: string, env: Record<string, string>): Promise<Atrium> {
  const config = testConfig({ DATABASE_URL: urlFor('owner'), ...env });
  const log = createLogger('info', name, { write: (line: string) => void appLog.push(JSON.parse(line)) });
  return startAtrium(config, log, { api: true, worker: false });
}

/** The first row of `sql`, run as the owner role (no row-level security). */
async function ownerRow<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T> {
  const { rows } = await pool('owner').query<T>(sql, params);
  if (!rows[0]) throw new Error(`no row: ${sql}`);
  return rows[0];
}

const memberIdOf = async (user: User): Promise<string> =>
  (await pool('owner').query<{ id: string }>('select id from app_public.organization_members where organization_id = $1 and user_id = $2', [t.orgId, user.userId])).rows[0]!.id;

beforeAll(async () => {
  for (const [id, document] of Object.entries(OPERATIONS)) fs.writeFileSync(path.join(operationsDir, `${id}.graphql`), document);
  [t, catalog, app, edge] = await Promise.all([
    oneTenant('contract'),
    ErrorCatalog.load(urlFor('owner')),
    startApp('error-contract', { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'false' }),
    startApp('error-contract-edge', EDGE_ENV),
  ]);
  ownerToken = await tokenFor(t.owner, t.orgId);
  roleManager = await addMember(t.orgId, t.owner, 'member', 'role-manager');
  const managerId = await memberIdOf(roleManager);
  await commitAs(sessionOf(t.owner, t.orgId), async (c) => {
    const role = await one<{ id: string }>(c, `insert into app_public.roles (name) values ('Role manager') returning id`);
    await c.query(`insert into app_public.role_permissions (role_id, permission_key) values ($1, 'roles.read'), ($1, 'roles.write')`, [role.id]);
    await c.query('insert into app_public.role_assignments (member_id, role_id) values ($1, $2)', [managerId, role.id]);
  });
}, 120_000);

afterAll(async () => {
  await Promise.all([app?.stop(), edge?.stop()]);
  await closePools();
  fs.rmSync(operationsDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// How an answer is obtained, and checked

interface ErrorEntry {
  message: string;
  extensions?: Record<string, unknown>;
}

interface Answer {
  status: number;
  retryAfter: string | null;
  body: { data?: unknown; errors?: ErrorEntry[] };
}

/**
 * How a provoked error reached us, which says which HTTP status it must come with:
 *  - http:     answered by the HTTP layer: the documented status;
 *  - graphql:  an error of GraphQL execution (or a refused document, to an application/json
 *              client): 200;
 *  - document: a document refused before it runs, to a client accepting
 *              application/graphql-response+json: 400;
 *  - mapping:  a real PostgreSQL error no request can provoke, through the API's mapping
 *              (makeMaskError): no HTTP status.
 */
type Via = 'http' | 'graphql' | 'document' | 'mapping';

interface Provoked {
  via: Via;
  /** What was done (named in a failure). */
  how: string;
  status?: number;
  retryAfter?: string | null;
  error: ErrorEntry | undefined;
}

const MODERN_ACCEPT = 'application/graphql-response+json, application/json;q=0.9';

async function send(base: string, init: { method?: string; path?: string; headers?: Record<string, string>; body?: string }): Promise<Answer> {
  const response = await fetch(`${base}${init.path ?? '/graphql'}`, { method: init.method ?? 'POST', headers: init.headers, body: init.body });
  const text = await response.text();
  return { status: response.status, retryAfter: response.headers.get('retry-after'), body: JSON.parse(text) as Answer['body'] };
}

const post = (base: string, body: unknown, options: { token?: string; accept?: string } = {}): Promise<Answer> =>
  send(base, {
    headers: { 'content-type': 'application/json', accept: options.accept ?? MODERN_ACCEPT, ...(options.token ? { authorization: `Bearer ${options.token}` } : {}) },
    body: JSON.stringify(body),
  });

const provoked = (via: Via, how: string, answer: Answer): Provoked => ({ via, how, status: answer.status, retryAfter: answer.retryAfter, error: answer.body.errors?.[0] });

/** No Authorization header. */
const ANONYMOUS = null;

/** An error of GraphQL execution, over HTTP to the ordinary app (as the tenant's owner unless `token` says otherwise). */
async function run(how: string, query: string, variables: Record<string, unknown> = {}, token: string | null = ownerToken): Promise<Provoked> {
  return provoked('graphql', how, await post(app.url!, { query, variables }, { token: token ?? undefined }));
}

/** A document refused before it runs: 400 to a modern client, 200 to an application/json one. */
async function refuse(how: string, query: string): Promise<Provoked[]> {
  return [
    provoked('document', how, await post(app.url!, { query }, { token: ownerToken })),
    provoked('graphql', `${how} (accept: application/json)`, await post(app.url!, { query }, { token: ownerToken, accept: 'application/json' })),
  ];
}

/** What the API answers for `error` (a real PostgreSQL error, or anything else) through its own mapping. */
function mapped(how: string, error: unknown, log = createLogger('silent')): Provoked {
  const masked = makeMaskError(catalog, log)(new GraphQLError('masked', { originalError: error as Error, path: ['field'] }));
  return { via: 'mapping', how, error: { message: masked.message, extensions: masked.extensions as Record<string, unknown> } };
}

/** Runs `fn` exactly as an API request would (the visitor role, the API's settings), as the tenant's owner; rolled back. */
const asApi = (fn: (c: pg.PoolClient) => Promise<unknown>) =>
  inTransaction('authenticator', pgSettingsFor(testConfig(), { userId: t.owner.userId, sessionId: t.owner.sessionId, organizationId: t.orgId }, '127.0.0.1'), fn, false);

/** Runs `fn` as a service holding the producer role (the SQL API of app_private.enqueue_job); rolled back. */
const asProducer = (fn: (c: pg.PoolClient) => Promise<unknown>) => inTransaction('superuser', { role: roleName('producer') }, fn, false);

/** Words of PostgreSQL's and Node's own messages: never in a message for people. */
const NOT_FOR_PEOPLE = [
  /violates/i, /\brelation "/i, /constraint "/i, /\bcolumn "/i, /duplicate key/i, /null value in/i, /permission denied for/i,
  /syntax error at or near/i, /invalid input syntax/i, /\bSQLSTATE\b/i, /\bdeadlock detected\b/i, /could not serialize/i,
  /canceling statement/i, /\n\s+at /, /\bat [\w$.<>]+ \(/, /\.(?:ts|js|cjs|mjs):\d+/, /\b(?:Type|Reference|Range)Error\b/,
];

function expectMessageForPeople(code: string, message: string | undefined): void {
  expect({ code, message: typeof message === 'string' && message.length >= 10 && !message.includes('\n') ? 'a sentence' : message }).toEqual({ code, message: 'a sentence' });
  expect({ code, message, sqlOrStack: NOT_FOR_PEOPLE.filter((words) => words.test(message!)).map(String) }).toEqual({ code, message, sqlOrStack: [] });
}

function expectAnswer(code: string, httpStatus: number, answer: Provoked): void {
  const expectedStatus = { http: httpStatus, graphql: 200, document: 400, mapping: undefined }[answer.via];
  expect({ how: answer.how, code: answer.error?.extensions?.code, httpStatus: answer.error?.extensions?.httpStatus, status: answer.status })
    .toEqual({ how: answer.how, code, httpStatus, status: expectedStatus });
  expectMessageForPeople(code, answer.error?.message);
  // A client told to come back later is told when (RATE_LIMITED, SERVICE_UNAVAILABLE).
  if (answer.via === 'http' && (httpStatus === 429 || httpStatus === 503)) expect({ how: answer.how, retryAfter: Number(answer.retryAfter) > 0 }).toEqual({ how: answer.how, retryAfter: true });
}

// ---------------------------------------------------------------------------------------------
// Requests used by several entries

const CREATE_CLIENT = 'mutation { createClientCompany(input: { clientCompany: { name: "Globex" } }) { clientCompany { rowId } } }';
const REGISTER = 'mutation($input: RegisterInput!) { register(input: $input) { requested } }';
const CONFIRM = 'mutation($input: ConfirmRegistrationInput!) { confirmRegistration(input: $input) { accessToken } }';
const LOGIN = 'mutation($input: LoginInput!) { login(input: $input) { accessToken } }';
const UPDATE_MEMBER = 'mutation($o: UUID!, $m: UUID!, $role: MemberRole!) { updateOrganizationMember(input: { organizationId: $o, rowId: $m, patch: { role: $role } }) { clientMutationId } }';
const UPDATE_ORGANIZATION = 'mutation($o: UUID!, $patch: OrganizationPatch!) { updateOrganization(input: { rowId: $o, patch: $patch }) { clientMutationId } }';
const UPDATE_INVOICE = 'mutation($o: UUID!, $i: UUID!, $patch: InvoicePatch!) { updateInvoice(input: { organizationId: $o, rowId: $i, patch: $patch }) { clientMutationId } }';
const CREATE_CONTACT = 'mutation($c: UUID!, $email: String) { createContact(input: { contact: { clientCompanyId: $c, firstName: "Ada", email: $email } }) { clientMutationId } }';
const RECORD_PAYMENT = 'mutation($i: UUID!, $amount: BigFloat!) { recordPayment(input: { invoiceId: $i, amount: $amount, receivedOn: "2026-01-20", method: bank_transfer }) { clientMutationId } }';
const REQUEST_UPLOAD = 'mutation($input: RequestFileUploadInput!) { requestFileUpload(input: $input) { fileObject { rowId } } }';
const COMPLETE_UPLOAD = 'mutation($id: UUID!) { completeFileUpload(input: { id: $id }) { fileObject { rowId } } }';
/** A file waiting for its upload (10 bytes of PDF), requested by the owner. */
async function requestedFile(): Promise<string> {
  const answer = await post(app.url!, { query: REQUEST_UPLOAD, variables: { input: { name: 'a.pdf', contentType: 'application/pdf', sizeBytes: '10' } } }, { token: ownerToken });
  return (answer.body.data as { requestFileUpload: { fileObject: { rowId: string } } }).requestFileUpload.fileObject.rowId;
}
const newEmail = (label: string) => `${unique(label)}@example.com`;
const PASSWORD = 'correct horse battery';

/**
 * Holds a row lock while the edge app's registered `hold` request waits on it (so the app's only
 * request slot is taken: GRAPHQL_MAX_CONCURRENT=1), runs `during`, then lets go; returns what
 * `during` returned and the held request's answer.
 */
async function holdingTheEdgeApp<T>(during: (held: Promise<Answer>) => Promise<T>): Promise<{ during: T; held: Answer }> {
  const locker = await pool('owner').connect();
  let held: Promise<Answer> | undefined;
  try {
    await locker.query('begin');
    await locker.query('select 1 from app_public.client_companies where organization_id = $1 and id = $2 for update', [t.orgId, t.clientId]);
    const { pid } = await one<{ pid: number }>(locker, 'select pg_backend_pid() as pid');
    held = post(edge.url!, { documentId: 'hold', variables: { o: t.orgId, id: t.clientId } }, { token: ownerToken });
    held.catch(() => undefined);
    for (const deadline = Date.now() + 20_000; ; await sleep(20)) {
      const { rows } = await pool('owner').query<{ waiting: boolean }>('select exists (select from pg_stat_activity where $1 = any (pg_blocking_pids(pid))) as waiting', [pid]);
      if (rows[0]!.waiting) break;
      if (Date.now() > deadline) throw new Error('the held request never reached the lock');
    }
    const result = await during(held);
    await locker.query('rollback');
    return { during: result, held: await held };
  } finally {
    await locker.query('rollback').catch(() => undefined);
    locker.release();
    await held?.catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// code → how to provoke it

type Provoke = () => Promise<Provoked | Provoked[]>;

const PROVOKE: Record<string, Provoke> = {
  // ---- From the database: raised by PostgreSQL itself
  VALUE_TOO_LONG: () => run('a currency of four letters (char(3))', UPDATE_ORGANIZATION, { o: t.orgId, patch: { currency: 'EURO' } }),
  // Raised by name (app_private.fail) with SQLSTATE 22023, which PostgreSQL raises too: the
  // message the SQL wrote reaches the client, not the catalogue's generic one. The same SQLSTATE
  // raised otherwise (here by the producers' SQL API, for services, not people) answers the
  // catalogue's message.
  INVALID_VALUE: async () => {
    const byName = await run('register with an empty name', REGISTER, { input: { email: newEmail('noname'), password: PASSWORD, name: '  ' } }, ANONYMOUS);
    expect(byName.error?.message).toBe('The name must be 1 to 200 characters long.');
    const otherwise = mapped('a producer queues a job for an organization that does not exist', await pgError(asProducer((c) => c.query(`select app_private.enqueue_job('echo', $1)`, [randomUUID()]))));
    expect(otherwise.error?.message).toBe(catalog.byCode('INVALID_VALUE').description);
    return [byName, otherwise];
  },
  // Not over HTTP: every value a client sends is parsed by the API's scalars first (UUID, BigInt,
  // BigFloat, Date, Datetime: INVALID_VALUE naming the argument), and no function casts a text
  // argument; only SQL clients get PostgreSQL's 22P02.
  INVALID_INPUT: async () => mapped('a malformed UUID in SQL', await pgError(asApi((c) => c.query(`select app_public.send_invoice('not-a-uuid')`)))),
  REQUIRED_VALUE: () => run('a client company patched to no name', 'mutation($o: UUID!, $c: UUID!) { updateClientCompany(input: { organizationId: $o, rowId: $c, patch: { name: null } }) { clientMutationId } }', { o: t.orgId, c: t.clientId }),
  INVALID_REFERENCE: () => run('a contact of a client company that does not exist', CREATE_CONTACT, { c: randomUUID() }),
  ALREADY_EXISTS: async () => {
    const create = 'mutation($name: String!) { createRole(input: { role: { name: $name } }) { clientMutationId } }';
    const name = unique('Auditor');
    const first = await run('a role', create, { name });
    expect(first.error).toBeUndefined();
    return run('a second role of the same name', create, { name });
  },
  CONSTRAINT_VIOLATION: () => run('payment terms of 999 days (a check constraint)', UPDATE_ORGANIZATION, { o: t.orgId, patch: { paymentTermsDays: 999 } }),
  // Not over HTTP: the API's transactions run at READ COMMITTED, where PostgreSQL never raises
  // 40001; a SQL client's SERIALIZABLE (or REPEATABLE READ) transaction does, here with an update
  // of a row another transaction changed after its snapshot.
  RETRY: async () => {
    const client = await pool('authenticator').connect();
    try {
      await client.query('begin isolation level serializable');
      await client.query('select set_config(key, value, true) from json_each_text($1)', [JSON.stringify(pgSettingsFor(testConfig(), { userId: t.owner.userId, sessionId: t.owner.sessionId, organizationId: t.orgId }))]);
      await client.query('select count(*) from app_public.client_companies'); // the snapshot
      await pool('owner').query(`update app_public.client_companies set notes = 'changed meanwhile' where organization_id = $1 and id = $2`, [t.orgId, t.clientId]);
      return mapped('an update under SERIALIZABLE of a row changed since the snapshot', await pgError(client.query(`update app_public.client_companies set notes = 'mine' where id = $1`, [t.clientId])));
    } finally {
      await client.query('rollback');
      client.release();
    }
  },
  // Not over HTTP: every API function that touches several rows locks them in one order (parent
  // before children), so two requests do not deadlock by design; two SQL transactions taking two
  // rows in opposite orders do (PostgreSQL aborts one after deadlock_timeout).
  DEADLOCK: async () => {
    const [a, b] = await Promise.all([pool('authenticator').connect(), pool('authenticator').connect()]);
    const settings = JSON.stringify(pgSettingsFor(testConfig(), { userId: t.owner.userId, sessionId: t.owner.sessionId, organizationId: t.orgId }));
    const { id: other } = await ownerRow<{ id: string }>(`select id from app_public.client_companies where organization_id = $1 and id <> $2 order by id limit 1`, [t.orgId, t.clientId]);
    const touch = (c: pg.PoolClient, id: string) => c.query(`update app_public.client_companies set notes = 'deadlock' where id = $1`, [id]);
    try {
      for (const c of [a, b]) {
        await c.query('begin');
        await c.query('select set_config(key, value, true) from json_each_text($1)', [settings]);
      }
      await touch(a, t.clientId);
      await touch(b, other);
      const outcomes = await Promise.allSettled([touch(a, other), touch(b, t.clientId)]);
      const failed = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
      expect(failed).toHaveLength(1);
      return mapped('two transactions updating two rows in opposite orders', failed[0]!.reason);
    } finally {
      await Promise.all([a, b].map((c) => c.query('rollback')));
      a.release();
      b.release();
    }
  },
  FORBIDDEN: async () => run('a viewer adds a client company (row-level security)', CREATE_CLIENT, {}, await tokenFor(t.viewer, t.orgId)),

  // ---- From the database: raised by Atrium's functions and triggers
  UNAUTHENTICATED: () => run('adding a record without signing in', CREATE_CLIENT, {}, ANONYMOUS),
  NO_ORGANIZATION: async () => run('adding a record before choosing an organization', CREATE_CLIENT, {}, await tokenFor(t.owner, null)),
  NOT_PERMITTED: async () => run('a viewer invites a member', 'mutation($e: String!) { inviteMember(input: { email: $e, role: member }) { clientMutationId } }', { e: newEmail('invitee') }, await tokenFor(t.viewer, t.orgId)),
  NOT_FOUND: async () => [
    await run('sending an invoice that does not exist', 'mutation($i: UUID!) { sendInvoice(input: { invoiceId: $i }) { clientMutationId } }', { i: randomUUID() }),
    provoked('http', 'a path that does not exist', await send(app.url!, { method: 'GET', path: '/nowhere' })),
  ],
  INVALID_CREDENTIALS: () => run('signing in with a wrong password', LOGIN, { input: { email: newEmail('nobody'), password: 'not the password' } }, ANONYMOUS),
  INVALID_REFRESH_TOKEN: () => run('refreshing with an unknown token', 'mutation { refresh(input: { refreshToken: "no-such-token" }) { accessToken } }', {}, ANONYMOUS),
  EMAIL_TAKEN: async () => {
    const email = newEmail('taken');
    const registered = await run('register', REGISTER, { input: { email, password: PASSWORD, name: 'Late' } }, ANONYMOUS);
    expect(registered.error).toBeUndefined();
    const token = await confirmationToken(email);
    await signUp('taken', email); // someone else's account got the address meanwhile
    return run('confirming a registration whose address got an account meanwhile', CONFIRM, { input: { token, password: PASSWORD } }, ANONYMOUS);
  },
  WEAK_PASSWORD: () => run('register with a short password', REGISTER, { input: { email: newEmail('weak'), password: 'short', name: 'Weak' } }, ANONYMOUS),
  INVALID_EMAIL: () => run('register with a malformed address', REGISTER, { input: { email: 'not-an-address', password: PASSWORD, name: 'Nobody' } }, ANONYMOUS),
  TOO_MANY_ATTEMPTS: async () => {
    const input = { email: newEmail('guessed'), password: 'a wrong guess' };
    for (let i = 0; i < 5; i++) expect((await run('a wrong password', LOGIN, { input }, ANONYMOUS)).error?.extensions?.code).toBe('INVALID_CREDENTIALS');
    return run('a sixth sign-in right after five wrong passwords from one address', LOGIN, { input }, ANONYMOUS);
  },
  RESET_TOKEN_INVALID: () => run('resetting a password with an unknown token', 'mutation { resetPassword(input: { token: "no-such-token", newPassword: "a brand new password" }) { accessToken } }', {}, ANONYMOUS),
  RESET_TOKEN_EXPIRED: async () => {
    const user = await signUp('reset-expired');
    // The worker's half of requestPasswordReset, and the token it emails (read in its transaction,
    // before any worker of another test file sends the email and forgets it).
    await inTransaction('worker', {}, (c) => c.query('select app_private.start_password_reset($1)', [user.email]), true);
    const { token } = await ownerRow<{ token: string }>(
      `select s.secrets->>'token' as token from app_private.password_reset_tokens t join app_private.email_secrets s on s.message_key = 'password_reset:' || t.id where t.user_id = $1`,
      [user.userId],
    );
    await pool('owner').query(`update app_private.password_reset_tokens set expires_at = now() - interval '1 second' where user_id = $1`, [user.userId]);
    return run('resetting a password with an expired token', 'mutation($t: String!) { resetPassword(input: { token: $t, newPassword: "a brand new password" }) { accessToken } }', { t: token }, ANONYMOUS);
  },
  REGISTRATION_TOKEN_INVALID: () => run('confirming a registration with an unknown token', CONFIRM, { input: { token: 'no-such-token', password: PASSWORD } }, ANONYMOUS),
  REGISTRATION_TOKEN_EXPIRED: async () => {
    const email = newEmail('late');
    expect((await run('register', REGISTER, { input: { email, password: PASSWORD, name: 'Late' } }, ANONYMOUS)).error).toBeUndefined();
    const token = await confirmationToken(email);
    await pool('owner').query(`update app_private.registrations set expires_at = now() - interval '1 second' where email = $1`, [email]);
    return run('confirming a registration with an expired token', CONFIRM, { input: { token, password: PASSWORD } }, ANONYMOUS);
  },
  LAST_OWNER: async () => run('the only owner makes themself admin', UPDATE_MEMBER, { o: t.orgId, m: await memberIdOf(t.owner), role: 'admin' }),
  OWNER_REQUIRED: async () => run('an admin makes a member owner', UPDATE_MEMBER, { o: t.orgId, m: await memberIdOf(t.member), role: 'owner' }, await tokenFor(t.admin, t.orgId)),
  INVITATION_INVALID: () => run('accepting an unknown invitation', 'mutation { acceptInvitation(input: { token: "no-such-token" }) { clientMutationId } }'),
  ALREADY_MEMBER: () => run('inviting a member', 'mutation($e: String!) { inviteMember(input: { email: $e, role: member }) { clientMutationId } }', { e: t.member.email }),
  NOT_RESTORABLE: () => run('restoring a client company that is not deleted', 'mutation($c: UUID!) { restoreClientCompany(input: { id: $c }) { clientMutationId } }', { c: t.clientId }),
  // Not over HTTP: a membership's user and organization are not in OrganizationMemberPatch (only
  // its role is), so no request can try to move one; the trigger guards every other writer, here
  // the owner role (maintenance).
  IMMUTABLE: async () => {
    const client = await pool('owner').connect();
    try {
      await client.query('begin');
      return mapped('moving a membership to another user in SQL', await pgError(client.query('update app_public.organization_members set user_id = $2 where id = $1', [await memberIdOf(t.member), t.viewer.userId])));
    } finally {
      await client.query('rollback');
      client.release();
    }
  },
  INVALID_TRANSITION: () => run('cancelling an invoice with payments', 'mutation($i: UUID!) { cancelInvoice(input: { invoiceId: $i }) { clientMutationId } }', { i: t.invoiceId }),
  NOT_EDITABLE: () => run('adding a line to a sent invoice', 'mutation($i: UUID!) { createInvoiceLineItem(input: { invoiceLineItem: { invoiceId: $i, description: "Extra", unitPrice: "10" } }) { clientMutationId } }', { i: t.invoiceId }),
  HAS_LIVE_ENGAGEMENTS: () => run('deleting a client company with an active engagement', 'mutation($c: UUID!) { softDeleteClientCompany(input: { id: $c }) { clientMutationId } }', { c: t.clientId }),
  OVERPAYMENT: () => run('paying a billion on a partly paid invoice', RECORD_PAYMENT, { i: t.invoiceId, amount: '1000000000' }),
  NOT_PAYABLE: () => run('paying a draft invoice', RECORD_PAYMENT, { i: t.draftInvoiceId, amount: '1' }),
  EMPTY_DOCUMENT: async () => {
    const created = await post(app.url!, { query: 'mutation($c: UUID!) { createInvoice(input: { invoice: { clientCompanyId: $c } }) { invoice { rowId } } }', variables: { c: t.clientId } }, { token: ownerToken });
    const invoiceId = (created.body.data as { createInvoice: { invoice: { rowId: string } } }).createInvoice.invoice.rowId;
    return run('sending an invoice without lines', 'mutation($i: UUID!) { sendInvoice(input: { invoiceId: $i }) { clientMutationId } }', { i: invoiceId });
  },
  CREDIT_EXCEEDS_INVOICE: () => run('crediting a billion on an invoice', 'mutation($i: UUID!) { issueCreditNote(input: { invoiceId: $i, amount: "1000000000" }) { clientMutationId } }', { i: t.invoiceId }),
  REFUND_EXCEEDS_CREDIT: () => run('refunding an invoice the client still owes on', 'mutation($i: UUID!) { recordRefund(input: { invoiceId: $i, amount: "1" }) { clientMutationId } }', { i: t.invoiceId }),
  BUDGET_CAP_EXCEEDED: async () => {
    // An engagement capped at 100, and an invoice of 150 for it.
    const invoiceId = await commitAs(sessionOf(t.owner, t.orgId), async (c) => {
      const sold = await signedEngagement(c, 'capped');
      await c.query(`insert into app_public.budgets (engagement_id, name, kind, amount) values ($1, 'Cap', 'capped', 100)`, [sold.engagementId]);
      return (await c.query(`select id from app_public.create_invoice_with_lines($1, array[row('Work', 1, 150, null)]::app_public.document_line[], engagement_id => $2)`, [sold.clientId, sold.engagementId])).rows[0].id as string;
    });
    return run('sending an invoice past a capped budget', 'mutation($i: UUID!) { sendInvoice(input: { invoiceId: $i }) { clientMutationId } }', { i: invoiceId });
  },
  TAX_CODE_IN_USE: async () => {
    // A code on a sent invoice, then its rate changed.
    const componentId = await commitAs(sessionOf(t.owner, t.orgId), async (c) => {
      const code = await one<{ id: string }>(c, `insert into app_public.tax_codes (code, name) values ('STD-IN-USE', 'Standard') returning id`);
      const component = await one<{ id: string }>(c, `insert into app_public.tax_code_components (tax_code_id, name, rate) values ($1, 'VAT', 20) returning id`, [code.id]);
      const invoice = await one<{ id: string }>(c, 'insert into app_public.invoices (client_company_id, engagement_id) values ($1, $2) returning id', [t.clientId, t.engagementId]);
      await c.query(`insert into app_public.invoice_line_items (invoice_id, description, unit_price, tax_code_id) values ($1, 'Work', 100, $2)`, [invoice.id, code.id]);
      await c.query('select app_public.send_invoice($1)', [invoice.id]);
      return component.id;
    });
    return run('changing the rate of a tax code a sent invoice uses', 'mutation($o: UUID!, $id: UUID!) { updateTaxCodeComponent(input: { organizationId: $o, rowId: $id, patch: { rate: "21" } }) { clientMutationId } }', { o: t.orgId, id: componentId });
  },
  NOT_CREDITABLE: () => run('crediting a draft invoice', 'mutation($i: UUID!) { issueCreditNote(input: { invoiceId: $i, amount: "1" }) { clientMutationId } }', { i: t.draftInvoiceId }),
  RATE_MISSING: async () => {
    // An engagement without a rate of its own, and a member without a job role (the fixture's
    // organization prices designers only).
    const { engagementId, memberId } = await commitAs(sessionOf(t.owner, t.orgId), async (c) => {
      const e = await signedEngagement(c, 'unpriced');
      await c.query('update app_public.engagements set hourly_rate = null where id = $1', [e.engagementId]);
      const m = await one<{ id: string }>(c, 'select id from app_public.organization_members where user_id = $1', [t.member.userId]);
      return { engagementId: e.engagementId, memberId: m.id };
    });
    return run('logging billable time on an engagement no rate prices', 'mutation($e: UUID!, $m: UUID!) { createTimeEntry(input: { timeEntry: { engagementId: $e, memberId: $m, minutes: 30 } }) { clientMutationId } }', { e: engagementId, m: memberId });
  },
  EXPIRED: async () => {
    const created = await post(app.url!, {
      query: 'mutation($c: UUID!) { createProposal(input: { proposal: { clientCompanyId: $c, title: "Old offer", validUntil: "2000-01-31" } }) { proposal { rowId } } }',
      variables: { c: t.clientId },
    }, { token: ownerToken });
    const proposalId = (created.body.data as { createProposal: { proposal: { rowId: string } } }).createProposal.proposal.rowId;
    const line = await run('a line', 'mutation($p: UUID!) { createProposalLineItem(input: { proposalLineItem: { proposalId: $p, description: "Work", unitPrice: "100" } }) { clientMutationId } }', { p: proposalId });
    const sent = await run('sending it', 'mutation($p: UUID!) { sendProposal(input: { proposalId: $p }) { clientMutationId } }', { p: proposalId });
    expect([line.error, sent.error]).toEqual([undefined, undefined]);
    return run('accepting a proposal past its validity date', 'mutation($p: UUID!) { acceptProposal(input: { proposalId: $p }) { clientMutationId } }', { p: proposalId });
  },
  INVALID_EVENT_TYPE: () => run('a webhook endpoint for an event type that does not exist', 'mutation { createWebhookEndpoint(input: { url: "https://hooks.example.test/x", eventTypes: ["no.such.event"] }) { clientMutationId } }'),
  NOT_RETRYABLE: async () => {
    const { id } = await ownerRow<{ id: string }>('select id from app_public.webhook_deliveries where organization_id = $1 limit 1', [t.orgId]);
    return run('retrying a delivery of a disabled endpoint', 'mutation($d: UUID!) { retryWebhookDelivery(input: { id: $d }) { clientMutationId } }', { d: id });
  },
  // Over HTTP, on the edge app (STATEMENT_TIMEOUT_MS=2500): a request whose statement waits on a
  // row lock the test holds is stopped by the statement timeout.
  QUERY_TIMEOUT: async () => provoked('graphql', 'a request waiting on a lock longer than STATEMENT_TIMEOUT_MS', (await holdingTheEdgeApp((held) => held)).held),
  // Not over HTTP: app_private.enqueue_job is the SQL API of other services (the producer role);
  // the GraphQL API queues no task by name.
  UNKNOWN_TASK: async () => mapped('a producer queues a task that is not theirs to queue', await pgError(asProducer((c) => c.query(`select app_private.enqueue_job('no_such_task', $1)`, [t.orgId])))),
  PERMISSION_NOT_HELD: async () => {
    const { id: roleId } = await ownerRow<{ id: string }>(`select id from app_public.roles where organization_id = $1 and name = 'Billing clerk'`, [t.orgId]);
    return run('a role manager adds a permission they do not hold to a role', 'mutation($r: UUID!) { createRolePermission(input: { rolePermission: { roleId: $r, permissionKey: "invoices.write" } }) { clientMutationId } }', { r: roleId }, await tokenFor(roleManager, t.orgId));
  },
  FILE_TOO_LARGE: () => run('a file above the organization\'s limit (100 MiB)', REQUEST_UPLOAD, { input: { name: 'huge.zip', contentType: 'application/zip', sizeBytes: String(100 * 1024 * 1024 + 1) } }),
  FILE_TYPE_NOT_ALLOWED: () => run('a file of a type the organization does not take', REQUEST_UPLOAD, { input: { name: 'tool.exe', contentType: 'application/x-msdownload', sizeBytes: '10' } }),
  FILE_NOT_UPLOADED: async () => run('completing an upload before the bytes were sent', COMPLETE_UPLOAD, { id: await requestedFile() }),
  FILE_UPLOAD_EXPIRED: async () => {
    const id = await requestedFile();
    await pool('owner').query(`update app_public.file_objects set upload_expires_at = now() - interval '1 second' where organization_id = $1 and id = $2`, [t.orgId, id]);
    return run('completing an upload after its window closed', COMPLETE_UPLOAD, { id });
  },
  FILE_UPLOAD_MISMATCH: async () => {
    const id = await requestedFile();
    // An object of another size under the file's key (a store that does not check its URLs).
    const file = path.join(process.env.FILES_DIR!, 'org', t.orgId, id);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, 'not ten bytes, more');
    return run('completing an upload whose object has another size', COMPLETE_UPLOAD, { id });
  },
  // Over HTTP, on the edge app, whose file store does not answer (S3 at a closed port).
  STORAGE_UNAVAILABLE: async () => {
    const requested = await post(edge.url!, { documentId: 'requestUpload' }, { token: ownerToken });
    const { rowId } = (requested.body.data as { requestFileUpload: { fileObject: { rowId: string } } }).requestFileUpload.fileObject;
    return provoked('graphql', 'completing an upload while the file store does not answer', await post(edge.url!, { documentId: 'completeUpload', variables: { id: rowId } }, { token: ownerToken }));
  },
  // Not over HTTP (nothing a request does is unexpected, or it would be fixed): an error the
  // mapping does not know, thrown into it, answers INTERNAL with an id, logged at error level with
  // the same id; the original message stays in the log.
  INTERNAL: async () => {
    const lines: Array<{ level: number; errorId?: string; err?: { message?: string } }> = [];
    const log = createLogger('info', 'error-contract-internal', { write: (line: string) => void lines.push(JSON.parse(line)) });
    const answer = mapped('a plain Error thrown while answering', new Error('disk on fire at step 3'), log);
    const errorId = answer.error?.extensions?.errorId;
    expect(errorId).toEqual(expect.stringMatching(/^[0-9a-f-]{36}$/));
    expect(answer.error?.message).toContain(String(errorId));
    expect(answer.error?.message).not.toContain('disk on fire');
    expect(lines.map((l) => ({ level: l.level, errorId: l.errorId, message: l.err?.message }))).toEqual([{ level: 50, errorId, message: 'disk on fire at step 3' }]);
    return answer;
  },

  // ---- From the HTTP layer
  INVALID_TOKEN: async () => provoked('http', 'Authorization: Basic …', await send(app.url!, { headers: { 'content-type': 'application/json', authorization: 'Basic dXNlcjpwYXNz' }, body: '{"query":"{ __typename }"}' })),
  TOKEN_EXPIRED: async () => {
    const { token } = await createTokenService(process.env.JWT_SECRET!, -120).sign({ userId: t.owner.userId, sessionId: t.owner.sessionId, organizationId: t.orgId });
    return provoked('http', 'an access token that expired two minutes ago', await post(app.url!, { query: '{ __typename }' }, { token }));
  },
  BAD_REQUEST: async () => [
    provoked('http', 'a body that is not JSON', await send(app.url!, { headers: { 'content-type': 'application/json' }, body: '{not json' })),
    provoked('http', 'a body without a query', await send(app.url!, { headers: { 'content-type': 'application/json' }, body: '{"variables":{}}' })),
  ],
  REQUEST_TOO_LARGE: async () => provoked('http', 'a body above GRAPHQL_MAX_BODY_BYTES', await post(app.url!, { query: `{ __typename } # ${'x'.repeat(300 * 1024)}` })),
  UNSUPPORTED_MEDIA_TYPE: async () => provoked('http', 'a text/plain body', await send(app.url!, { headers: { 'content-type': 'text/plain' }, body: '{ __typename }' })),
  METHOD_NOT_ALLOWED: async () => provoked('http', 'GET /graphql', await send(app.url!, { method: 'GET' })),
  NOT_ACCEPTABLE: async () => provoked('http', 'Accept: text/html', await send(app.url!, { headers: { 'content-type': 'application/json', accept: 'text/html' }, body: '{"query":"{ __typename }"}' })),
  PERSISTED_OPERATION_REQUIRED: async () => provoked('http', 'a document that is not registered, where only registered ones run', await post(edge.url!, { query: '{ viewer { name } }' }, { token: ownerToken })),
  RESPONSE_TOO_LARGE: async () => provoked('http', 'an answer above GRAPHQL_MAX_RESPONSE_BYTES', await post(edge.url!, { documentId: 'schema' }, { token: ownerToken })),
  // Over HTTP (a busy server); and through the mapping, the errors of a database that cannot be
  // reached (tests/fault-injection.test.ts stops a real one under an API).
  SERVICE_UNAVAILABLE: async () => [
    provoked('http', 'a request while the only slot is taken and the queue holds none', (await holdingTheEdgeApp(() => post(edge.url!, { documentId: 'schema' }, { token: ownerToken }))).during),
    mapped('a connection cut while the request ran', new Error('Connection terminated unexpectedly')),
    mapped('a database that refuses connections', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })),
    mapped('a database shutting down', Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01', severity: 'FATAL' })),
    mapped('no connection within the pool\'s connection timeout', new Error('timeout exceeded when trying to connect')),
  ],
  RATE_LIMITED: async () => {
    // Anonymous requests to the edge app: two a minute.
    for (let i = 0; i < 5; i++) {
      const answer = await post(edge.url!, { documentId: 'schema' });
      if (answer.status === 429) return provoked('http', 'a third anonymous request within a minute (RATE_LIMIT_ANONYMOUS=2/1m)', answer);
    }
    throw new Error('no request was rate limited');
  },

  // ---- From the GraphQL layer
  QUERY_TOO_COMPLEX: () => refuse('25 aliases (GRAPHQL_MAX_ALIASES 20)', `{ ${Array.from({ length: 25 }, (_, i) => `a${i}: __typename`).join(' ')} }`),
  OPERATION_NOT_SUPPORTED: () => refuse('a subscription', 'subscription { anything }'),
  GRAPHQL_PARSE_FAILED: () => refuse('a document cut short', 'query {'),
  GRAPHQL_VALIDATION_FAILED: () => refuse('an unknown field', '{ nope }'),
  PAGE_SIZE_TOO_LARGE: () => run('first: 101', '{ clientCompanies(first: 101) { totalCount } }'),
  WEBHOOK_URL_NOT_ALLOWED: () => run('a webhook endpoint at a loopback address', 'mutation { createWebhookEndpoint(input: { url: "http://[::ffff:127.0.0.1]:9/hook", eventTypes: ["invoice.paid"] }) { clientMutationId } }'),
};

// ---------------------------------------------------------------------------------------------

describe('every code docs/ERRORS.md documents', () => {
  test('is read from every table of docs/ERRORS.md: the catalogue (app_private.error_codes) and the edge codes (EDGE_ERRORS) among them', () => {
    expect(DOCUMENTED_ROWS.filter((row) => !/^[A-Z][A-Z_]*$/.test(row.code))).toEqual([]);
    expect(DOCUMENTED_CODES).toEqual(expect.arrayContaining([...catalog.all.map((entry) => entry.code), ...Object.keys(EDGE_ERRORS)]));
  });

  test('has one HTTP status, wherever it is listed', () => {
    const statuses = DOCUMENTED_CODES.map((code) => ({ code, statuses: [...new Set(DOCUMENTED_ROWS.filter((row) => row.code === code && row.httpStatus !== undefined).map((row) => row.httpStatus))] }));
    expect(statuses.filter((s) => s.statuses.length !== 1 || !(s.statuses[0]! >= 400 && s.statuses[0]! <= 599))).toEqual([]);
  });

  test('has a way to be provoked here, and every way provokes a documented code', () => {
    expect({ withoutWay: DOCUMENTED_CODES.filter((code) => !PROVOKE[code]), undocumented: Object.keys(PROVOKE).filter((code) => !DOCUMENTED_CODES.includes(code)) })
      .toEqual({ withoutWay: [], undocumented: [] });
  });

  test.each(DOCUMENTED_CODES)('%s: provoked for real, answers its code, its documented status and a message for people', async (code) => {
    const provoke = PROVOKE[code];
    if (!provoke) throw new Error(`${code} is documented in docs/ERRORS.md, but tests/error-contract.test.ts has no way to provoke it (PROVOKE)`);
    const answers = [await provoke()].flat();
    expect(answers.length).toBeGreaterThan(0);
    for (const answer of answers) expectAnswer(code, documentedStatus(code)!, answer);
  });
});

describe('every catalogued failure path of a value', () => {
  // Over HTTP where a request reaches PostgreSQL's refusal; the other rows are values the API's
  // scalars refuse before they reach the database (tests/input-domains.test.ts), so a SQL client
  // is the one to meet them: their samples (tests/support/value-errors.ts) run as the API runs.
  const SQLSTATES_OVER_HTTP: Record<string, () => Promise<Provoked>> = {
    '22003': () => run('a tax rate of 1000 (numeric(5,2))', UPDATE_INVOICE, { o: t.orgId, i: t.draftInvoiceId, patch: { taxRate: '1000' } }),
  };
  const DOMAIN_RULES_OVER_HTTP: Record<string, () => Promise<Provoked>> = {
    percentage_range: () => run('a tax rate of 101', UPDATE_INVOICE, { o: t.orgId, i: t.draftInvoiceId, patch: { taxRate: '101' } }),
    email_address_format: () => run('a contact email with a space', CREATE_CONTACT, { c: t.clientId, email: 'ada lovelace@example.com' }),
    tax_percentage_range: async () => {
      const code = (await pool('owner').query<{ id: string }>(`select id from app_public.tax_codes where organization_id = $1 and code = 'VAT20'`, [t.orgId])).rows[0]!.id;
      return run('a tax of 101%', 'mutation($c: UUID!) { createTaxCodeComponent(input: { taxCodeComponent: { taxCodeId: $c, position: 2, name: "Levy", rate: "101" } }) { clientMutationId } }', { c: code });
    },
    retention_window_range: () => run('a webhook payload retention of 0 days', UPDATE_ORGANIZATION, { o: t.orgId, patch: { webhookPayloadRetentionDays: 0 } }),
  };
  const inSql = async (how: string, sql: string) => mapped(how, await pgError(asApi((c) => c.query(sql))));

  test('every further SQLSTATE (app_private.error_sqlstates) answers its code, its status and its message', async () => {
    const { rows } = await pool('owner').query<{ sqlstate: string; code: string; message: string }>('select sqlstate, code, message from app_private.error_sqlstates order by sqlstate');
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.filter((row) => !SQLSTATES_OVER_HTTP[row.sqlstate] && !SQLSTATE_SAMPLES[row.sqlstate]).map((row) => row.sqlstate)).toEqual([]);
    for (const row of rows) {
      const answer = SQLSTATES_OVER_HTTP[row.sqlstate] ? await SQLSTATES_OVER_HTTP[row.sqlstate]!() : await inSql(`SQLSTATE ${row.sqlstate}`, SQLSTATE_SAMPLES[row.sqlstate]!);
      expectAnswer(row.code, catalog.byCode(row.code).httpStatus, answer);
      expect({ sqlstate: row.sqlstate, message: answer.error?.message }).toEqual({ sqlstate: row.sqlstate, message: row.message });
    }
  });

  test('every rule of a value type (app_private.domain_rules) answers its code, its status and its message, naming the rule', async () => {
    const { rows } = await pool('owner').query<{ constraint_name: string; code: string; message: string }>('select constraint_name, code, message from app_private.domain_rules order by constraint_name');
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.filter((row) => !DOMAIN_RULES_OVER_HTTP[row.constraint_name] && !DOMAIN_RULE_SAMPLES[row.constraint_name]).map((row) => row.constraint_name)).toEqual([]);
    for (const row of rows) {
      const rule = row.constraint_name;
      const answer = DOMAIN_RULES_OVER_HTTP[rule] ? await DOMAIN_RULES_OVER_HTTP[rule]!() : await inSql(`rule ${rule}`, DOMAIN_RULE_SAMPLES[rule]!);
      expectAnswer(row.code, catalog.byCode(row.code).httpStatus, answer);
      expect({ rule, message: answer.error?.message, constraint: answer.error?.extensions?.constraint }).toEqual({ rule, message: row.message, constraint: rule });
    }
  });
});

test('the apps logged nothing at error level while answering every code (INTERNAL was provoked on a logger of its own)', () => {
  expect(appLog.filter((line) => line.level >= 50)).toEqual([]);
});
