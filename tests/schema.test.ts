// schema.graphql is committed so API changes show up in review; it must match what the current
// migrations generate (`npm run export-schema` rewrites it).
import fs from 'node:fs';
import { afterAll, expect, test } from '@jest/globals';
import { SCHEMA_GRAPHQL } from '../src/paths.ts';
import { printApiSchema } from '../src/http/schema-export.ts';
import { closePools, testConfig, urlFor } from './support/db.ts';
import { testLogger } from './support/log.ts';

afterAll(closePools);

test('schema.graphql is up to date (run `npm run export-schema` after changing the database)', async () => {
  const config = testConfig();
  const printed = await printApiSchema(config, { ownerUrl: urlFor('owner'), authenticatorUrl: urlFor('authenticator'), jwtSecret: process.env.JWT_SECRET! }, testLogger('test', 'error'));
  expect(printed).toBe(fs.readFileSync(SCHEMA_GRAPHQL, 'utf8'));
}, 60_000);
