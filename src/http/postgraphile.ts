// The GraphQL API: PostGraphile v5 (Amber preset, simplified inflection, connection filters,
// capped page size) over schema app_public, served by grafserv on Express. Every request runs as the visitor role with the verified token
// claims as settings (src/http/auth.ts); row-level security decides what it sees.
import { PgSimplifyInflectionPreset } from '@graphile/simplify-inflection';
import { makePgService } from 'postgraphile/adaptors/pg';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { postgraphile, type PostGraphileInstance } from 'postgraphile';
import { PostGraphileConnectionFilterPreset } from 'postgraphile-plugin-connection-filter';
import type { Request } from 'express';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Config } from '../config.ts';
import type { TokenService } from '../auth/tokens.ts';
import { makeAuthPlugin } from './auth-mutations.ts';
import { MutationResultNamePlugin } from './inflection.ts';
import { pgSettingsFor, requestClaims } from './auth.ts';
import { clientAddress } from './client-address.ts';
import { SignInRateLimitPlugin } from './rate-limit-requests.ts';
import { makePageSizePlugin } from './page-size.ts';
import { makeNotFoundPlugin } from './not-found.ts';
import { ScalarChecksPlugin } from './scalars.ts';
import { makeWebhookUrlPlugin } from './webhook-urls.ts';
import { type ErrorCatalog, makeMaskError } from './errors.ts';
import { makeEdgePlugin } from './graphql-edge.ts';
import { makeExportsPlugin } from './exports.ts';
import { makeFilesPlugin } from './files.ts';
import { PartitionedIndexBehaviorsPlugin } from './partitioned-indexes.ts';
import { RowIdUniquesPlugin } from './row-id-uniques.ts';
import type { FileStorage } from '../storage/index.ts';
import { persistedOperationsPreset } from './persisted-operations.ts';
import type { Logger } from '../log.ts';
import { isDatabaseUnavailable } from '../db/unavailable.ts';

export const GRAPHQL_PATH = '/graphql';
export const GRAPHIQL_PATH = '/graphiql';

/** Average document length the document cache is sized for (characters). */
export const DOCUMENT_CACHE_CHARACTERS_PER_ENTRY = 4_000;

export interface ApiDatabase {
  authenticatorUrl: string;
}

/** How long a request waits for a database connection before it answers SERVICE_UNAVAILABLE (ms). */
export const API_CONNECT_TIMEOUT_MS = 5_000;

/** The API's pool: logs in as the authenticator; ended by whoever created it, after release. */
export function createApiPool(db: ApiDatabase, log: Logger): pg.Pool {
  // A request waits at most API_CONNECT_TIMEOUT_MS for a connection (a server that is down or
  // unreachable, or every connection busy), then fails with a connection error: SERVICE_UNAVAILABLE.
  const pool = new pg.Pool({ connectionString: db.authenticatorUrl, max: 20, connectionTimeoutMillis: API_CONNECT_TIMEOUT_MS });
  // A connection dropped by the server (restart, failover) is replaced by the next checkout. An idle
  // one reports to the pool; one checked out by a request reports to its client, whose query
  // fails (and the request answers SERVICE_UNAVAILABLE): without a listener there, that 'error'
  // event would end the process.
  // (Only the message and code: pg attaches the whole client, with its statements, to the error.)
  const onError = (error: Error) => log.warn({ error: error.message, code: (error as { code?: string }).code }, 'API database connection lost');
  pool.on('error', onError);
  pool.on('connect', (client) => client.on('error', onError));
  return pool;
}

/**
 * Grafast keeps OPERATION_PLANS_PER_DOCUMENT operation plan for each of the last
 * GRAPHQL_DOCUMENT_CACHE_SIZE operations (a document whose plan depends on its variables'
 * values, e.g. `@include(if: $x)`, is planned again when they change); the parsed documents, their
 * keys, are kept as long (src/http/graphql-edge.ts). Bounded together so that the plans of every
 * cached document fit the heap: docs/SECURITY.md, "Memory".
 */
export const OPERATION_PLANS_PER_DOCUMENT = 1;

/** Sets Grafast's operation-plan cache bounds on the schema it builds. */
function planCachePlugin(documents: number): GraphileConfig.Plugin {
  return {
    name: 'AtriumPlanCachePlugin',
    version: '1.0.0',
    description: 'Bounds Grafast\'s operation-plan cache',
    schema: {
      hooks: {
        GraphQLSchema(schema) {
          const extensions = (schema.extensions ?? {}) as Record<string, unknown> & { grafast?: Record<string, unknown> };
          return {
            ...schema,
            extensions: {
              ...extensions,
              grafast: { ...extensions.grafast, operationsCacheMaxLength: Math.max(1, documents), operationOperationPlansCacheMaxLength: OPERATION_PLANS_PER_DOCUMENT },
            },
          };
        },
      },
    },
  };
}

export function makePreset(config: Config, pool: pg.Pool, tokens: TokenService, errors: ErrorCatalog, log: Logger, storage: FileStorage): GraphileConfig.Preset {
  const edge = config.graphql;
  return {
    extends: [PostGraphileAmberPreset, PgSimplifyInflectionPreset, PostGraphileConnectionFilterPreset, persistedOperationsPreset(edge)],
    plugins: [
      makeAuthPlugin(tokens, errors),
      MutationResultNamePlugin,
      makePageSizePlugin(config.pageSizeMax, errors),
      ScalarChecksPlugin,
      PartitionedIndexBehaviorsPlugin,
      RowIdUniquesPlugin,
      makeNotFoundPlugin(errors),
      makeWebhookUrlPlugin(config.webhooks.allowPrivateNetworks),
      makeFilesPlugin(storage, config.files, errors, log),
      makeExportsPlugin(storage, config.files, errors, log),
      SignInRateLimitPlugin,
      planCachePlugin(edge.documentCacheSize),
      makeEdgePlugin({
        limits: { ...edge, pageSize: config.pageSizeMax },
        introspection: edge.introspection,
        // A document's syntax tree and validation take about 40 bytes per character of its text
        // (docs/SECURITY.md, "Memory"); GRAPHQL_DOCUMENT_CACHE_SIZE average-sized documents fit.
        documentCache: { maxDocuments: edge.documentCacheSize, maxCharacters: edge.documentCacheSize * DOCUMENT_CACHE_CHARACTERS_PER_ENTRY },
        maxResponseBytes: edge.maxResponseBytes,
        log,
      }),
    ],
    // No filtering through relations (EXISTS subqueries over other tables, `every`/`none`):
    // postgraphile-plugin-connection-filter 4.0.1 adds them whatever connectionFilterRelations says.
    disablePlugins: ['PgConnectionArgFilterBackwardRelationsPlugin', 'PgConnectionArgFilterForwardRelationsPlugin'],
    pgServices: [
      makePgService({
        pool,
        schemas: ['app_public'],
        // Introspect as the visitor, so the schema only offers what the visitor may do.
        pgSettingsForIntrospection: { role: config.database.roles.visitor },
        // No subscriptions, so no LISTEN connection.
        pubsub: false,
      }),
    ],
    gather: {
      // Function arguments without a default are required (non-null) in GraphQL.
      pgStrictFunctions: true,
    },
    schema: {
      // `filter` on connections (postgraphile-plugin-connection-filter): every operator
      // (equalTo, in, startsWith, includesInsensitive, greaterThan, …) combined with and/or/not,
      // on the columns the Amber preset already lets you filter and order by: indexed ones
      // (`condition` and `orderBy` offer the same columns). Whatever could be slow stays off:
      // computed columns, setof functions, array columns and filtering through relations (a
      // function can still opt in with the `@filterable` smart tag).
      connectionFilterComputedColumns: false,
      connectionFilterSetofFunctions: false,
      connectionFilterArrays: false,
      // Documented, but ignored by v4.0.1, whose relation plugins are always on: see
      // disablePlugins above, which does turn them off.
      connectionFilterRelations: false,
      connectionFilterLogicalOperators: true,
      // `filter: { name: null }` and `filter: { name: {} }` are refused (INVALID_VALUE), not
      // silently read as "no condition".
      connectionFilterAllowNullInput: false,
      connectionFilterAllowEmptyObjectInput: false,
    },
    grafast: {
      // Planning is synchronous (it blocks the event loop): a plan that takes longer is refused
      // (QUERY_TOO_COMPLEX). The document limits keep legitimate plans far below this.
      timeouts: { planning: config.graphql.planningTimeoutMs },
      context(requestContext) {
        const req = (requestContext as { expressv4?: { req: Request } }).expressv4?.req;
        return { pgSettings: pgSettingsFor(config, req ? requestClaims(req) : undefined, req ? clientAddress(req) : undefined) };
      },
    },
    grafserv: {
      graphqlPath: GRAPHQL_PATH,
      graphiql: config.graphiql,
      graphiqlOnGraphQLGET: false,
      graphiqlPath: GRAPHIQL_PATH,
      websockets: false,
      maxRequestLength: edge.maxBodyBytes,
      // Parsing and validation are cached by src/http/graphql-edge.ts (bounded by count and size).
      parseAndValidateCacheSize: 0,
      maskError: makeMaskError(errors, log),
    },
  };
}

/** How long start-up keeps trying to read the schema from a database that does not answer (ms). */
export const SCHEMA_BUILD_PATIENCE_MS = 60_000;

/**
 * PostGraphile with its schema built. It reads the schema from the database once, when made, and
 * keeps that result: a build that failed because the database did not answer (a connection that
 * timed out on a loaded machine, a restart) would leave every later request failing. So the build
 * is awaited here, and made again on such a failure, with growing pauses, for up to
 * `patienceMs`; any other failure, or the database still silent then, fails the start.
 */
export async function createPostGraphile(
  preset: GraphileConfig.Preset,
  log: Logger,
  patienceMs = SCHEMA_BUILD_PATIENCE_MS,
): Promise<PostGraphileInstance> {
  const deadline = Date.now() + patienceMs;
  for (let attempt = 1; ; attempt++) {
    const pgl = postgraphile(preset);
    try {
      await pgl.getSchema();
      return pgl;
    } catch (error) {
      await Promise.resolve().then(() => pgl.release()).catch(() => undefined);
      if (!isDatabaseUnavailable(error) || Date.now() >= deadline) throw error;
      const pauseMs = Math.min(250 * 2 ** (attempt - 1), 5_000, Math.max(0, deadline - Date.now()));
      log.warn({ attempt, error: (error as Error).message, retryInMs: pauseMs }, 'the database did not answer while the GraphQL schema was read; trying again');
      await sleep(pauseMs);
    }
  }
}
