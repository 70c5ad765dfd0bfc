// The GraphQL API: PostGraphile v5 (Amber preset, simplified inflection) over schema app_public,
// served by grafserv on Express. Every request runs as the visitor role with the verified token
// claims as settings (src/http/auth.ts); row-level security decides what it sees.
import { PgSimplifyInflectionPreset } from '@graphile/simplify-inflection';
import { makePgService } from 'postgraphile/adaptors/pg';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { postgraphile, type PostGraphileInstance } from 'postgraphile';
import type { Request } from 'express';
import pg from 'pg';
import type { Config } from '../config.ts';
import type { TokenService } from '../auth/tokens.ts';
import { makeAuthPlugin } from './auth-mutations.ts';
import { MutationResultNamePlugin } from './inflection.ts';
import { pgSettingsFor, requestClaims } from './auth.ts';
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
    extends: [PostGraphileAmberPreset, PgSimplifyInflectionPreset],
    plugins: [makeAuthPlugin(tokens, errors), MutationResultNamePlugin],
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
