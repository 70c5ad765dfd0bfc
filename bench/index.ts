// `npm run bench`: Atrium's costs measured side by side in one run — row-level security, audit,
// the GraphQL API, jobs, memory, the GraphQL edge's memory, query plans, the month-end reports, files, the activity log at
// ten million events — on a generated dataset, against a fresh embedded
// PostgreSQL (or BENCH_DATABASE_URL, a superuser URL of a server you choose).
//
//   npm run bench                              default size (100 organizations, 2,000 tasks each on average)
//   npm run bench -- --orgs 100 --rows 10000   bigger
//   npm run bench -- --only rls,audit,plans    some sections
//   npm run bench -- --only activity --events 1000000   the activity log at a million events (default 10 million)
//   npm run bench -- --compare bench/results/previous.json
//   npm run bench -- --smoke                   a tiny run of the harness (npm test runs it)
//
// Prints a table, writes every figure with the machine's facts to bench/results/<date>.json (or
// --out), and with --compare flags regressions over 15%. docs/PERFORMANCE.md records the figures.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig, type Config } from '../src/config.ts';
import { openDatabase, withDatabase, type Database } from '../src/db/bootstrap.ts';
import { runMigrations } from '../src/db/migrations.ts';
import { createLogger, type Logger } from '../src/log.ts';
import { ROOT } from '../src/paths.ts';
import { orgPicker, type BenchContext, type BenchOptions, type BenchSection } from './context.ts';
import { latencyChart } from './chart.ts';
import { generateDataset } from '../src/db/dataset.ts';
import { activityScaleSection } from './activity-scale.ts';
import { apiSection } from './api.ts';
import { auditSection } from './audit.ts';
import { edgeSection } from './edge.ts';
import { fairnessSection } from './fairness.ts';
import { filesSection } from './files.ts';
import { jobsSection } from './jobs.ts';
import { memorySection } from './memory.ts';
import { plansSection } from './plans.ts';
import { reportsSection } from './reports.ts';
import { rlsSection } from './rls.ts';
import { codeCommit, compareResults, formatRegressions, formatReport, machineFacts, type BenchResult } from './report.ts';
import type { Section } from './stats.ts';
import { freePort } from '../src/free-port.ts';

/** The server's settings that are not at their defaults (from its files or command line). */
async function serverSettings(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string; value: string }>(
      `select name, current_setting(name) as value from pg_settings
       where source in ('configuration file', 'command line', 'environment variable', 'global', 'database') order by name`,
    );
    return Object.fromEntries(rows.map((r) => [r.name, r.value]));
  } finally {
    await client.end();
  }
}

/** Every section, in the order they run. */
export const SECTIONS: Record<string, BenchSection> = {
  rls: rlsSection,
  audit: auditSection,
  api: apiSection,
  jobs: jobsSection,
  fairness: fairnessSection,
  memory: memorySection,
  edge: edgeSection,
  plans: plansSection,
  reports: reportsSection,
  files: filesSection,
  // Last: it grows the log to --events events and changes organizations' retention settings.
  activity: activityScaleSection,
};

export interface BenchArgs {
  options: BenchOptions;
  only: string[];
  out: string | undefined;
  compare: string | undefined;
  /** Keep the database on BENCH_DATABASE_URL afterwards (to look at it). */
  keep: boolean;
}

export function parseArgs(argv: string[]): BenchArgs {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const num = (name: string, fallback: number, min: number) => {
    const v = get(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}, got ${v}`);
    return n;
  };
  const smoke = argv.includes('--smoke');
  const options: BenchOptions = {
    smoke,
    orgs: num('orgs', smoke ? 3 : 100, 1),
    rows: num('rows', smoke ? 40 : 2000, 20),
    iterations: num('iterations', smoke ? 20 : 1000, 1),
    durationSeconds: num('duration', smoke ? 1 : 30, 1),
    soakSeconds: num('soak', smoke ? 0 : 300, 0),
    connections: num('connections', 8, 1),
    activityEvents: num('events', smoke ? 20_000 : 10_000_000, 0),
  };
  const only = (get('only') ?? Object.keys(SECTIONS).join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of only) if (!SECTIONS[s]) throw new Error(`unknown section ${s} (sections: ${Object.keys(SECTIONS).join(', ')})`);
  return { options, only, out: get('out'), compare: get('compare'), keep: argv.includes('--keep') };
}


/** A fresh database for the run: embedded in a temporary folder, or on BENCH_DATABASE_URL. */
async function benchDatabase(log: Logger, keep: boolean): Promise<{ db: Database; config: Config; cleanup: () => Promise<void> }> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-bench-'));
  fs.chmodSync(tmp, 0o755); // the embedded server runs as the OS user "postgres"
  const external = process.env.BENCH_DATABASE_URL;
  const id = `atrium_bench_${Date.now().toString(36)}`;
  const secret = () => randomBytes(18).toString('base64url');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'development',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    DATABASE_URL: external ? withDatabase(external, id) : '',
    EMBEDDED_PG_DIR: path.join(tmp, 'pg'),
    EMBEDDED_PG_PORT: String(await freePort()),
    SEED_DEMO_DATA: 'false',
    // On a shared server: roles of its own, dropped afterwards.
    ...(external
      ? {
          DATABASE_OWNER: `${id}_owner`,
          DATABASE_AUTHENTICATOR: `${id}_authenticator`,
          DATABASE_VISITOR: `${id}_visitor`,
          DATABASE_WORKER: `${id}_worker`,
          DATABASE_PRODUCER: `${id}_producer`,
          DATABASE_OWNER_PASSWORD: secret(),
          DATABASE_AUTHENTICATOR_PASSWORD: secret(),
          DATABASE_WORKER_PASSWORD: secret(),
        }
      : {}),
  };
  const config = loadConfig(env);
  const db = await openDatabase(config, log);
  await runMigrations(db, log, { current: true });
  return {
    db,
    config,
    cleanup: async () => {
      await db.stop();
      fs.rmSync(tmp, { recursive: true, force: true });
      if (external && !keep) {
        const client = new pg.Client({ connectionString: withDatabase(external, 'postgres') });
        await client.connect();
        try {
          await client.query(`drop database if exists ${id} with (force)`);
          for (const role of ['producer', 'worker', 'authenticator', 'visitor', 'owner']) await client.query(`drop role if exists ${id}_${role}`);
        } finally {
          await client.end();
        }
      }
    },
  };
}

export async function runBench(args: BenchArgs, log: Logger, write: (text: string) => void = (t) => process.stdout.write(t)): Promise<BenchResult> {
  const { options } = args;
  const { db, config, cleanup } = await benchDatabase(log, args.keep);
  const notes: string[] = [];
  try {
    const started = Date.now();
    const dataset = await generateDataset(db.superuserUrl!, {
      orgs: options.orgs,
      rows: options.rows,
      progress: (done, total) => {
        if (!process.stderr.isTTY) return;
        const width = 30;
        const filled = Math.round((done / total) * width);
        process.stderr.write(`\rGenerating [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total} organizations, ${((Date.now() - started) / 1000).toFixed(0)} s`);
        if (done === total) process.stderr.write('\n');
      },
    });
    const ctx: BenchContext = { db, config, dataset, options, log, pickOrg: orgPicker(dataset.orgs), note: (m) => notes.push(m) };
    const sections: Section[] = [];
    for (const id of args.only) {
      log.info({ section: id }, 'benchmark section starting');
      sections.push(await SECTIONS[id]!(ctx));
    }
    const result: BenchResult = {
      command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
      facts: { ...machineFacts(db.serverVersion), commit: codeCommit(ROOT), settings: await serverSettings(db.ownerUrl) },
      dataset: { orgs: options.orgs, rows: options.rows, tables: dataset.tables, seconds: dataset.seconds },
      sections,
      notes,
    };
    write(formatReport(result));
    const out = args.out ?? path.join(ROOT, 'bench', 'results', `${result.facts.date.replace(/[:.]/g, '-')}.json`);
    if (!options.smoke || args.out) {
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
      write(`\nEvery figure: ${path.relative(process.cwd(), out)}\n`);
      const chart = latencyChart(sections, `Atrium latencies — ${result.facts.date.slice(0, 10)}, ${result.facts.cores} cores, PostgreSQL ${result.facts.postgres}`);
      if (chart) {
        const svg = out.replace(/\.json$/, '') + '.svg';
        fs.writeFileSync(svg, chart);
        write(`Latency chart: ${path.relative(process.cwd(), svg)}\n`);
      }
    }
    if (args.compare) write(formatRegressions(compareResults(JSON.parse(fs.readFileSync(args.compare, 'utf8')) as BenchResult, result)));
    return result;
  } finally {
    await cleanup();
  }
}

async function main(): Promise<void> {
  const log = createLogger(process.env.LOG_LEVEL ?? 'warn', 'bench');
  let args: BenchArgs;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(2);
  }
  await runBench(args, log);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
