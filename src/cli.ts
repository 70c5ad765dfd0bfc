// Atrium's command line. `npm start` runs `start`; the other commands have npm scripts too.
//
//   start                  PostgreSQL (embedded unless DATABASE_URL), migrations, and the API and
//                          the worker each in a supervised child process (src/supervisor.ts)
//   api                    the API alone (`npm start` runs it as `api --supervised`)
//   worker                 the job worker alone (set WORKER_INLINE=false on `start` then);
//                          `npm start` runs it as its own child process (src/worker/process.ts)
//   migrate <args...>      the graphile-migrate CLI with connections and role names filled in
//   db:setup [--print]     create/update roles and database as a superuser (or print the SQL)
//   install-worker-schema  install/upgrade the job queue schema (run by graphile-migrate hooks)
//   export-schema          write schema.graphql (sorted) and security-surface.sql from the
//                          current database
//   seed                   load the demo organizations (once) and print their sign-ins
//   data-quality           measure the data-quality table of docs/ENTITIES.md on the demo data
//   doctor [--json] [--only …]  the database's health: schema figures, migrations, latency,
//                          indexes, bloat, transactions, WAL, jobs; exit 1 on a violation
//   backup:setup [...]     pgBackRest and WAL archiving settings for a server (print or --write)
//   backup:drill [...]     the restore drill: backup, writes, point-in-time restore, checks
//   jobs [status|failed|retry]  the job queue: depth per task, workers, failed jobs, retry them
//   import-organization <zip>  load an organization export into this (migrated) database, which
//                          must not have that organization (docs/EXPORT_AND_IMPORT.md)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { openDatabase, runSetup, setupSql, withDatabase } from './db/bootstrap.ts';
import { installWorkerSchema, MIGRATION_PGOPTIONS } from './db/migrations.ts';
import { createLogger, type Logger } from './log.ts';
import { ROOT } from './paths.ts';
import { installProcessGuard } from './process-guard.ts';

type Command = (config: Config, log: Logger, args: string[]) => Promise<void>;

const commands: Record<string, Command> = {
  async start(config, log) {
    // Signals first: one during start-up stops what has started (the embedded PostgreSQL too).
    const { handleSignals, startSupervised } = await import('./index.ts');
    const signals = handleSignals(log);
    const { GRAPHIQL_PATH, GRAPHQL_PATH } = await import('./http/postgraphile.ts');
    const atrium = await startSupervised(config, log, { signal: signals.signal });
    signals.started(atrium.stop);
    if (atrium.demo) process.stdout.write(`\n${(await import('./db/seed.ts')).formatCredentials(atrium.demo)}`);
    process.stdout.write(
      `\nAtrium is running.\n  GraphQL:  ${atrium.url}${GRAPHQL_PATH}\n` +
        (config.graphiql ? `  GraphiQL: ${atrium.url}${GRAPHIQL_PATH}\n` : '') +
        `  Health:   ${atrium.url}/healthz  ${atrium.url}/readyz\n` +
        `  API:      runs in its own process (pid ${atrium.apiProcess.pid()}), restarted if it dies\n` +
        (atrium.workerInApi
          ? '  Jobs:     the worker runs in the API process\n'
          : atrium.workerProcess
            ? `  Jobs:     the worker runs in its own process (pid ${atrium.workerProcess.pid()})\n`
            : '  Jobs:     no worker here (WORKER_INLINE=false): run `npm run worker`\n') +
        '  Press Ctrl-C to stop.\n\n',
    );
  },

  async api(config, log, args) {
    // --supervised: started by `npm start` (src/index.ts, startSupervised), which has migrated
    // already; --with-worker: the job worker in this process too (WORKER_SAME_PROCESS);
    // --worker-reports: the parent passes on the worker process's health, for /readyz.
    const { handleSignals, startAtrium } = await import('./index.ts');
    const signals = handleSignals(log);
    const supervised = args.includes('--supervised');
    const { relayedWorkerHealth } = await import('./worker/process.ts');
    const relayed = args.includes('--worker-reports') ? relayedWorkerHealth() : undefined;
    if (relayed) process.on('message', (message) => relayed.receive(message));
    const atrium = await startAtrium(config, log, { api: true, worker: args.includes('--with-worker'), workerHealth: relayed?.health, migrate: !supervised, signal: signals.signal });
    signals.started(atrium.stop);
    if (supervised && process.send) {
      process.send({ type: 'api-listening', url: atrium.url!, port: atrium.port! });
      (await import('./supervisor.ts')).stopWithParent(atrium.stop);
    }
  },

  async worker(config, log, args) {
    const { handleSignals, startAtrium } = await import('./index.ts');
    const signals = handleSignals(log);
    // --supervised: started by `npm start` (src/worker/process.ts), which has migrated already.
    const supervised = args.includes('--supervised');
    const atrium = await startAtrium(config, log, { api: false, worker: true, migrate: !supervised, signal: signals.signal });
    signals.started(atrium.stop);
    if (supervised) (await import('./worker/process.ts')).superviseFromParent(atrium.worker!, atrium.stop);
  },

  async migrate(config, log, args) {
    const db = await openDatabase(config, log);
    try {
      if (!db.superuserUrl && ['reset', 'commit', 'uncommit', 'watch'].some((c) => args.includes(c))) {
        log.warn('without a superuser connection, commands that reset the shadow database need SHADOW_DATABASE_URL and ROOT_DATABASE_URL in the environment');
      }
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        DATABASE_URL: db.ownerUrl,
        // The migrations' lock_timeout, as at start-up (src/db/migrations.ts), through the
        // environment: a hook's own connection options (install-worker-schema) still win.
        PGOPTIONS: [process.env.PGOPTIONS, MIGRATION_PGOPTIONS].filter(Boolean).join(' '),
        DATABASE_AUTHENTICATOR: db.roles.authenticator,
        DATABASE_VISITOR: db.roles.visitor,
        DATABASE_WORKER: db.roles.worker,
        DATABASE_PRODUCER: db.roles.producer,
      };
      if (db.superuserUrl) {
        env.ROOT_DATABASE_URL ??= withDatabase(db.superuserUrl, 'postgres');
        env.SHADOW_DATABASE_URL ??= withDatabase(db.ownerUrl, `${db.databaseName}_shadow`);
      }
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn(path.join(ROOT, 'node_modules', '.bin', 'graphile-migrate'), args, { cwd: ROOT, env, stdio: 'inherit' });
        child.once('error', reject);
        child.once('exit', (c) => resolve(c ?? 1));
      });
      process.exitCode = code;
    } finally {
      await db.stop();
    }
  },

  async 'db:setup'(config, log, args) {
    const databaseName = config.database.url ? decodeURIComponent(new URL(config.database.url).pathname.slice(1)) : 'atrium';
    if (args.includes('--print')) {
      // For psql, as a superuser: roles, the database if missing, then the per-database set-up.
      const { roles } = config.database;
      const sql = setupSql(roles, databaseName);
      process.stdout.write(
        `-- Atrium set-up for database ${databaseName}: pipe into psql as a superuser.\n${sql.roles}\n` +
          `select format('create database %I owner %I', '${databaseName}', '${roles.owner}')\n` +
          `where not exists (select from pg_database where datname = '${databaseName}') \\gexec\n` +
          `\\connect ${databaseName}\n${sql.database}`,
      );
      return;
    }
    const root = process.env.ROOT_DATABASE_URL;
    if (root === undefined) {
      // No separate superuser: DATABASE_URL (or the embedded server) is one, and opening the
      // database runs the set-up.
      await (await openDatabase(config, log)).stop();
      return;
    }
    await runSetup(withDatabase(root, databaseName), config.database.roles, databaseName, {
      owner: config.database.ownerPassword,
      authenticator: config.database.authenticatorPassword,
      worker: config.database.workerPassword,
    }, log);
    log.info('roles and database are set up');
  },

  async 'install-worker-schema'(config, log) {
    // Called by graphile-migrate's afterAllMigrations hook, which passes the owner's URL as GM_DBURL.
    const ownerUrl = process.env.GM_DBURL;
    if (ownerUrl) {
      await installWorkerSchema({ ownerUrl, roles: config.database.roles }, log);
      return;
    }
    const db = await openDatabase(config, log);
    try {
      await installWorkerSchema(db, log);
    } finally {
      await db.stop();
    }
  },

  async seed(config, log) {
    if (config.nodeEnv === 'production') {
      process.stderr.write('Refusing to load demo data with NODE_ENV=production.\n');
      process.exitCode = 2;
      return;
    }
    const { runMigrations } = await import('./db/migrations.ts');
    const { formatCredentials, seedDemoData } = await import('./db/seed.ts');
    const db = await openDatabase(config, log);
    try {
      await runMigrations(db, log, { current: true });
      const { createStorage } = await import('./storage/index.ts');
      const storage = await createStorage(config.files, { publicUrl: config.publicUrl, jwtSecret: db.jwtSecret });
      const { created, credentials } = await seedDemoData(db, log, storage).finally(() => storage.close());
      process.stdout.write(`\n${created ? 'Demo data loaded.' : 'Demo data was already there.'}\n${formatCredentials(credentials)}`);
    } finally {
      await db.stop();
    }
  },

  async 'data-quality'(config, log) {
    const { runMigrations } = await import('./db/migrations.ts');
    const { formatDataQuality, measureDataQuality } = await import('./db/data-quality.ts');
    const db = await openDatabase(config, log);
    try {
      await runMigrations(db, log, { current: config.nodeEnv !== 'production' });
      const { createStorage } = await import('./storage/index.ts');
      const storage = await createStorage(config.files, { publicUrl: config.publicUrl, jwtSecret: db.jwtSecret });
      process.stdout.write(formatDataQuality(await measureDataQuality(db, log, storage).finally(() => storage.close())));
    } finally {
      await db.stop();
    }
  },

  async doctor(config, log, args) {
    // doctor [--json] [--only schema,migrations,...]: exit 1 when a check fails (src/db/doctor.ts).
    const { CHECK_GROUPS, formatReport, runDoctor } = await import('./db/doctor.ts');
    const { pendingMigrations } = await import('./db/migrations.ts');
    const groups: readonly string[] = CHECK_GROUPS;
    let only: Array<(typeof CHECK_GROUPS)[number]> | undefined;
    const unknown: string[] = [];
    for (let i = 0; i < args.length; i++) {
      if (args[i] === '--json') continue;
      if (args[i] === '--only') {
        only = (args[++i] ?? '').split(',').filter(Boolean) as typeof only;
        unknown.push(...only!.filter((g) => !groups.includes(g)));
      } else unknown.push(args[i]!);
    }
    if (unknown.length > 0 || only?.length === 0) {
      process.stderr.write(`Usage: npm run doctor -- [--json] [--only ${CHECK_GROUPS.join(',')}]\n${unknown.length ? `Unknown: ${unknown.join(' ')}\n` : ''}`);
      process.exitCode = 2;
      return;
    }
    const db = await openDatabase(config, log);
    try {
      const pending = await pendingMigrations(db, log).catch((error: Error) => {
        log.warn({ err: error.message }, 'doctor: could not read the migration state');
        return undefined;
      });
      const report = await runDoctor({ url: db.superuserUrl ?? db.ownerUrl, visitorRole: db.roles.visitor, pending, only });
      process.stdout.write(args.includes('--json') ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
      process.exitCode = report.exitCode;
    } finally {
      await db.stop();
    }
  },

  async 'backup:setup'(config, _log, args) {
    process.exitCode = await (await import('./backup/cli.ts')).backupSetup(config, args, process.stdout);
  },

  async 'backup:drill'(_config, log, args) {
    process.exitCode = await (await import('./backup/cli.ts')).backupDrill(args, log, process.stdout);
  },

  async jobs(config, log, args) {
    const { runJobsCommand } = await import('./worker/admin.ts');
    const db = await openDatabase(config, log);
    try {
      process.exitCode = await runJobsCommand(db.workerUrl, args, process.stdout);
    } finally {
      await db.stop();
    }
  },

  async 'import-organization'(config, log, args) {
    const [zip] = args;
    if (!zip || args.length !== 1) {
      process.stderr.write('Usage: node src/cli.ts import-organization <export.zip>\n');
      process.exitCode = 2;
      return;
    }
    const { ImportRefused, importOrganization } = await import('./export/import.ts');
    const db = await openDatabase(config, log);
    try {
      const result = await importOrganization(db.ownerUrl, path.resolve(zip));
      process.stdout.write(
        `Organization ${result.organizationId} imported.\n` +
          Object.entries(result.rows).map(([table, rows]) => `  ${table.padEnd(28)} ${rows}\n`).join('') +
          Object.entries(result.skipped).map(([table, why]) => `  ${table.padEnd(28)} not imported: ${why}\n`).join(''),
      );
    } catch (error) {
      if (!(error instanceof ImportRefused)) throw error;
      process.stderr.write(`Import refused: ${error.message}\nNothing was imported.\n`);
      process.exitCode = 1;
    } finally {
      await db.stop();
    }
  },

  async 'export-schema'(config, log) {
    const { writeSchema } = await import('./http/schema-export.ts');
    const files = await writeSchema(config, log);
    log.info({ files }, 'GraphQL schema and security surface written');
  },
};

async function main(): Promise<void> {
  const [name = 'start', ...args] = process.argv.slice(2);
  // A .env file in the project root fills in variables the environment does not set.
  const envFile = path.join(ROOT, '.env');
  if (fs.existsSync(envFile)) process.loadEnvFile(envFile);
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  // Grafast reads this at import time; development mode adds checks and readable errors.
  process.env.GRAPHILE_ENV ??= config.nodeEnv === 'production' ? 'production' : 'development';
  const log = createLogger(config.logLevel);
  // An error nothing handled ends the process with a fatal log line and code 70 (src/process-guard.ts).
  installProcessGuard(log);
  const command = commands[name];
  if (!command) {
    process.stderr.write(`Unknown command "${name}". Commands: ${Object.keys(commands).join(', ')}\n`);
    process.exit(2);
  }
  try {
    await command(config, log, args);
  } catch (error) {
    if ((error as Error).name === 'StartupAborted') {
      // A signal during start-up: what had started is stopped.
      log.info('stopped during start-up');
      process.exit(0);
    }
    log.fatal({ err: error }, (error as Error).message);
    // What had started is stopped; exit now (an IPC channel to a supervisor would keep a child alive).
    process.exit(1);
  }
}

await main();
