// The GraphQL API: PostGraphile v5 (Amber preset, simplified inflection, connection filters,
// capped page size) over schema app_public, served by grafserv on Express. Every request runs as the visitor role with the verified token
// claims as settings (src/http/auth.ts); row-level security decides what it sees.
import { PgSimplifyInflectionPreset } from '@graphile/simplify-inflection';
import { makePgService } from 'postgraphile/adaptors/pg';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { postgraphile, type PostGraphileInstance } from 'postgraphile';
import { PostGraphileConnectionFilterPreset } from 'postgraphile-plugin-connection-filter';
import type { Request } from 'express';
import pg from 'pg';
import type { Config } from '../config.ts';
import type { TokenService } from '../auth/tokens.ts';
import { makeAuthPlugin } from './auth-mutations.ts';
import { MutationResultNamePlugin } from './inflection.ts';
import { pgSettingsFor, requestClaims } from './auth.ts';
import { makePageSizePlugin } from './page-size.ts';
import { makeWebhookUrlPlugin } from './webhook-urls.ts';
import { type ErrorCatalog, makeMaskError } from './errors.ts';
import type { Logger } from '../log.ts';

export const GRAPHQL_PATH = '/graphql';
export const GRAPHIQL_PATH = '/graphiql';

export interface ApiDatabase {
  authenticatorUrl: string;
}

/** The API's pool: logs in as the authenticator; ended by whoever created it, after release. */
export function createApiPool(db: ApiDatabase, log: Logger): pg.Pool {
  const pool = new pg.Pool({ connectionString: db.authenticatorUrl, max: 20 });
  // A connection dropped by the server (restart, failover) is replaced by the next checkout.
  pool.on('error', (error) => log.warn({ err: error }, 'API database connection lost'));
  return pool;
}

export function makePreset(config: Config, pool: pg.Pool, tokens: TokenService, errors: ErrorCatalog, log: Logger): GraphileConfig.Preset {
  return {
    extends: [PostGraphileAmberPreset, PgSimplifyInflectionPreset, PostGraphileConnectionFilterPreset],
    plugins: [makeAuthPlugin(tokens, errors), MutationResultNamePlugin, makePageSizePlugin(config.pageSizeMax, errors), makeWebhookUrlPlugin(config.webhooks.allowPrivateNetworks)],
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
      context(requestContext) {
        const req = (requestContext as { expressv4?: { req: Request } }).expressv4?.req;
        return { pgSettings: pgSettingsFor(config, req ? requestClaims(req) : undefined) };
      },
    },
    grafserv: {
      graphqlPath: GRAPHQL_PATH,
      graphiql: config.graphiql,
      graphiqlOnGraphQLGET: false,
      graphiqlPath: GRAPHIQL_PATH,
      websockets: false,
      maxRequestLength: 1_000_000,
      maskError: makeMaskError(errors, log),
    },
  };
}

export function createPostGraphile(preset: GraphileConfig.Preset): PostGraphileInstance {
  return postgraphile(preset);
}
