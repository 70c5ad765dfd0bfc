// schema.graphql: the GraphQL schema, sorted, committed so that API changes show up in review.
// `npm run export-schema` rewrites it (and security-surface.sql: src/db/security-surface.ts);
// tests/schema.test.ts fails when it is out of date.
import fs from 'node:fs';
import { lexicographicSortSchema, printSchema, type GraphQLSchema } from 'postgraphile/graphql';
import { makeSchema } from 'postgraphile';
import { createTokenService } from '../auth/tokens.ts';
import type { Config } from '../config.ts';
import { openDatabase } from '../db/bootstrap.ts';
import { runMigrations } from '../db/migrations.ts';
import { writeSecuritySurface } from '../db/security-surface.ts';
import type { Logger } from '../log.ts';
import { SCHEMA_GRAPHQL } from '../paths.ts';
import { ErrorCatalog } from './errors.ts';
import { createApiPool, makePreset } from './postgraphile.ts';
import { createStorage } from '../storage/index.ts';

/** The API's schema over the database behind `db` (migrations already applied). */
export async function buildApiSchema(config: Config, db: { ownerUrl: string; authenticatorUrl: string; jwtSecret: string }, log: Logger): Promise<GraphQLSchema> {
  const errors = await ErrorCatalog.load(db.ownerUrl);
  const tokens = createTokenService(db.jwtSecret, config.auth.accessTokenTtlSeconds);
  const pool = createApiPool(db, log);
  // (The schema does not depend on the driver; nothing is stored.)
  const storage = await createStorage({ ...config.files, driver: 'local' }, { publicUrl: config.publicUrl, jwtSecret: db.jwtSecret });
  try {
    return (await makeSchema(makePreset(config, pool, tokens, errors, log, storage))).schema;
  } finally {
    await pool.end();
    await storage.close();
  }
}

/** The printed schema of the database behind `db` (migrations already applied). */
export async function printApiSchema(config: Config, db: { ownerUrl: string; authenticatorUrl: string; jwtSecret: string }, log: Logger): Promise<string> {
  return `${printSchema(lexicographicSortSchema(await buildApiSchema(config, db, log)))}\n`;
}

/** Writes schema.graphql and security-surface.sql (src/db/security-surface.ts); returns their paths. */
export async function writeSchema(config: Config, log: Logger, file = SCHEMA_GRAPHQL): Promise<string[]> {
  const db = await openDatabase(config, log);
  try {
    await runMigrations(db, log, { current: config.nodeEnv !== 'production' });
    fs.writeFileSync(file, await printApiSchema(config, db, log));
    return [file, await writeSecuritySurface(db.ownerUrl, db.roles)];
  } finally {
    await db.stop();
  }
}
