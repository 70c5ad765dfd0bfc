// The GraphQL edge: every document is parsed, measured and validated here before Grafast plans
// it, and every answer grafserv gives carries a stable error code. One grafserv plugin:
//
// 1. parseAndValidate (replacing grafserv's): per distinct document, in this order
//      parse, at most GRAPHQL_MAX_TOKENS tokens          GRAPHQL_PARSE_FAILED / QUERY_TOO_COMPLEX
//      subscriptions refused (this API has none)          OPERATION_NOT_SUPPORTED
//      the limits of ./document-limits.ts                 QUERY_TOO_COMPLEX
//      the schema's validation rules; without introspection (production) also
//      NoSchemaIntrospectionCustomRule, and no "Did you mean …?" suggestions
//                                                         GRAPHQL_VALIDATION_FAILED, or
//                                                         INVALID_VALUE naming the argument
//    The results are kept in a cache bounded by count and by the total length of the documents
//    (DocumentCache): the same document string gives the same syntax tree, which is also the key
//    of Grafast's operation-plan cache (bounded in ./postgraphile.ts).
// 2. processRequest: what grafserv answers outside GraphQL execution (a body it cannot read,
//    a wrong method or media type, a refused persisted operation, a body above
//    GRAPHQL_MAX_BODY_BYTES) becomes the same JSON error shape with a code; and a response above
//    GRAPHQL_MAX_RESPONSE_BYTES is replaced by RESPONSE_TOO_LARGE.
import type { Logger } from '../log.ts';
import { GraphQLError, Kind, NoSchemaIntrospectionCustomRule, parse, Source, specifiedRules, validate, ValuesOfCorrectTypeRule, type ASTVisitor, type DocumentNode, type GraphQLSchema, type ValidationContext, type ValidationRule } from 'postgraphile/graphql';
import { isPromiseLike, SafeError } from 'postgraphile/grafast';
import { limitRules, tooComplex, isTokenLimitError, type DocumentLimits } from './document-limits.ts';
import { DATABASE_RETRY_AFTER_SECONDS } from '../db/unavailable.ts';
import { EDGE_ERRORS, edgeExtensions, type EdgeErrorCode } from './errors.ts';

export interface EdgeOptions {
  limits: DocumentLimits;
  /** Serve introspection and "Did you mean …?" suggestions (off in production by default). */
  introspection: boolean;
  /** Bounds of the parsed-document cache. */
  documentCache: { maxDocuments: number; maxCharacters: number };
  maxResponseBytes: number;
  log: Logger;
}

type ParseResult = { document: DocumentNode; errors?: undefined } | { document?: undefined; errors: readonly GraphQLError[] };

/**
 * A least-recently-used cache bounded by entry count and by the summed cost of its entries
 * (a document's length in characters: its syntax tree and validation result grow with it).
 */
export class DocumentCache<V> {
  readonly #entries = new Map<string, { value: V; cost: number }>();
  #cost = 0;
  readonly maxEntries: number;
  readonly maxCost: number;
  constructor(maxEntries: number, maxCost: number) {
    this.maxEntries = maxEntries;
    this.maxCost = maxCost;
  }

  get size(): number {
    return this.#entries.size;
  }

  get cost(): number {
    return this.#cost;
  }

  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry); // most recently used last
    return entry.value;
  }

  set(key: string, value: V, cost: number): void {
    if (cost > this.maxCost || this.maxEntries === 0) return;
    const old = this.#entries.get(key);
    if (old) {
      this.#cost -= old.cost;
      this.#entries.delete(key);
    }
    this.#entries.set(key, { value, cost });
    this.#cost += cost;
    for (const [oldest, entry] of this.#entries) {
      if (this.#entries.size <= this.maxEntries && this.#cost <= this.maxCost) break;
      this.#entries.delete(oldest);
      this.#cost -= entry.cost;
    }
  }
}

const edgeError = (code: EdgeErrorCode, message: string, details: Record<string, unknown> = {}, nodes?: GraphQLError['nodes']) =>
  new GraphQLError(message, { nodes: nodes ?? undefined, extensions: edgeExtensions(code, details) });

/**
 * ValuesOfCorrectTypeRule, with its errors coded INVALID_VALUE and naming the argument (and the
 * path inside an input object) whose literal value the schema refuses: a scalar's own parser
 * (e.g. UUID's) reports just "Invalid UUID…", without saying where.
 */
function valuesRule(): ValidationRule {
  return (context: ValidationContext) => {
    const path: string[] = [];
    const proxy = Object.create(context) as ValidationContext;
    proxy.reportError = (error: GraphQLError) => {
      const where = path.join('.');
      context.reportError(
        new GraphQLError(where ? `${error.message} (argument \`${where}\`)` : error.message, {
          nodes: error.nodes,
          originalError: error.originalError,
          extensions: { code: 'INVALID_VALUE', httpStatus: 400, ...(where ? { argument: where } : {}) },
        }),
      );
    };
    const inner = ValuesOfCorrectTypeRule(proxy) as Record<string, unknown>;
    const call = (key: string, args: unknown[]) => {
      const handler = inner[key];
      return typeof handler === 'function' ? (handler as (...a: unknown[]) => unknown)(...args) : undefined;
    };
    const visitor: Record<string, unknown> = {};
    for (const key of Object.keys(inner)) visitor[key] = (...args: unknown[]) => call(key, args);
    visitor.Argument = { enter: (node: { name: { value: string } }) => void path.push(node.name.value), leave: () => void path.pop() };
    visitor.ObjectField = {
      enter: (...args: unknown[]) => {
        path.push((args[0] as { name: { value: string } }).name.value);
        return call('ObjectField', args);
      },
      leave: () => void path.pop(),
    };
    return visitor as ASTVisitor;
  };
}

/** Makes the parse-and-validate function for one schema. */
export function makeParseAndValidate(schema: GraphQLSchema, options: EdgeOptions): (query: string) => ParseResult {
  const { limits, introspection, log } = options;
  const cache = new DocumentCache<ParseResult>(options.documentCache.maxDocuments, options.documentCache.maxCharacters);
  const rules = [...specifiedRules.map((rule) => (rule === ValuesOfCorrectTypeRule ? valuesRule() : rule)), ...(introspection ? [] : [NoSchemaIntrospectionCustomRule])];
  const limitRuleList = limitRules(limits);

  const code = (errors: readonly GraphQLError[]): GraphQLError[] =>
    errors.map((error) =>
      typeof error.extensions?.code === 'string'
        ? error
        : new GraphQLError(error.message, { nodes: error.nodes, source: error.source, positions: error.positions, originalError: error.originalError, extensions: edgeExtensions('GRAPHQL_VALIDATION_FAILED') }),
    );

  const check = (query: string): ParseResult => {
    let document: DocumentNode;
    try {
      document = parse(new Source(query, 'GraphQL request'), { maxTokens: limits.maxTokens, noLocation: false });
    } catch (error) {
      const e = error as GraphQLError;
      if (isTokenLimitError(e)) return { errors: [tooComplex('tokens', limits.maxTokens, undefined)] };
      return { errors: [edgeError('GRAPHQL_PARSE_FAILED', e.message, {}, e.nodes)] };
    }
    for (const definition of document.definitions) {
      if (definition.kind === Kind.OPERATION_DEFINITION && definition.operation === 'subscription') {
        log.info({ code: 'OPERATION_NOT_SUPPORTED' }, 'refused a GraphQL subscription');
        return { errors: [edgeError('OPERATION_NOT_SUPPORTED', 'This API has no subscriptions; send queries and mutations (poll, or use webhooks for changes).', { operation: 'subscription' }, [definition])] };
      }
    }
    const refused = validate(schema, document, limitRuleList, { maxErrors: 10 });
    if (refused.length > 0) {
      const first = refused[0]!;
      log.info({ code: first.extensions.code, limit: first.extensions.limit, actual: first.extensions.actual }, 'refused a GraphQL document above a limit');
      return { errors: code(refused) };
    }
    const errors = validate(schema, document, rules, { maxErrors: 25, hideSuggestions: !introspection });
    return errors.length > 0 ? { errors: code(errors) } : { document };
  };

  return (query: string) => {
    const cached = cache.get(query);
    if (cached) return cached;
    const result = check(query);
    cache.set(query, result, query.length);
    return result;
  };
}

/** Which edge code a non-GraphQL failure of grafserv is, from its status and message. */
function codeForFailure(status: number, message: string): EdgeErrorCode {
  if (status === 413) return 'REQUEST_TOO_LARGE';
  if (status === 415) return 'UNSUPPORTED_MEDIA_TYPE';
  if (status === 405) return 'METHOD_NOT_ALLOWED';
  if (status === 406) return 'NOT_ACCEPTABLE';
  if (/persisted operations are enabled/i.test(message)) return 'PERSISTED_OPERATION_REQUIRED';
  return 'BAD_REQUEST';
}

const jsonResult = (statusCode: number, body: unknown, headers: Record<string, string> = {}) => {
  const buffer = Buffer.from(JSON.stringify(body), 'utf8');
  return {
    type: 'buffer' as const,
    statusCode,
    headers: { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': String(buffer.length) },
    buffer,
  };
};

const errorBody = (code: EdgeErrorCode, message: string, details: Record<string, unknown> = {}) => ({ errors: [{ message, extensions: edgeExtensions(code, details) }] });

type GrafservResult = Awaited<ReturnType<GraphileConfig.GrafservMiddleware['processRequest']>>;

/** Answers this long or longer carried data: they are never refusals. */
const UNAVAILABLE_SCAN_BYTES = 65_536;
const UNAVAILABLE_CODE = '"SERVICE_UNAVAILABLE"';

/**
 * A GraphQL answer in which nothing was done because the database cannot be reached (no data,
 * or only nulls at the top, and every error SERVICE_UNAVAILABLE) is sent with HTTP 503 and
 * Retry-After, like the busy server's refusal (src/http/concurrency.ts). An answer in which some
 * field did get done stays HTTP 200, with SERVICE_UNAVAILABLE on the fields that failed.
 */
function unavailableResult(result: GrafservResult & { type: 'buffer' }): GrafservResult {
  const body = JSON.parse(result.buffer.toString('utf8')) as { data?: Record<string, unknown> | null; errors?: Array<{ extensions?: Record<string, unknown> }> };
  const nothingDone = body.data == null || Object.values(body.data).every((value) => value === null);
  const allUnavailable = (body.errors ?? []).length > 0 && body.errors!.every((error) => error.extensions?.code === 'SERVICE_UNAVAILABLE');
  if (!nothingDone || !allUnavailable) return result;
  return { ...result, statusCode: EDGE_ERRORS.SERVICE_UNAVAILABLE, headers: { ...result.headers, 'retry-after': String(DATABASE_RETRY_AFTER_SECONDS) } };
}

/** Codes grafserv's own refusals, and caps the size of what is sent. */
function finishResult(result: GrafservResult, options: EdgeOptions): GrafservResult {
  if (!result) return result;
  // (A search of the answer's bytes, cheaper than tracking each request's errors; the body is
  // parsed only when the code is in it.)
  if (result.type === 'buffer' && result.statusCode < 300 && result.buffer.length < UNAVAILABLE_SCAN_BYTES && result.buffer.includes(UNAVAILABLE_CODE)) return unavailableResult(result);
  if (result.type === 'error') {
    const status = result.statusCode >= 400 && result.statusCode < 500 ? result.statusCode : 500;
    if (status === 500 || !(result.error instanceof SafeError)) {
      options.log.error({ err: result.error }, 'unexpected error in the GraphQL server');
      return jsonResult(500, { errors: [{ message: 'Unexpected error; it has been logged.', extensions: { code: 'INTERNAL', httpStatus: 500 } }] });
    }
    const code = codeForFailure(status, result.error.message);
    const message = code === 'REQUEST_TOO_LARGE' ? 'The request body is too large (GRAPHQL_MAX_BODY_BYTES); send a smaller document or fewer variables.' : result.error.message;
    return jsonResult(EDGE_ERRORS[code], errorBody(code, message), result.headers);
  }
  if (result.type !== 'buffer') return result;
  if (result.buffer.length > options.maxResponseBytes) {
    options.log.warn({ bytes: result.buffer.length, maximum: options.maxResponseBytes }, 'response above GRAPHQL_MAX_RESPONSE_BYTES replaced by RESPONSE_TOO_LARGE');
    return jsonResult(
      EDGE_ERRORS.RESPONSE_TOO_LARGE,
      errorBody(
        'RESPONSE_TOO_LARGE',
        `The response would be ${result.buffer.length} bytes, above the limit of ${options.maxResponseBytes} (GRAPHQL_MAX_RESPONSE_BYTES); ask for fewer rows or fields. A mutation in the request has run.`,
        { maximum: options.maxResponseBytes, actual: result.buffer.length },
      ),
    );
  }
  // grafserv's own refusals in the GraphQL shape (an unreadable body, a wrong method, media type
  // or Accept header, a body above GRAPHQL_MAX_BODY_BYTES, a refused persisted operation) come
  // without a code: add it. Only error statuses, whose bodies are small, are read.
  if (result.statusCode >= 400 && result.buffer.length < 65_536) {
    const body = JSON.parse(result.buffer.toString('utf8')) as { errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
    const uncoded = (body.errors ?? []).filter((error) => typeof error.extensions?.code !== 'string');
    if (uncoded.length === 0) return result;
    for (const error of uncoded) {
      const code = codeForFailure(result.statusCode, error.message);
      const { statusCode: _status, ...rest } = error.extensions ?? {};
      error.extensions = { ...rest, ...edgeExtensions(code) };
      if (code === 'REQUEST_TOO_LARGE') error.message = 'The request body is too large (GRAPHQL_MAX_BODY_BYTES); send a smaller document or fewer variables.';
    }
    return jsonResult(result.statusCode, body, result.headers);
  }
  return result;
}

/** The grafserv plugin. */
export function makeEdgePlugin(options: EdgeOptions): GraphileConfig.Plugin {
  const bySchema = new WeakMap<GraphQLSchema, (query: string) => ParseResult>();
  return {
    name: 'AtriumGraphQLEdgePlugin',
    version: '1.0.0',
    description: 'Document limits, validation with codes, bounded document cache, coded refusals, response size cap',
    grafserv: {
      middleware: {
        setPreset(next, event) {
          const original = event.getExecutionConfig;
          event.getExecutionConfig = async function getExecutionConfig(this: unknown, ctx) {
            const config = await original.call(this as never, ctx);
            let parseAndValidate = bySchema.get(config.schema);
            if (!parseAndValidate) {
              parseAndValidate = makeParseAndValidate(config.schema, options);
              bySchema.set(config.schema, parseAndValidate);
            }
            config.parseAndValidate = parseAndValidate as typeof config.parseAndValidate;
            return config;
          };
          return next();
        },
        processRequest(next) {
          const result = next();
          return isPromiseLike(result) ? Promise.resolve(result).then((r) => finishResult(r, options)) : finishResult(result, options);
        },
      },
    },
  };
}
