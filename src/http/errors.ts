// Errors a person can act on: every error leaving the API carries a stable `code` and a human
// message. The codes, their SQLSTATEs and HTTP statuses live in the database
// (app_private.error_codes, sql/errors.sql); this module loads them once at start and maps
// PostgreSQL errors onto them. Anything unexpected becomes INTERNAL, logged with an id.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { isSafeError, SafeError } from 'postgraphile/grafast';
import { GraphQLError } from 'postgraphile/graphql';
import { DATABASE_RETRY_AFTER_SECONDS, isDatabaseUnavailable } from '../db/unavailable.ts';
import type { Logger } from '../log.ts';

export interface ErrorCode {
  code: string;
  sqlstate: string;
  httpStatus: number;
  description: string;
}

/**
 * Codes the API edge itself answers with (HTTP and GraphQL layers, never raised by SQL), with
 * their HTTP status. docs/ERRORS.md lists them ("From the HTTP layer", "From the GraphQL layer");
 * tests/docs.test.ts checks the lists agree.
 */
export const EDGE_ERRORS = {
  /** The document is not valid GraphQL syntax. */
  GRAPHQL_PARSE_FAILED: 400,
  /** The document does not fit the schema (unknown field, missing argument, …). */
  GRAPHQL_VALIDATION_FAILED: 400,
  /** The document is above a limit of src/http/document-limits.ts. */
  QUERY_TOO_COMPLEX: 400,
  /** A subscription: this API has none. */
  OPERATION_NOT_SUPPORTED: 400,
  /** Only registered (persisted) operations are accepted, and the request names none of them. */
  PERSISTED_OPERATION_REQUIRED: 400,
  /** The response is above GRAPHQL_MAX_RESPONSE_BYTES. */
  RESPONSE_TOO_LARGE: 400,
  /** The request cannot be read (not JSON, no query, …). */
  BAD_REQUEST: 400,
  /** The body is above GRAPHQL_MAX_BODY_BYTES. */
  REQUEST_TOO_LARGE: 413,
  /** A media type other than application/json or application/graphql. */
  UNSUPPORTED_MEDIA_TYPE: 415,
  /** GraphQL is spoken over POST. */
  METHOD_NOT_ALLOWED: 405,
  /** The Accept header allows no JSON answer. */
  NOT_ACCEPTABLE: 406,
  /**
   * Too many requests in progress and waiting (src/http/concurrency.ts), or the database cannot be
   * reached (src/db/unavailable.ts); retry after Retry-After.
   */
  SERVICE_UNAVAILABLE: 503,
  /** A rate limit (src/http/rate-limit-requests.ts); retry after Retry-After. */
  RATE_LIMITED: 429,
  /** A webhook endpoint at an internal address (src/http/webhook-urls.ts). */
  WEBHOOK_URL_NOT_ALLOWED: 422,
} as const satisfies Record<string, number>;

/** A further SQLSTATE mapped onto a catalogued code (app_private.error_sqlstates), with its message. */
export interface SqlstateMapping {
  sqlstate: string;
  code: string;
  message: string;
}

/** The code and message for a value that breaks a rule of a domain (app_private.domain_rules). */
export interface DomainRule {
  domainName: string;
  constraintName: string;
  code: string;
  message: string;
}

export type EdgeErrorCode = keyof typeof EDGE_ERRORS;

/** The extensions of an edge error: its code and HTTP status, plus any details. */
export const edgeExtensions = (code: EdgeErrorCode, details: Record<string, unknown> = {}) => ({ code, httpStatus: EDGE_ERRORS[code], ...details });

/**
 * A GraphQL error raised before any resolver ran (no originalError, or a GraphQLError thrown by a
 * scalar's parser): a variable whose value does not fit its type is INVALID_VALUE (the message
 * names the variable and the path inside it); anything else is a document the schema refuses.
 */
const VARIABLE_VALUE = /^Variable "\$[^"]+" (?:got invalid value|of required type|of non-null type)/;

export class ErrorCatalog {
  readonly #byCode: Map<string, ErrorCode>;
  readonly #bySqlstate: Map<string, ErrorCode>;
  readonly #moreSqlstates: Map<string, SqlstateMapping>;
  readonly #domainRules: Map<string, DomainRule>;

  constructor(codes: ErrorCode[], more: { sqlstates?: SqlstateMapping[]; domainRules?: DomainRule[] } = {}) {
    this.#byCode = new Map(codes.map((c) => [c.code, c]));
    this.#bySqlstate = new Map(codes.map((c) => [c.sqlstate, c]));
    this.#moreSqlstates = new Map((more.sqlstates ?? []).map((s) => [s.sqlstate, s]));
    this.#domainRules = new Map((more.domainRules ?? []).map((r) => [`${r.domainName}/${r.constraintName}`, r]));
  }

  static async load(ownerUrl: string): Promise<ErrorCatalog> {
    const client = new pg.Client({ connectionString: ownerUrl });
    client.on('error', () => undefined); // a lost connection fails the query below instead
    await client.connect();
    try {
      const { rows } = await client.query<ErrorCode>(
        'select code, sqlstate, http_status as "httpStatus", description from app_private.error_codes order by code',
      );
      const sqlstates = await client.query<SqlstateMapping>('select sqlstate, code, message from app_private.error_sqlstates order by sqlstate');
      const domainRules = await client.query<DomainRule>(
        'select domain_name as "domainName", constraint_name as "constraintName", code, message from app_private.domain_rules order by 1, 2',
      );
      return new ErrorCatalog(rows, { sqlstates: sqlstates.rows, domainRules: domainRules.rows });
    } finally {
      await client.end();
    }
  }

  get all(): ErrorCode[] {
    return [...this.#byCode.values()];
  }

  byCode(code: string): ErrorCode {
    const found = this.#byCode.get(code);
    if (!found) throw new Error(`Unknown error code ${code}: add it to sql/errors.sql`);
    return found;
  }

  bySqlstate(sqlstate: string): ErrorCode | undefined {
    return this.#bySqlstate.get(sqlstate);
  }

  /**
   * The code and message for an error PostgreSQL raised: our own (class AT, and any code raised by
   * name with app_private.fail, such as INVALID_VALUE) keep their message written for people; a
   * value breaking a domain's rule gets the rule's message (app_private.domain_rules); other
   * SQLSTATEs the catalogue's message (app_private.error_codes, then app_private.error_sqlstates),
   * never PostgreSQL's own, which would quote SQL.
   */
  forPgError(error: PgErrorLike): { entry: ErrorCode; message: string } | undefined {
    const rule = error.dataType && error.constraint ? this.#domainRules.get(`${error.schema}.${error.dataType}/${error.constraint}`) : undefined;
    if (error.code === '23514' && rule) return { entry: this.byCode(rule.code), message: rule.message };
    const entry = this.#bySqlstate.get(error.code);
    if (entry) return { entry, message: isOurs(error) ? error.message : entry.description };
    const more = this.#moreSqlstates.get(error.code);
    return more ? { entry: this.byCode(more.code), message: more.message } : undefined;
  }

  /** An error for GraphQL responses, with `code` and `httpStatus` in its extensions. */
  error(code: string, message?: string): SafeError {
    const entry = this.byCode(code);
    return new SafeError(message ?? entry.description, { code: entry.code, httpStatus: entry.httpStatus });
  }
}

interface PgErrorLike {
  code: string;
  message: string;
  constraint?: string;
  column?: string;
  table?: string;
  schema?: string;
  dataType?: string;
  /** PostgreSQL's context: the innermost frame first. */
  where?: string;
}

/**
 * Raised by Atrium's SQL, with a message written for people: a code of class AT, or any code raised
 * by name with app_private.fail (its RAISE is then the innermost frame of the error's context),
 * e.g. fail('INVALID_VALUE', 'The name must be 1 to 200 characters long.') with SQLSTATE 22023,
 * which PostgreSQL also raises itself with messages that are not for clients.
 */
const RAISED_BY_NAME = /^PL\/pgSQL function app_private\.fail\(text,text\) /;
const isOurs = (error: PgErrorLike): boolean => error.code.startsWith('AT') || RAISED_BY_NAME.test(error.where ?? '');

function findPgError(error: unknown): PgErrorLike | undefined {
  for (let e = error as { code?: unknown; originalError?: unknown; cause?: unknown } | undefined; e; ) {
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof (e as { severity?: unknown }).severity === 'string') {
      return e as PgErrorLike;
    }
    e = (e.originalError ?? e.cause) as typeof e;
  }
  return undefined;
}

// postgraphile-plugin-connection-filter refuses `null` and `{}` in a `filter` with plain Errors
// (not SafeErrors), and @dataplan/pg an update with an empty `patch` with a SafeError without a
// code; their messages name nothing internal, so they reach the client as they are.
const FILTER_INPUT_ERRORS = new Set([
  'Null literals are forbidden in filter argument input.',
  'Empty objects are forbidden in filter argument input.',
  'Attempted to update a record, but no new values were specified.',
]);

// A generated delete mutation (deleteX / deleteXById) that finds no row it may delete — another
// tenant's id, a random id, a row your role may not see — fails with this plain Error of
// @dataplan/pg. It answers NOT_FOUND with the catalogue's message, the same for every id (update
// mutations get the same answer from src/http/not-found.ts).
const NO_ROW_DELETED = /^No values were deleted in collection '[^']*' because no values you can delete were found matching these criteria\.$/;

/** The answer while the database cannot be reached: the client may retry. */
export function databaseUnavailableExtensions() {
  return edgeExtensions('SERVICE_UNAVAILABLE', { retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS });
}

export const DATABASE_UNAVAILABLE_MESSAGE = `The database cannot be reached right now; retry in ${DATABASE_RETRY_AFTER_SECONDS} seconds.`;

/** grafserv's maskError: shapes every GraphQL error. */
export function makeMaskError(catalog: ErrorCatalog, log: Logger) {
  return (error: GraphQLError): GraphQLError => {
    const original = error.originalError;
    const options = { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path, originalError: original };
    if (!original || original instanceof GraphQLError) {
      if (typeof error.extensions?.code === 'string') return error;
      if (VARIABLE_VALUE.test(error.message)) {
        const invalid = catalog.byCode('INVALID_VALUE');
        return new GraphQLError(error.message, { ...options, extensions: { ...error.extensions, code: invalid.code, httpStatus: invalid.httpStatus } });
      }
      return new GraphQLError(error.message, { ...options, extensions: { ...error.extensions, ...edgeExtensions('GRAPHQL_VALIDATION_FAILED') } });
    }
    if (isSafeError(original) && !FILTER_INPUT_ERRORS.has(original.message)) {
      const extensions = original.extensions ?? {};
      if (typeof extensions.code === 'string') return new GraphQLError(original.message, { ...options, extensions });
      // Grafast's own refusal of a plan that took too long (grafast.timeouts.planning).
      const timeout = Object.getOwnPropertySymbols(extensions).find((s) => s.description === 'timeout');
      if (timeout) {
        // maximum: the limit in ms (GRAPHQL_PLANNING_TIMEOUT_MS), as Grafast recorded it.
        const maximum = (extensions as Record<symbol, unknown>)[timeout];
        return new GraphQLError(`${original.message} (it took longer than the planning limit)`, {
          ...options,
          extensions: edgeExtensions('QUERY_TOO_COMPLEX', { limit: 'planning', ...(typeof maximum === 'number' ? { maximum } : {}) }),
        });
      }
      return new GraphQLError(original.message, { ...options, extensions: edgeExtensions('BAD_REQUEST') });
    }
    if (FILTER_INPUT_ERRORS.has(original.message)) {
      const invalid = catalog.byCode('INVALID_VALUE');
      return new GraphQLError(original.message, { ...options, extensions: { code: invalid.code, httpStatus: invalid.httpStatus } });
    }
    if (NO_ROW_DELETED.test(original.message)) {
      const notFound = catalog.byCode('NOT_FOUND');
      return new GraphQLError(notFound.description, { ...options, extensions: { code: notFound.code, httpStatus: notFound.httpStatus } });
    }
    if (isDatabaseUnavailable(original)) {
      // Only the message and code: the error may carry the client and its statements.
      const cause = original as { code?: unknown };
      log.warn({ error: original.message, code: typeof cause.code === 'string' ? cause.code : undefined, path: error.path }, 'database unavailable: answered SERVICE_UNAVAILABLE');
      return new GraphQLError(DATABASE_UNAVAILABLE_MESSAGE, { ...options, extensions: databaseUnavailableExtensions() });
    }
    const pgError = findPgError(original);
    const mapped = pgError ? catalog.forPgError(pgError) : undefined;
    if (pgError && mapped) {
      // Our own errors (class AT, or raised by name) carry a message written for people; PostgreSQL's own are
      // replaced by the catalogue's (no SQL, table or policy names leak out).
      const { entry } = mapped;
      const ours = isOurs(pgError);
      return new GraphQLError(mapped.message, {
        ...options,
        extensions: {
          code: entry.code,
          httpStatus: entry.httpStatus,
          ...(pgError.constraint && !ours ? { constraint: pgError.constraint } : {}),
          ...(pgError.column && !ours ? { column: pgError.column } : {}),
        },
      });
    }
    const id = randomUUID();
    log.error({ err: original, errorId: id, path: error.path }, 'unexpected GraphQL error');
    const internal = catalog.byCode('INTERNAL');
    return new GraphQLError(`Unexpected error (id ${id}); it has been logged.`, {
      ...options,
      extensions: { code: internal.code, httpStatus: internal.httpStatus, errorId: id },
    });
  };
}
