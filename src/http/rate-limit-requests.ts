// Where the rate limits (src/http/rate-limits.ts) apply, and the answer past them.
//
// - Every request that gets past /healthz, /readyz and CORS preflights (installed before, never
//   limited: orchestration and browsers must always get them) counts once: against its client
//   address when anonymous, against its user and its organization when signed in (the verified
//   token's claims, src/http/auth.ts). A signed-in request does not count against its address, so
//   an office behind one NAT address is not one budget.
// - The sign-in mutations (login, register, confirmRegistration, refresh, requestPasswordReset, resetPassword) count
//   against stricter limits of the client address, once per field that can run: grafserv's
//   processGraphQLRequestBody hook parses the request's document and counts those fields in the
//   operation GraphQL will run — aliases, inline fragments and fragment spreads each count, and
//   the operation is chosen by graphql's own getOperationAST, so operationName cannot point the
//   count at another operation than the one executed. grafserv takes one operation per request (a
//   batch, a JSON array, is refused), so batching cannot multiply them either.
//
// Past a limit: HTTP 429, a `Retry-After` header, and the JSON error shape of sendJsonError with
// the code RATE_LIMITED and `extensions.retryAfterSeconds` (docs/ERRORS.md). GraphQL never runs.
import type { Express, NextFunction, Request, Response } from 'express';
import { SafeError } from 'postgraphile/grafast';
import { getOperationAST, Kind, parse, type DocumentNode, type FragmentDefinitionNode, type SelectionSetNode } from 'postgraphile/graphql';
import type { RateLimitName } from '../config.ts';
import { requestClaims, sendJsonError } from './auth.ts';
import { clientAddress } from './client-address.ts';
import type { RateLimits, Verdict } from './rate-limits.ts';

/** The sign-in mutations, each limited by the limit of the same name. */
export const SIGN_IN_FIELDS = ['login', 'register', 'confirmRegistration', 'refresh', 'requestPasswordReset', 'resetPassword'] as const satisfies readonly RateLimitName[];
export type SignInField = (typeof SIGN_IN_FIELDS)[number];

const WHAT: Record<RateLimitName, string> = {
  anonymous: 'Too many requests from your network address',
  user: 'Too many requests for your account',
  organization: 'Too many requests for this organization',
  login: 'Too many sign-in attempts from your network address',
  register: 'Too many sign-ups from your network address',
  confirmRegistration: 'Too many sign-up confirmations from your network address',
  refresh: 'Too many token refreshes from your network address',
  requestPasswordReset: 'Too many password-reset requests from your network address',
  resetPassword: 'Too many password resets from your network address',
};

const messageFor = (limit: RateLimitName, seconds: number) => `${WHAT[limit]}; try again in ${seconds} second${seconds === 1 ? '' : 's'}.`;

export const RATE_LIMITED = { code: 'RATE_LIMITED', httpStatus: 429 } as const;

// A name can only appear in a document as itself (GraphQL names have no escapes), so a document
// that does not mention one of these words cannot run one of the fields: no parse needed.
const MENTIONS_SIGN_IN = new RegExp(`\\b(?:${SIGN_IN_FIELDS.join('|')})\\b`);
const isSignInField = (name: string): name is SignInField => (SIGN_IN_FIELDS as readonly string[]).includes(name);

/**
 * How many times each sign-in mutation appears in the operation that `operationName` selects
 * (an upper bound of how often it runs). Empty when no operation would run (a syntax error, an
 * unknown or ambiguous operationName) or it is not a mutation.
 */
export function signInFieldCounts(query: unknown, operationName: unknown): Map<SignInField, number> {
  const counts = new Map<SignInField, number>();
  if (typeof query !== 'string' || !MENTIONS_SIGN_IN.test(query)) return counts;
  let document: DocumentNode;
  try {
    document = parse(query, { noLocation: true });
  } catch {
    return counts; // GraphQL refuses it too: nothing runs
  }
  const operation = getOperationAST(document, typeof operationName === 'string' ? operationName : undefined);
  if (!operation || operation.operation !== 'mutation') return counts;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const spread = new Set<string>();
  const walk = (selectionSet: SelectionSetNode) => {
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        if (isSignInField(name)) counts.set(name, (counts.get(name) ?? 0) + 1);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        walk(selection.selectionSet);
      } else if (!spread.has(selection.name.value)) {
        // Spreading a fragment twice runs its fields once (same response keys); and cycles stop.
        spread.add(selection.name.value);
        const fragment = fragments.get(selection.name.value);
        if (fragment) walk(fragment.selectionSet);
      }
    }
  };
  walk(operation.selectionSet);
  return counts;
}

const limitsOfApp = new WeakMap<object, RateLimits>();

function refuse(res: Response, limit: RateLimitName, verdict: Verdict): void {
  res.setHeader('Retry-After', String(verdict.retryAfterSeconds));
  sendJsonError(res, RATE_LIMITED.httpStatus, RATE_LIMITED.code, messageFor(limit, verdict.retryAfterSeconds), { retryAfterSeconds: verdict.retryAfterSeconds, limit });
}

/**
 * The general limits, as Express middleware: install it after the token check (it needs the
 * claims) and after the health checks and CORS (which it must not limit). Also makes `limits`
 * available to the sign-in limit of SignInRateLimitPlugin.
 */
export function installRateLimits(app: Express, limits: RateLimits): void {
  limitsOfApp.set(app, limits);
  app.use(async (req: Request, res: Response, next: NextFunction) => {
    const claims = requestClaims(req);
    const checks: Array<[RateLimitName, string]> = claims
      ? [['user', claims.userId], ...(claims.organizationId ? [['organization', claims.organizationId] as [RateLimitName, string]] : [])]
      : [['anonymous', clientAddress(req)]];
    const verdicts = await Promise.all(checks.map(([limit, key]) => limits.consume(limit, key)));
    const over = verdicts.findIndex((v) => !v.allowed);
    if (over >= 0) return refuse(res, checks[over][0], verdicts[over]);
    next();
  });
}

/** The error grafserv answers with when a sign-in limit is reached in its body hook. */
function rateLimitedError(limit: RateLimitName, verdict: Verdict): SafeError {
  const extensions: Record<string, unknown> = { ...RATE_LIMITED, retryAfterSeconds: verdict.retryAfterSeconds, limit };
  // grafserv takes the HTTP status of an error thrown here from extensions.statusCode; it is not
  // enumerable, so the JSON body has exactly sendJsonError's shape.
  Object.defineProperty(extensions, 'statusCode', { value: RATE_LIMITED.httpStatus, enumerable: false });
  return new SafeError(messageFor(limit, verdict.retryAfterSeconds), extensions);
}

/** The sign-in limits: counts the sign-in mutations of each GraphQL request before it runs. */
export const SignInRateLimitPlugin: GraphileConfig.Plugin = {
  name: 'AtriumSignInRateLimitPlugin',
  version: '1.0.0',
  grafserv: {
    middleware: {
      async processGraphQLRequestBody(next, event) {
        // Others first (e.g. persisted operations fill in `query`): count what will run.
        await next();
        const req = (event.request?.requestContext as { expressv4?: { req: Request; res: Response } } | undefined)?.expressv4;
        const limits = req && limitsOfApp.get(req.req.app);
        if (!req || !limits) return;
        const counts = signInFieldCounts(event.body.query, event.body.operationName);
        if (counts.size === 0) return;
        const address = clientAddress(req.req);
        for (const [field, points] of counts) {
          const verdict = await limits.consume(field, address, points);
          if (!verdict.allowed) {
            req.res.setHeader('Retry-After', String(verdict.retryAfterSeconds));
            throw rateLimitedError(field, verdict);
          }
        }
      },
    },
  },
};
