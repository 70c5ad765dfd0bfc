// A fresh PostgreSQL database for one test run: embedded by default (a throw-away cluster in a
// temporary folder), or on the server named by TEST_DATABASE_URL (a superuser connection; the
// run creates its own database and roles there, with random names, and drops them afterwards).
// Roles and schema are created exactly as `npm start` does it (openDatabase + runMigrations).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../../src/config.ts';
import { openDatabase, withDatabase } from '../../src/db/bootstrap.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded.ts';
import { runMigrations } from '../../src/db/migrations.ts';
import { createLogger } from '../../src/log.ts';
import { freePort } from '../../src/free-port.ts';

export interface Provisioned {
  env: Record<string, string>;
  teardown(): Promise<void>;
  /** Stops and starts the embedded server (same data, same port); only with an embedded server. */
  restartServer?(): Promise<void>;
  /** Stops the embedded server (fast or immediate shutdown); startServer() starts it again. */
  stopServer?(mode?: 'fast' | 'immediate'): Promise<void>;
  startServer?(): Promise<void>;
}


/**
 * embedded: always on an embedded server of its own (for tests that stop it); durable: that server
 * keeps fsync and synchronous commits on (by default they are off, for speed).
 */
export async function provisionTestDatabase(options: { embedded?: boolean; durable?: boolean } = {}): Promise<Provisioned> {
  const id = randomBytes(4).toString('hex');
  const secret = () => randomBytes(18).toString('base64url');
  const log = createLogger(process.env.LOG_LEVEL ?? 'warn', 'test-setup');
  let embedded: EmbeddedPostgres | undefined;
  let tmp: string | undefined;
  let serverUrl = options.embedded ? undefined : process.env.TEST_DATABASE_URL;
  const external = serverUrl !== undefined && serverUrl !== '';
  let embeddedOptions: Parameters<typeof startEmbeddedPostgres>[0] | undefined;
  if (!external) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-test-'));
    fs.chmodSync(tmp, 0o755); // the embedded server runs as the OS user "postgres"
    embeddedOptions = { dir: path.join(tmp, 'pg'), port: await freePort(), superuserPassword: secret(), fast: !options.durable };
    embedded = await startEmbeddedPostgres(embeddedOptions);
    serverUrl = embedded.superuserUrl('postgres');
  }
  const prefix = external ? `atrium_t${id}` : 'atrium';
  // Emails written by the run's workers (no SMTP_URL: the folder transport) go here, not to .data/.
  const emailDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-test-email-'));
  // Files the run's APIs and workers store (the local driver) go here, not to .data/.
  const filesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-test-files-'));
  const databaseName = `atrium_test_${id}`;
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    GRAPHILE_ENV: 'test',
    DATABASE_URL: withDatabase(serverUrl!, databaseName),
    DATABASE_OWNER: `${prefix}_owner`,
    DATABASE_AUTHENTICATOR: `${prefix}_authenticator`,
    DATABASE_VISITOR: `${prefix}_visitor`,
    DATABASE_WORKER: `${prefix}_worker`,
    DATABASE_PRODUCER: `${prefix}_producer`,
    DATABASE_OWNER_PASSWORD: secret(),
    DATABASE_AUTHENTICATOR_PASSWORD: secret(),
    DATABASE_WORKER_PASSWORD: secret(),
    JWT_SECRET: secret() + secret(),
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    EMAIL_DIR: emailDir,
    FILES_DIR: filesDir,
    // The lines of the apps and workers tests start (tests/support/log.ts); kept after the run.
    TEST_LOG_FILE: path.join(os.tmpdir(), `atrium-test-${id}.log`),
    // The rate limits stay on (their code runs on every request of the suite) with budgets no
    // test reaches; tests/rate-limits.test.ts sets its own. No Redis unless a test names one.
    ...Object.fromEntries(
      ['ANONYMOUS', 'USER', 'ORGANIZATION', 'LOGIN', 'REGISTER', 'CONFIRM_REGISTRATION', 'REQUEST_PASSWORD_RESET', 'RESET_PASSWORD', 'REFRESH'].map((name) => [`RATE_LIMIT_${name}`, '1000000/1m']),
    ),
    REDIS_URL: '',
    ATRIUM_TEST_SERVER_VERSION: '',
  };
  const teardown = async () => {
    if (external) {
      const client = new pg.Client({ connectionString: withDatabase(serverUrl!, 'postgres') });
      await client.connect();
      try {
        await client.query(`drop database if exists ${databaseName} with (force)`);
        await client.query(`drop database if exists ${databaseName}_shadow with (force)`);
        for (const role of ['producer', 'worker', 'authenticator', 'visitor', 'owner']) {
          await client.query(`drop role if exists ${prefix}_${role}`);
        }
      } finally {
        await client.end();
      }
    }
    await embedded?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    fs.rmSync(emailDir, { recursive: true, force: true });
    fs.rmSync(filesDir, { recursive: true, force: true });
  };
  try {
    const config = loadConfig({ ...env });
    const db = await openDatabase(config, log);
    env.ATRIUM_TEST_SERVER_VERSION = db.serverVersion;
    await runMigrations(db, log, { current: true });
    const restartServer = embeddedOptions
      ? async () => {
          await embedded!.stop();
          embedded = await startEmbeddedPostgres(embeddedOptions!);
        }
      : undefined;
    const stopServer = embeddedOptions ? (mode?: 'fast' | 'immediate') => embedded!.stop(mode) : undefined;
    const startServer = embeddedOptions
      ? async () => {
          embedded = await startEmbeddedPostgres(embeddedOptions!);
        }
      : undefined;
    return { env, teardown, restartServer, stopServer, startServer };
  } catch (error) {
    await teardown().catch(() => undefined);
    throw error;
  }
}
