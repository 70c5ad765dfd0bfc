// security-surface.sql is committed so that a change to who may see or do what shows up in review
// as policies, grants and SECURITY DEFINER functions, not only as the migration's call; it must
// match what the current migrations produce (`npm run export-schema` rewrites it).
import fs from 'node:fs';
import { afterAll, expect, test } from '@jest/globals';
import { printSecuritySurface } from '../src/db/security-surface.ts';
import { SECURITY_SURFACE } from '../src/paths.ts';
import { closePools, testConfig, urlFor } from './support/db.ts';

afterAll(closePools);

const roles = () => testConfig().database.roles;

test('security-surface.sql is up to date (run `npm run export-schema` after changing the database)', async () => {
  expect(await printSecuritySurface(urlFor('owner'), roles())).toBe(fs.readFileSync(SECURITY_SURFACE, 'utf8'));
});

test('it names the roles as the migrations do, and shows every tenant table with its row-level security forced', async () => {
  const text = fs.readFileSync(SECURITY_SURFACE, 'utf8');
  for (const name of Object.values(roles())) expect(text).not.toMatch(new RegExp(`\\b${name}\\b`));
  expect(text).toMatch(/^-- app_public\.tasks \(table\): row-level security enabled, forced$/m);
  expect(text).not.toMatch(/row-level security (DISABLED|enabled, NOT forced)/);
});
