// The migration gate: squawk (npm squawk-cli, a linter for PostgreSQL migrations) over every
// migration committed from GATE_FROM on and over migrations/current.sql, each compiled as
// graphile-migrate runs it (`--!include`s expanded, role placeholders filled in) on the runner's
// connection (its lock_timeout, src/db/migrations.ts), so that a statement that would lock a
// large, busy table (an index built without CONCURRENTLY, a constraint validated while it is
// added, a transaction without statement_timeout) fails `npm test`. On top of squawk's rules: a
// `--! no-transaction` migration holds exactly one statement.
//
// Settings and the short, reasoned list of rules left out: .squawk.toml. One statement may be
// exempted where it stands, with its reason on the line above: `-- squawk-ignore <rule>`.
// Migrations before GATE_FROM were written before the gate and cannot change (graphile-migrate
// chains their hashes); docs/MIGRATIONS.md says which of their statements lock and why that was
// acceptable then.
//
//   npm run lint:migrations [file.sql...]   the gate's targets, or the files named
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { compile, type Settings } from 'graphile-migrate';
import JSON5 from 'json5';
import { GMRC, MIGRATIONS_DIR, ROOT } from '../paths.ts';
import type { RoleNames } from '../config.ts';
import { fillPlaceholders } from './bootstrap.ts';
import { hasCurrentMigration, MIGRATION_LOCK_TIMEOUT } from './migrations.ts';

/** The first committed migration the gate checks. */
export const GATE_FROM = 28;
export const SQUAWK_CONFIG = path.join(ROOT, '.squawk.toml');

export interface Violation {
  file: string;
  line: number;
  rule: string;
  message: string;
  help?: string;
}

export interface LintTarget {
  /** Shown in reports: the migration's path under the repository. */
  name: string;
  /** The SQL as graphile-migrate sends it. */
  sql: string;
  /** graphile-migrate wraps the file in a transaction unless its header says `--! no-transaction`. */
  inTransaction: boolean;
}

// Role names for the placeholders: the defaults (the linter needs names, not the roles).
const ROLES: RoleNames = { owner: 'atrium_owner', authenticator: 'atrium_authenticator', visitor: 'atrium_visitor', worker: 'atrium_worker', producer: 'atrium_producer' };

function settings(): Settings {
  const gmrc = JSON5.parse(fs.readFileSync(GMRC, 'utf8')) as Settings;
  return {
    ...gmrc,
    // compile() reads no database; graphile-migrate only insists on a well-formed one.
    connectionString: 'postgres://lint@localhost/lint',
    migrationsFolder: MIGRATIONS_DIR,
    placeholders: Object.fromEntries((['authenticator', 'visitor', 'worker', 'producer'] as const).map((r) => [`:DATABASE_${r.toUpperCase()}`, ROLES[r]])),
    afterReset: [],
    afterAllMigrations: [],
    afterCurrent: [],
  };
}

/**
 * False when the migration's body begins with `--! no-transaction`, as graphile-migrate decides it
 * (its first line; in a committed file, the first line after the Previous/Hash/Message header).
 */
export function runsInTransaction(sql: string): boolean {
  const lines = sql.split('\n');
  let i = 0;
  while (i < lines.length && /^--!\s*(Previous|Hash|Message|AllowInvalidHash):/.test(lines[i]!)) i++;
  if (i > 0) while (i < lines.length && lines[i]!.trim() === '') i++;
  return !/^--!\s*no-transaction\b/.test(lines[i] ?? '');
}

/**
 * Compiles one migration's text as graphile-migrate would run it. A committed migration has its
 * includes expanded already (between `--! Included` markers, which compile() refuses): only its
 * placeholders are filled in.
 */
export async function compileMigration(name: string, raw: string): Promise<LintTarget> {
  const sql = /^--! Included /m.test(raw)
    ? fillPlaceholders(raw, ROLES, 'atrium')
    : await compile(settings(), raw, { filename: path.join(ROOT, name) });
  return { name, sql, inTransaction: runsInTransaction(raw) };
}

/** The gate's targets: committed migrations numbered GATE_FROM and later, and current.sql when it holds SQL. */
export async function gateTargets(): Promise<LintTarget[]> {
  const committed = path.join(MIGRATIONS_DIR, 'committed');
  const files = fs
    .readdirSync(committed)
    .filter((f) => /^\d{6}.*\.sql$/.test(f) && Number(f.slice(0, 6)) >= GATE_FROM)
    .sort()
    .map((f) => path.join('migrations', 'committed', f));
  if (hasCurrentMigration()) files.push(path.join('migrations', 'current.sql'));
  return Promise.all(files.map(async (f) => compileMigration(f, fs.readFileSync(path.join(ROOT, f), 'utf8'))));
}

/**
 * The statements of a SQL text, counted past comments, quoted strings, quoted names and
 * dollar-quoted bodies (a function's body holds semicolons of its own).
 */
export function countStatements(sql: string): number {
  let count = 0;
  let pending = false;
  for (let i = 0; i < sql.length; ) {
    const rest = sql.slice(i);
    const skip =
      /^--[^\n]*/.exec(rest) ??
      /^\/\*[\s\S]*?\*\//.exec(rest) ??
      /^'(?:[^']|'')*'/.exec(rest) ??
      /^"(?:[^"]|"")*"/.exec(rest) ??
      (() => {
        const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(rest);
        if (!tag) return null;
        const close = rest.indexOf(tag[0], tag[0].length);
        return [close < 0 ? rest : rest.slice(0, close + tag[0].length)];
      })();
    if (skip) {
      if (!skip[0].startsWith('--') && !skip[0].startsWith('/*')) pending = true;
      i += skip[0].length;
      continue;
    }
    const ch = sql[i]!;
    if (ch === ';') {
      if (pending) count++;
      pending = false;
    } else if (!/\s/.test(ch)) {
      pending = true;
    }
    i++;
  }
  return count + (pending ? 1 : 0);
}

/**
 * graphile-migrate sends a `--! no-transaction` migration as one query, which PostgreSQL runs as
 * one implicit transaction when it holds several statements (and refuses for CONCURRENTLY): such
 * a migration must hold exactly one statement.
 */
export function oneStatementOutsideTransaction(target: LintTarget): Violation[] {
  if (target.inTransaction) return [];
  const n = countStatements(target.sql);
  if (n === 1) return [];
  return [{
    file: target.name,
    line: 1,
    rule: 'one-statement-without-transaction',
    message: `A \`--! no-transaction\` migration must hold exactly one statement; this one holds ${n}.`,
    help: 'Split it: one migration per statement that must run outside a transaction (CREATE INDEX CONCURRENTLY, ALTER TYPE ... ADD VALUE).',
  }];
}

interface SquawkReport {
  file: string;
  line: number;
  message: string;
  help?: string | null;
  rule_name: string;
}

const RUNNER_PRELUDE = `set lock_timeout = '${MIGRATION_LOCK_TIMEOUT}';`;

/** The rules .squawk.toml leaves out (its own list: squawk's --exclude replaces it). */
function configuredExclusions(): string[] {
  const list = /excluded_rules\s*=\s*\[([\s\S]*?)\]/.exec(fs.readFileSync(SQUAWK_CONFIG, 'utf8'))?.[1] ?? '';
  return [...list.matchAll(/"([a-z-]+)"/g)].map((m) => m[1]!);
}

function squawkBin(): string {
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve('squawk-cli/package.json');
  const pkg = JSON.parse(fs.readFileSync(pkgPath, 'utf8')) as { bin: string | Record<string, string> };
  const bin = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin.squawk!;
  return path.join(path.dirname(pkgPath), bin);
}

/** Runs squawk over the targets (written to a scratch folder under their own names). */
export async function squawk(targets: LintTarget[]): Promise<Violation[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-squawk-'));
  try {
    const violations: Violation[] = [];
    for (const inTransaction of [true, false]) {
      const group = targets.filter((t) => t.inTransaction === inTransaction);
      if (group.length === 0) continue;
      const files = group.map((t, i) => {
        const file = path.join(dir, `${i}-${inTransaction ? 't' : 'n'}-${path.basename(t.name)}`);
        // As the runner runs it: on a connection with the migrations' lock_timeout.
        fs.writeFileSync(file, `${RUNNER_PRELUDE}\n${t.sql}`);
        return { file, name: t.name };
      });
      // Outside a transaction a migration is one statement and holds no lock past it: how long
      // it may run (a concurrent index build on a large table) is not bounded.
      const exclude = inTransaction ? [] : ['--exclude', [...configuredExclusions(), 'require-statement-timeout'].join(',')];
      const args = [squawkBin(), '--config', SQUAWK_CONFIG, '--reporter', 'json', ...(inTransaction ? ['--assume-in-transaction'] : []), ...exclude, ...files.map((f) => f.file)];
      const out = await new Promise<string>((resolve, reject) =>
        execFile(process.execPath, args, { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
          // Exit status 1 means "violations found": the report is on stdout.
          if (error && !stdout.trim().startsWith('[')) reject(new Error(`squawk failed: ${stderr || error.message}`));
          else resolve(stdout);
        }),
      );
      const byFile = new Map(files.map((f) => [f.file, f.name]));
      for (const r of JSON.parse(out.trim() || '[]') as SquawkReport[]) {
        violations.push({ file: byFile.get(r.file) ?? r.file, line: r.line, rule: r.rule_name, message: r.message, help: r.help ?? undefined });
      }
    }
    return violations;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function lintMigrations(targets: LintTarget[]): Promise<Violation[]> {
  return [...targets.flatMap(oneStatementOutsideTransaction), ...(await squawk(targets))];
}

export function formatViolations(violations: Violation[]): string {
  return violations
    .map((v) => `${v.file}:${v.line}: ${v.rule}: ${v.message}${v.help ? `\n    ${v.help}` : ''}`)
    .join('\n');
}

async function main(): Promise<void> {
  const named = process.argv.slice(2);
  const targets = named.length > 0
    ? await Promise.all(named.map((f) => compileMigration(path.relative(ROOT, path.resolve(f)), fs.readFileSync(f, 'utf8'))))
    : await gateTargets();
  const violations = await lintMigrations(targets);
  if (violations.length > 0) {
    process.stderr.write(`${formatViolations(violations)}\n\n${violations.length} problem(s) in ${new Set(violations.map((v) => v.file)).size} migration(s); see .squawk.toml and docs/MIGRATIONS.md.\n`);
    process.exitCode = 1;
  } else {
    process.stdout.write(`${targets.length} migration(s) checked: ${targets.map((t) => t.name).join(', ') || 'none'}; no problem found.\n`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
