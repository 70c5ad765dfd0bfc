// Claims in the docs must point at something real: every repository path named in README.md and
// docs/ exists, every SQL query shown in docs/ runs, docs/ERRORS.md lists exactly the error
// catalogue, and every error SQL raises by name is in that catalogue.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, test } from '@jest/globals';
import { EDGE_ERRORS } from '../src/http/errors.ts';
import { ROOT, SQL_DIR, MIGRATIONS_DIR } from '../src/paths.ts';
import { closePools, pool, roleName } from './support/db.ts';

afterAll(closePools);

const docFiles = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isSymbolicLink()) return [];
    return e.isDirectory() ? walk(full) : [full];
  });
}

const repoFiles = ['src', 'sql', 'migrations', 'tests', 'docs', '.ci'].flatMap((d) => walk(path.join(ROOT, d))).concat(fs.readdirSync(ROOT).map((f) => path.join(ROOT, f)));

describe.each(docFiles)('%s', (file) => {
  const text = read(file);

  test('every repository path it names exists', () => {
    const paths = [...text.matchAll(/`([A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)+\/?|[A-Za-z0-9_.-]+\.(?:ts|sql|md|json|js|cjs|yml|graphql|gmrc))`/g)]
      .map((m) => m[1])
      .filter((p) => !p.startsWith('.data/') && !p.startsWith('..') && !p.includes('://'));
    // A bare file name (`config.ts` in a list of src/) must exist somewhere in the repository.
    const missing = paths.filter((p) => (p.includes('/') ? !fs.existsSync(path.join(ROOT, p)) : !repoFiles.some((f) => path.basename(f) === p)));
    expect(missing).toEqual([]);
  });

  test('every SQL query it shows runs', async () => {
    const queries = [...text.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]);
    for (const sql of queries) {
      const client = await pool('owner').connect();
      try {
        await client.query('begin');
        await client.query(`select set_config('atrium.visitor', $1, true)`, [roleName('visitor')]);
        await expect(client.query(sql).then(() => 'ran')).resolves.toBe('ran');
      } finally {
        await client.query('rollback');
        client.release();
      }
    }
  });
});

test('docs/AUDIT_LOGGING_AND_REDACTION.md lists exactly the personal-data classification (app_private.data_columns)', async () => {
  const { rows } = await pool('owner').query<{ table_name: string; column_name: string; category: string; in_log: string }>(
    `select table_name, column_name, category, in_log from app_private.data_columns where schema_name = 'app_public' order by table_name, column_name`,
  );
  const documented = [...read('docs/AUDIT_LOGGING_AND_REDACTION.md').matchAll(/^\| ([a-z_]+) \| ([a-z_]+) \| ([a-z_]+) \| (keep|mask|omit) \|$/gm)].map((m) => ({
    table_name: m[1], column_name: m[2], category: m[3], in_log: m[4],
  }));
  expect(rows.length).toBeGreaterThan(0);
  expect(documented).toEqual(rows);
});

test('docs/ERRORS.md lists exactly the error catalogue (app_private.error_codes)', async () => {
  const { rows } = await pool('owner').query<{ code: string; sqlstate: string; http_status: number }>('select code, sqlstate, http_status from app_private.error_codes order by code');
  const documented = [...read('docs/ERRORS.md').matchAll(/^\| `([A-Z_]+)` \| `([0-9A-Z]{5})` \| (\d{3}) \|/gm)].map((m) => ({ code: m[1], sqlstate: m[2], http_status: Number(m[3]) }));
  const byCode = (x: { code: string }, y: { code: string }) => (x.code < y.code ? -1 : x.code > y.code ? 1 : 0);
  expect(documented.sort(byCode)).toEqual([...rows].sort(byCode));
});

test('docs/ERRORS.md lists exactly the further SQLSTATEs mapped onto codes (app_private.error_sqlstates)', async () => {
  const { rows } = await pool('owner').query<{ sqlstate: string; code: string; message: string }>('select sqlstate, code, message from app_private.error_sqlstates order by sqlstate');
  const documented = [...read('docs/ERRORS.md').matchAll(/^\| `([0-9A-Z]{5})` \| `([A-Z_]+)` \| (.+) \|$/gm)].map((m) => ({ sqlstate: m[1], code: m[2], message: m[3] }));
  expect(rows.length).toBeGreaterThan(0);
  expect(documented.sort((x, y) => (x.sqlstate < y.sqlstate ? -1 : 1))).toEqual(rows);
});

test('docs/ERRORS.md lists exactly the rules of value types (app_private.domain_rules)', async () => {
  const { rows } = await pool('owner').query<{ domain_name: string; constraint_name: string; code: string; message: string }>(
    'select domain_name, constraint_name, code, message from app_private.domain_rules order by 1, 2',
  );
  const documented = [...read('docs/ERRORS.md').matchAll(/^\| `([a-z_]+\.[a-z_]+)` \| `([a-z_]+)` \| `([A-Z_]+)` \| (.+) \|$/gm)].map((m) => ({
    domain_name: m[1], constraint_name: m[2], code: m[3], message: m[4],
  }));
  expect(rows.length).toBeGreaterThan(0);
  expect(documented).toEqual(rows);
});

test('every error raised by name in sql/ and migrations/ is in the catalogue', async () => {
  const { rows } = await pool('owner').query<{ code: string }>('select code from app_private.error_codes');
  const known = new Set(rows.map((r) => r.code));
  const files = [...walk(SQL_DIR), ...walk(MIGRATIONS_DIR)].filter((f) => f.endsWith('.sql'));
  const used = new Set(files.flatMap((f) => [...fs.readFileSync(f, 'utf8').matchAll(/app_private\.fail\('([A-Z_]+)'/g)].map((m) => m[1])));
  expect(used.size).toBeGreaterThan(5);
  expect([...used].filter((c) => !known.has(c))).toEqual([]);
});

test('docs/ERRORS.md lists exactly the codes of the API edge (src/http/errors.ts EDGE_ERRORS, and the token, page-size and fallback codes) with their HTTP status', () => {
  const text = read('docs/ERRORS.md');
  const edgeTables = text.slice(text.indexOf('## From the HTTP layer'));
  const documented = [...edgeTables.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])] as const);
  const others: Array<readonly [string, number]> = [['INVALID_TOKEN', 401], ['TOKEN_EXPIRED', 401], ['NOT_FOUND', 404], ['INTERNAL', 500], ['PAGE_SIZE_TOO_LARGE', 400]];
  const expected = [...Object.entries(EDGE_ERRORS), ...others];
  const sort = (list: ReadonlyArray<readonly [string, number]>) => [...list].sort((x, y) => x[0].localeCompare(y[0]));
  expect(sort(documented)).toEqual(sort(expected));
});
