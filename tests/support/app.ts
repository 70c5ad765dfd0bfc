// Atrium running in this test process, on a free port, against the run's database, spoken to
// over real HTTP. It connects as the owner role (the set-up already ran in global-setup).
import { createLogger } from '../../src/log.ts';
import { startAtrium, type Atrium } from '../../src/index.ts';
import { testConfig, urlFor } from './db.ts';

export async function startTestApp(options: { worker?: boolean; env?: Record<string, string> } = {}): Promise<Atrium> {
  const config = testConfig({ DATABASE_URL: urlFor('owner'), ...options.env });
  return startAtrium(config, createLogger(config.logLevel, 'test-app'), { api: true, worker: options.worker ?? false });
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
