// Schema migrations: graphile-migrate for Atrium's own schema (migrations/, settings in .gmrc),
// graphile-worker's migrations for the job queue (schema graphile_worker, owned by the worker).
import fs from 'node:fs';
import path from 'node:path';
import { Logger as MigrateLogger, migrate, status, watch, type Settings } from 'graphile-migrate';
// Pools graphile-migrate keeps alive for a moment after use; an error on one of them (e.g. the
// server restarting) makes it exit the process, so we close them as soon as we are done.
import { clearAllPools } from 'graphile-migrate/dist/pgReal.js';
import { Logger as WorkerLogger, runMigrations as runWorkerMigrations } from 'graphile-worker';
import JSON5 from 'json5';
import pg from 'pg';
import type { RoleNames } from '../config.ts';
import { graphileLogFactory, type Logger } from '../log.ts';
import { GMRC, MIGRATIONS_DIR } from '../paths.ts';

export interface MigrationTarget {
  ownerUrl: string;
  roles: RoleNames;
}

/**
 * How long a migration's statement waits for a lock before it fails (and the migration with it),
 * instead of queueing every reader and writer of the table behind it while a long transaction
 * holds that table. Set on the connection of every migration, those outside a transaction
 * (`--! no-transaction`, one statement each) included; a migration may set its own with
 * `set local lock_timeout`. docs/MIGRATIONS.md.
 */
export const MIGRATION_LOCK_TIMEOUT = '5s';

/** The migrations' session settings, as PostgreSQL connection options. */
export const MIGRATION_PGOPTIONS = `-c lock_timeout=${MIGRATION_LOCK_TIMEOUT}`;

/** The connection string with the migrations' session settings added to its own options. */
export function migrationConnectionString(url: string): string {
  const u = new URL(url);
  const options = u.searchParams.get('options');
  u.searchParams.set('options', `${options ? `${options} ` : ''}${MIGRATION_PGOPTIONS}`);
  return u.toString();
}

/** The .gmrc settings with connection and role names filled in (hooks left out: we run them here). */
export function migrationSettings(target: MigrationTarget, log: Logger, migrationsFolder = MIGRATIONS_DIR): Settings {
  const gmrc = JSON5.parse(fs.readFileSync(GMRC, 'utf8')) as Settings;
  const shadow = new URL(target.ownerUrl);
  shadow.pathname = `${shadow.pathname}_shadow`;
  return {
    ...gmrc,
    connectionString: migrationConnectionString(target.ownerUrl),
    // Only `commit`/`reset --shadow` use it (npm run migrate); `status` insists on having one.
    shadowConnectionString: migrationConnectionString(process.env.SHADOW_DATABASE_URL ?? shadow.toString()),
    migrationsFolder,
    placeholders: {
      ':DATABASE_AUTHENTICATOR': target.roles.authenticator,
      ':DATABASE_VISITOR': target.roles.visitor,
      ':DATABASE_WORKER': target.roles.worker,
      ':DATABASE_PRODUCER': target.roles.producer,
    },
    afterAllMigrations: [],
    afterCurrent: [],
    logger: new MigrateLogger(graphileLogFactory(log.child({ component: 'graphile-migrate' })) as never),
  };
}

/** True when migrations/current.sql holds more than comments and blank lines (an `--!include` line counts: it is SQL). */
export function hasCurrentMigration(): boolean {
  const file = path.join(MIGRATIONS_DIR, 'current.sql');
  if (!fs.existsSync(file)) return false;
  // Anything but blank lines and comments counts, `--!include` directives included.
  return fs.readFileSync(file, 'utf8').split('\n').some((line) => {
    const l = line.trim();
    return l !== '' && (!l.startsWith('--') || l.startsWith('--!'));
  });
}

/**
 * Brings the database up to date: committed migrations, then (outside production) the work in
 * progress in current.sql, then the job queue's schema.
 */
export async function runMigrations(target: MigrationTarget, log: Logger, options: { current: boolean; migrationsFolder?: string }): Promise<void> {
  const settings = migrationSettings(target, log, options.migrationsFolder);
  // graphile-migrate gives up at once ("Failed to get exclusive lock") while another process
  // migrates the same database; processes starting together (API and worker, parallel test
  // files) take turns here instead. The lock is the session's: ending the client releases it.
  const lock = new pg.Client({ connectionString: target.ownerUrl });
  lock.on('error', (error) => log.warn({ err: error }, 'connection error while holding the migration lock'));
  await lock.connect();
  try {
    await lock.query(`select pg_advisory_lock(hashtext('atrium:migrate'))`);
    try {
      await migrate(settings);
      if (options.current && hasCurrentMigration()) {
        log.info('applying migrations/current.sql (work in progress)');
        await watch(settings, true);
      }
    } finally {
      clearAllPools();
    }
    await installWorkerSchema(target, log);
  } finally {
    await lock.end();
  }
}

/** Committed migrations not yet applied (readiness reports them). */
export async function pendingMigrations(target: MigrationTarget, log: Logger): Promise<string[]> {
  try {
    const result = await status(migrationSettings(target, log));
    return result.remainingMigrations ?? [];
  } finally {
    clearAllPools();
  }
}

/**
 * Installs or upgrades graphile-worker's schema. Runs on the owner's connection switched to the
 * worker role (`-c role=`), so the worker owns its queue tables without needing a password here.
 */
export async function installWorkerSchema(target: MigrationTarget, log: Logger): Promise<void> {
  const pgPool = new pg.Pool({ connectionString: target.ownerUrl, options: `-c role=${target.roles.worker}`, max: 1 });
  const onError = (error: Error) => log.warn({ err: error }, 'connection error while installing the job queue schema');
  pgPool.on('error', onError);
  pgPool.on('connect', (client) => client.on('error', onError));
  try {
    await runWorkerMigrations({
      pgPool,
      logger: new WorkerLogger(graphileLogFactory(log.child({ component: 'graphile-worker' })) as never),
    });
  } finally {
    await pgPool.end();
  }
}
