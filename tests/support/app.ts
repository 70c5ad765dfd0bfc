// Atrium running in this test process, on a free port, against the run's database, spoken to
// over real HTTP. It connects as the owner role (the set-up already ran in global-setup).
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAtrium, type Atrium } from '../../src/index.ts';
import { pool, testConfig, urlFor } from './db.ts';
import { parseMessage } from './smtp.ts';
import { testLogger } from './log.ts';

export async function startTestApp(options: { worker?: boolean; env?: Record<string, string> } = {}): Promise<Atrium> {
  const config = testConfig({ DATABASE_URL: urlFor('owner'), ...options.env });
  return startAtrium(config, testLogger('test-app', config.logLevel), { api: true, worker: options.worker ?? false });
}

export interface GraphQLResponse<T = Record<string, any>> {
  status: number;
  data?: T;
  errors?: Array<{ message: string; extensions?: { code?: string; httpStatus?: number } }>;
}

export async function gql<T = Record<string, any>>(baseUrl: string, query: string, variables: Record<string, unknown> = {}, token?: string): Promise<GraphQLResponse<T>> {
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as Omit<GraphQLResponse<T>, 'status'>;
  return { status: response.status, ...body };
}

/** The `code` of the first GraphQL error (fails the test if there is none). */
export function errorCode(response: GraphQLResponse): string | undefined {
  if (!response.errors?.length) throw new Error(`expected an error, got ${JSON.stringify(response.data)}`);
  return response.errors[0].extensions?.code;
}

/** An access token for `user`'s session, scoped to `orgId` (signed as the API signs them). */
export async function tokenFor(user: { userId: string; sessionId: string }, orgId: string | null = null): Promise<string> {
  const { createTokenService } = await import('../../src/auth/tokens.ts');
  const { token } = await createTokenService(process.env.JWT_SECRET!, 900).sign({ userId: user.userId, sessionId: user.sessionId, organizationId: orgId });
  return token;
}

/** Every field of AuthPayload. */
export const AUTH_PAYLOAD_FIELDS = 'accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt userId organizationId';

export interface SignedUp {
  email: string;
  accessToken: string;
  accessTokenExpiresAt: string;
  refreshToken: string | null;
  refreshTokenExpiresAt: string;
  userId: string;
  organizationId: string | null;
}

/** The token of a confirmation link in an email's text. */
export function confirmationTokenIn(text: string): string {
  const match = /\/confirm-registration\?token=([A-Za-z0-9_%-]+)/.exec(text);
  if (!match) throw new Error('no confirmation link in the email');
  return decodeURIComponent(match[1]);
}

/**
 * The token of the newest confirmation email for `email` (after `register`): read where the worker
 * would read it — app_private.email_secrets, as the owner — while the email waits, or from the
 * email file once a worker has sent it (and the secret is gone).
 */
export async function confirmationToken(email: string, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool('owner').query<{ token: string | null; file: string | null }>(
      `select s.secrets->>'token' as token, m.transport_detail as file
       from (select 'registration:' || r.id as key from app_private.registrations r
             where r.email = lower($1) and r.token_hash is not null order by r.created_at desc limit 1) r
       left join app_private.email_secrets s on s.message_key = r.key
       left join app_private.email_messages m on m.message_key = r.key and m.sent_at is not null and m.transport = 'folder'`,
      [email],
    );
    if (rows[0]?.token) return rows[0].token;
    if (rows[0]?.file) return confirmationTokenIn(parseMessage(fs.readFileSync(rows[0].file, 'utf8')).text);
    if (Date.now() > deadline) throw new Error(`no confirmation token for ${email} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Signs up over HTTP as a newcomer does: register, the token from the email, confirmRegistration. */
export async function registerAndConfirm(baseUrl: string, input: { email: string; password?: string; name: string }): Promise<SignedUp> {
  const password = input.password ?? 'correct horse battery';
  const registered = await gql<{ register: { requested: boolean } }>(baseUrl, 'mutation($input: RegisterInput!) { register(input: $input) { requested } }', { input: { ...input, password } });
  if (registered.errors || registered.data?.register.requested !== true) throw new Error(`register failed: ${JSON.stringify(registered.errors ?? registered.data)}`);
  const token = await confirmationToken(input.email);
  const confirmed = await gql<{ confirmRegistration: Omit<SignedUp, 'email'> }>(
    baseUrl,
    `mutation($input: ConfirmRegistrationInput!) { confirmRegistration(input: $input) { ${AUTH_PAYLOAD_FIELDS} } }`,
    { input: { token, password } },
  );
  if (confirmed.errors) throw new Error(`confirmRegistration failed: ${JSON.stringify(confirmed.errors)}`);
  return { email: input.email, ...confirmed.data!.confirmRegistration };
}
