// Database bootstrap: find (or start) the PostgreSQL server, make sure Atrium's roles and
// database exist, and work out how each part of the app connects:
//   owner         migrations and set-up      (DATABASE_URL, or derived from it)
//   authenticator the API's pool             (switches to the visitor role per request)
//   worker        the job worker's pool
//
// DATABASE_URL may be
//   * unset: an embedded PostgreSQL is started (data in EMBEDDED_PG_DIR, secrets generated);
//   * a superuser: roles and database are created or updated here (sql/setup/*.sql);
//   * the owner role: a DBA has run the set-up beforehand (npm run db:setup -- --print).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { ConfigError, type Config, type RoleNames } from '../config.ts';
import type { Logger } from '../log.ts';
import { SQL_DIR } from '../paths.ts';
import { loadDevSecrets } from './dev-secrets.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.ts';

export interface Database {
  databaseName: string;
  roles: RoleNames;
  ownerUrl: string;
  authenticatorUrl: string;
  workerUrl: string;
  /** Superuser connection when we have one (embedded, or DATABASE_URL is a superuser). */
  superuserUrl: string | undefined;
  jwtSecret: string;
  serverVersion: string;
  embedded: EmbeddedPostgres | undefined;
  /** Stops the embedded server, if we started one. */
  stop(): Promise<void>;
}

export interface OpenOptions {
  /** Use this database name instead of the one in DATABASE_URL (tests: a fresh one per run). */
  databaseName?: string;
  /** Embedded only: trade durability for speed (tests). */
  fast?: boolean;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

export function withCredentials(url: string, user: string, password: string | undefined, database?: string): string {
  const u = new URL(url);
  u.username = encodeURIComponent(user);
  u.password = password === undefined ? '' : encodeURIComponent(password);
  if (database !== undefined) u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

function databaseOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}

/** Fills graphile-migrate style placeholders (:DATABASE_OWNER, ...) in set-up SQL. */
export function fillPlaceholders(sql: string, roles: RoleNames, databaseName: string): string {
  const values: Record<string, string> = {
    ':DATABASE_NAME': databaseName,
    ':DATABASE_OWNER': roles.owner,
    ':DATABASE_AUTHENTICATOR': roles.authenticator,
    ':DATABASE_VISITOR': roles.visitor,
    ':DATABASE_WORKER': roles.worker,
    ':DATABASE_PRODUCER': roles.producer,
  };
  return sql.replace(/:DATABASE_[A-Z]+\b/g, (key) => values[key] ?? key);
}

export function setupSql(roles: RoleNames, databaseName: string): { roles: string; database: string } {
  const read = (file: string) => fillPlaceholders(fs.readFileSync(path.join(SQL_DIR, 'setup', file), 'utf8'), roles, databaseName);
  return { roles: read('roles.sql'), database: read('database.sql') };
}

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined); // a lost connection fails the query in progress instead
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates or updates roles and the database; `superuserUrl` must name a superuser. */
export async function runSetup(superuserUrl: string, roles: RoleNames, databaseName: string, passwords: { owner?: string; authenticator?: string; worker?: string }, log: Logger): Promise<void> {
  const sql = setupSql(roles, databaseName);
  await withClient(withDatabase(superuserUrl, 'postgres'), async (client) => {
    // Processes starting together (API and worker) take turns: concurrent ALTER ROLE fails.
    await client.query(`select pg_advisory_lock(hashtext('atrium:setup'))`);
    await client.query(
      `select set_config('atrium.owner_password', $1, false), set_config('atrium.authenticator_password', $2, false), set_config('atrium.worker_password', $3, false)`,
      [passwords.owner ?? '', passwords.authenticator ?? '', passwords.worker ?? ''],
    );
    await client.query(sql.roles);
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [databaseName]);
    if (rowCount === 0) {
      await client.query(`create database ${client.escapeIdentifier(databaseName)} owner ${client.escapeIdentifier(roles.owner)}`);
      log.info({ database: databaseName }, 'created database');
    }
    await withClient(withDatabase(superuserUrl, databaseName), (db) => db.query(sql.database));
  });
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

export async function openDatabase(config: Config, log: Logger, options: OpenOptions = {}): Promise<Database> {
  const { roles } = config.database;
  let adminUrl: string;
  let embedded: EmbeddedPostgres | undefined;
  let passwords = {
    owner: config.database.ownerPassword,
    authenticator: config.database.authenticatorPassword,
    worker: config.database.workerPassword,
  };
  let jwtSecret = config.auth.jwtSecret;

  if (config.database.url === undefined) {
    const dataDir = config.database.embeddedDir;
    const secrets = loadDevSecrets(path.join(path.dirname(dataDir), `${path.basename(dataDir)}.secrets.json`));
    passwords = {
      owner: passwords.owner ?? secrets.ownerPassword,
      authenticator: passwords.authenticator ?? secrets.authenticatorPassword,
      worker: passwords.worker ?? secrets.workerPassword,
    };
    jwtSecret ??= secrets.jwtSecret;
    log.info({ dataDir }, 'starting the embedded PostgreSQL');
    embedded = await startEmbeddedPostgres({
      dir: dataDir,
      // A checkout in a private folder (as root: /root, or a mode 700 temp dir) is out of the
      // postgres OS user's reach; keep the data in a persistent shared place named after it.
      fallbackDir: config.database.embeddedDirChosen
        ? undefined
        : path.join('/var/tmp', `atrium-${createHash('sha256').update(dataDir).digest('hex').slice(0, 12)}`, 'postgres'),
      port: config.database.embeddedPort,
      superuserPassword: secrets.superuserPassword,
      fast: options.fast,
      log: (message) => log.info(message),
    });
    adminUrl = embedded.superuserUrl(options.databaseName ?? 'atrium');
    log.info({ version: embedded.version, port: embedded.port, dataDir: embedded.dir }, 'embedded PostgreSQL running');
  } else {
    adminUrl = options.databaseName ? withDatabase(config.database.url, options.databaseName) : config.database.url;
    const missing = [
      passwords.authenticator ? undefined : 'DATABASE_AUTHENTICATOR_PASSWORD (the API logs in as DATABASE_AUTHENTICATOR with it)',
      passwords.worker ? undefined : 'DATABASE_WORKER_PASSWORD (the job worker logs in as DATABASE_WORKER with it)',
    ].filter((m) => m !== undefined);
    if (missing.length > 0) {
      throw new ConfigError(missing.map((m) => `${m} is required when DATABASE_URL is set`));
    }
    if (jwtSecret === undefined) {
      // Development against your own server: keep a generated secret beside the embedded data.
      jwtSecret = loadDevSecrets(path.join(path.dirname(config.database.embeddedDir), 'dev.secrets.json')).jwtSecret;
    }
  }

  const stop = async () => {
    await embedded?.stop();
  };
  try {
    const databaseName = databaseOf(adminUrl);
    if (!IDENTIFIER.test(databaseName)) {
      throw new Error(`The database name "${databaseName}" in DATABASE_URL must be a lower-case SQL identifier (a-z, 0-9, _)`);
    }
    const who = await withClient(withDatabase(adminUrl, 'postgres'), async (client) => {
      const { rows } = await client.query<{ user: string; super: boolean; version: string }>(
        `select current_user as user, rolsuper as super, current_setting('server_version') as version from pg_roles where rolname = current_user`,
      );
      return rows[0];
    }).catch((error: Error) => {
      throw new Error(`Cannot connect to PostgreSQL with ${embedded ? 'the embedded server' : 'DATABASE_URL'}: ${error.message}`, { cause: error });
    });
    if (Number.parseInt(who.version, 10) < 15) {
      throw new Error(`PostgreSQL ${who.version} is too old: Atrium needs PostgreSQL 15 or newer`);
    }

    let ownerUrl: string;
    let superuserUrl: string | undefined;
    if (who.super) {
      if (!passwords.owner) {
        throw new Error('DATABASE_URL connects as a superuser, so Atrium creates its roles itself and needs DATABASE_OWNER_PASSWORD (the owner role logs in with it to run migrations)');
      }
      await runSetup(adminUrl, roles, databaseName, passwords, log);
      ownerUrl = withCredentials(adminUrl, roles.owner, passwords.owner);
      superuserUrl = adminUrl;
    } else if (who.user === roles.owner) {
      ownerUrl = adminUrl;
      await assertRolesExist(adminUrl, roles);
    } else {
      throw new Error(`DATABASE_URL connects as "${who.user}", which is neither a superuser nor DATABASE_OWNER ("${roles.owner}"). Use a superuser (roles are then created for you) or the owner role after \`npm run db:setup\`.`);
    }

    return {
      databaseName,
      roles,
      ownerUrl,
      authenticatorUrl: withCredentials(adminUrl, roles.authenticator, passwords.authenticator),
      workerUrl: withCredentials(adminUrl, roles.worker, passwords.worker),
      superuserUrl,
      jwtSecret,
      serverVersion: who.version,
      embedded,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function assertRolesExist(ownerUrl: string, roles: RoleNames): Promise<void> {
  const missing = await withClient(ownerUrl, async (client) => {
    const { rows } = await client.query<{ name: string }>(
      'select name from unnest($1::text[]) as name where not exists (select 1 from pg_roles where rolname = name)',
      [Object.values(roles)],
    );
    return rows.map((r) => r.name);
  });
  if (missing.length > 0) {
    throw new Error(`Role(s) ${missing.join(', ')} do not exist. A superuser must create them first: \`npm run --silent db:setup -- --print | psql "$SUPERUSER_URL"\` (see README, "Your own PostgreSQL")`);
  }
}
