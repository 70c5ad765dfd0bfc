// Wires Atrium together and owns its shutdown: database (embedded or yours) → migrations →
// GraphQL API → job worker. Stopping reverses the order: stop taking requests and jobs, let
// running ones finish, close pools, and stop the embedded PostgreSQL last.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.ts';
import { openDatabase, type Database } from './db/bootstrap.ts';
import { pendingMigrations, runMigrations } from './db/migrations.ts';
import { isEmptyDatabase, seedDemoData, type DemoCredentials } from './db/seed.ts';
import { configureEmail } from './email/service.ts';
import type { Logger } from './log.ts';
import { startWorker, type WorkerHandle } from './worker/index.ts';
import { startWorkerProcess, type WorkerProcess } from './worker/process.ts';
import { DEFAULT_QUEUE_VACUUM } from './worker/queue-vacuum.ts';

export interface Atrium {
  db: Database;
  /** Base URL of the HTTP server (when the API runs). */
  url: string | undefined;
  worker: WorkerHandle | undefined;
  /** The job worker's own process, when this one supervises it (`npm start`). */
  workerProcess: WorkerProcess | undefined;
  /** Sign-ins of the demo data loaded at this start (an empty embedded database), if any. */
  demo: DemoCredentials[] | undefined;
  stop(): Promise<void>;
}

export interface StartOptions {
  api: boolean;
  /** Run the job worker in this process. */
  worker: boolean;
  /** Run the job worker in a process of its own, supervised by this one (src/worker/process.ts). */
  workerProcess?: boolean;
  /** Apply migrations (and load the demo data into an empty embedded database); default true. */
  migrate?: boolean;
  /** Install SIGINT/SIGTERM handlers that stop everything (the CLI does; tests do not). */
  handleSignals?: boolean;
  /** Passed to openDatabase (tests use a fresh database name). */
  databaseName?: string;
}

const SHUTDOWN_TIMEOUT_MS = 30_000;

function cached<T>(ms: number, fn: () => Promise<T>): () => Promise<T> {
  let value: { at: number; promise: Promise<T> } | undefined;
  return () => {
    if (!value || Date.now() - value.at > ms) {
      value = { at: Date.now(), promise: fn() };
      value.promise.catch(() => (value = undefined));
    }
    return value.promise;
  };
}

export async function startAtrium(config: Config, log: Logger, options: StartOptions): Promise<Atrium> {
  const db = await openDatabase(config, log, { databaseName: options.databaseName });
  const closers: Array<{ name: string; close: () => Promise<void> }> = [{ name: 'database', close: () => db.stop() }];
  const stopAll = async () => {
    for (const { name, close } of closers.reverse().splice(0)) {
      log.debug({ part: name }, 'stopping');
      await close().catch((error: Error) => log.error({ err: error, part: name }, 'error during shutdown'));
    }
  };
  try {
    const migrate = options.migrate !== false;
    if (migrate) await runMigrations(db, log, { current: config.nodeEnv !== 'production' });
    let demo: DemoCredentials[] | undefined;
    if (migrate && config.seedDemoData && db.embedded && config.nodeEnv !== 'production' && (await isEmptyDatabase(db))) {
      log.info('empty embedded database: loading the demo data (SEED_DEMO_DATA=false to skip)');
      demo = (await seedDemoData(db, log)).credentials;
    }

    let url: string | undefined;
    let worker: WorkerHandle | undefined;
    let workerProcess: WorkerProcess | undefined;
    if (options.api) {
      // Loaded only where the API runs: a worker process does without PostGraphile and Express.
      const [{ createTokenService }, { createApp }, { ErrorCatalog }, { createApiPool, createPostGraphile, GRAPHQL_PATH, makePreset }, { createRateLimits }] = await Promise.all([
        import('./auth/tokens.ts'),
        import('./http/app.ts'),
        import('./http/errors.ts'),
        import('./http/postgraphile.ts'),
        import('./http/rate-limits.ts'),
      ]);
      const errors = await ErrorCatalog.load(db.ownerUrl);
      const tokens = createTokenService(db.jwtSecret, config.auth.accessTokenTtlSeconds);
      const pool = createApiPool(db, log);
      closers.push({ name: 'API pool', close: () => pool.end() });
      const pgl = createPostGraphile(makePreset(config, pool, tokens, errors, log));
      closers.push({ name: 'graphql', close: async () => void (await pgl.release()) });
      const rateLimits = config.rateLimits.enabled ? createRateLimits(config.rateLimits, log) : undefined;
      if (rateLimits) closers.push({ name: 'rate limits', close: () => rateLimits.close() });
      const server = http.createServer();
      const app = await createApp({
        config,
        pgl,
        tokens,
        server,
        log,
        rateLimits,
        readiness: {
          rateLimits: rateLimits ? () => rateLimits.store() : undefined,
          database: async () => {
            await pool.query('select 1');
          },
          pendingMigrations: cached(5000, () => pendingMigrations(db, log)),
          worker: options.worker || options.workerProcess ? () => workerHealth(worker ?? workerProcess, config.worker.staleAfterMs) : undefined,
        },
      });
      server.on('request', app);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => resolve());
      });
      closers.push({
        name: 'http server',
        close: () =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeIdleConnections();
          }),
      });
      const { port } = server.address() as AddressInfo;
      const host = config.host.includes(':') ? `[${config.host}]` : config.host;
      url = config.port === 0 ? `http://${host}:${port}` : config.publicUrl;
      log.info({ graphql: `${url}${GRAPHQL_PATH}` }, 'API listening');
    }

    if (options.worker) {
      const email = configureEmail(config.email, log);
      log.info({ transport: email.transport.kind, target: email.transport.target }, email.transport.kind === 'smtp' ? 'emails are sent by SMTP' : 'emails are written to files (set SMTP_URL to send them)');
      const handle = await startWorker({
        connectionString: db.workerUrl,
        concurrency: config.worker.concurrency,
        log,
        webhooks: config.webhooks,
        heartbeatIntervalMs: config.worker.heartbeatIntervalMs,
        staleAfterMs: config.worker.staleAfterMs,
        queueVacuum: { ...DEFAULT_QUEUE_VACUUM, afterJobs: config.worker.queueVacuumAfterJobs },
      });
      worker = handle;
      closers.push({ name: 'worker', close: () => handle.stop() });
      log.info({ concurrency: config.worker.concurrency }, 'job worker running');
    }

    if (options.workerProcess) {
      const password = (url: string) => decodeURIComponent(new URL(url).password);
      const child = startWorkerProcess({
        log,
        env: {
          ...process.env,
          DATABASE_URL: db.ownerUrl,
          DATABASE_AUTHENTICATOR_PASSWORD: password(db.authenticatorUrl),
          DATABASE_WORKER_PASSWORD: password(db.workerUrl),
          JWT_SECRET: db.jwtSecret,
        },
      });
      workerProcess = child;
      closers.push({ name: 'worker process', close: () => child.stop() });
    }

    let stopping: Promise<void> | undefined;
    const atrium: Atrium = {
      db,
      url,
      worker,
      workerProcess,
      demo,
      stop: () => (stopping ??= stopAll()),
    };
    if (options.handleSignals) installSignalHandlers(atrium, log);
    return atrium;
  } catch (error) {
    await stopAll();
    throw error;
  }
}

function installSignalHandlers(atrium: Atrium, log: Logger): void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    signalled = true;
    log.info({ signal }, 'shutting down: finishing requests and jobs in progress');
    const timer = setTimeout(() => {
      log.error(`shutdown took longer than ${SHUTDOWN_TIMEOUT_MS / 1000} s; exiting`);
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    atrium.stop().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (error: Error) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** The worker's readiness: running, with a heartbeat recorded within the stale window. */
function workerHealth(worker: Pick<WorkerHandle, 'health'> | Pick<WorkerProcess, 'health'> | undefined, staleAfterMs: number): string {
  if (!worker) return 'stopped';
  const { state, lastHeartbeatAt } = worker.health();
  if (state !== 'running') return state;
  if (lastHeartbeatAt === null) return 'running'; // the first heartbeat is on its way
  const silentMs = Date.now() - lastHeartbeatAt.getTime();
  return silentMs <= staleAfterMs ? 'running' : `no heartbeat for ${Math.round(silentMs / 1000)} s (database unreachable?)`;
}
