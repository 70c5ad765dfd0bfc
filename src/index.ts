// Wires Atrium together and owns its shutdown: database (embedded or yours) → migrations →
// GraphQL API → job worker. Stopping reverses the order: stop taking requests and jobs, let
// running ones finish, close pools, and stop the embedded PostgreSQL last.
//
// startAtrium runs parts in this process (tests, `worker`, `api`); startSupervised is `npm start`:
// the database, migrations and demo data here, the API and the worker each in a supervised child
// process (src/supervisor.ts). SIGINT/SIGTERM may come at any moment (handleSignals): during
// start-up they abort it, stopping what has started (the embedded PostgreSQL included), and the
// process exits 0; after it, they stop everything in order and the process exits 0.
import { tuneKeepAlive } from './http/keep-alive.ts';
import { createStorage } from './storage/index.ts';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.ts';
import { openDatabase, type Database } from './db/bootstrap.ts';
import { pendingMigrations, runMigrations } from './db/migrations.ts';
import { isEmptyDatabase, seedDemoData, type DemoCredentials } from './db/seed.ts';
import { configureEmail } from './email/service.ts';
import type { Logger } from './log.ts';
import { startWorker, type WorkerHandle } from './worker/index.ts';
import { superviseChild, scriptNodeFlags, type SupervisedChild } from './supervisor.ts';
import { startWorkerProcess, type WorkerHealth, type WorkerProcess } from './worker/process.ts';
import { DEFAULT_QUEUE_VACUUM } from './worker/queue-vacuum.ts';

export interface Atrium {
  db: Database;
  /** Base URL of the HTTP server (when the API runs). */
  url: string | undefined;
  /** The port the HTTP server listens on (when the API runs). */
  port: number | undefined;
  worker: WorkerHandle | undefined;
  /** Sign-ins of the demo data loaded at this start (an empty embedded database), if any. */
  demo: DemoCredentials[] | undefined;
  stop(): Promise<void>;
}

export interface StartOptions {
  api: boolean;
  /** Run the job worker in this process. */
  worker: boolean;
  /** The health of a job worker elsewhere, for /readyz (the API process of `npm start`). */
  workerHealth?: () => WorkerHealth;
  /** Apply migrations (and load the demo data into an empty embedded database); default true. */
  migrate?: boolean;
  /** Aborts start-up (handleSignals): what has started is stopped, and the start rejects with StartupAborted. */
  signal?: AbortSignal;
  /** Passed to openDatabase (tests use a fresh database name). */
  databaseName?: string;
}

/** Start-up was aborted (a signal came): what had started was stopped. */
export class StartupAborted extends Error {
  constructor(reason: unknown) {
    super(`start-up aborted (${String(reason)})`);
    this.name = 'StartupAborted';
  }
}

const checkAborted = (signal: AbortSignal | undefined) => {
  if (signal?.aborted) throw new StartupAborted(signal.reason);
};

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

type Closers = Array<{ name: string; close: () => Promise<void> }>;

/** Stops what `closers` holds, last started first. */
function stopper(closers: Closers, log: Logger): () => Promise<void> {
  return async () => {
    for (const { name, close } of closers.reverse().splice(0)) {
      log.debug({ part: name }, 'stopping');
      await close().catch((error: Error) => log.error({ err: error, part: name }, 'error during shutdown'));
    }
  };
}

/** The database (embedded or yours), migrated, with the demo data in an empty embedded one; aborted between steps. */
async function prepareDatabase(config: Config, log: Logger, options: Pick<StartOptions, 'migrate' | 'signal' | 'databaseName'>, closers: Closers) {
  checkAborted(options.signal);
  const db = await openDatabase(config, log, { databaseName: options.databaseName });
  closers.push({ name: 'database', close: () => db.stop() });
  checkAborted(options.signal);
  const migrate = options.migrate !== false;
  if (migrate) await runMigrations(db, log, { current: config.nodeEnv !== 'production' });
  checkAborted(options.signal);
  let demo: DemoCredentials[] | undefined;
  if (migrate && config.seedDemoData && db.embedded && config.nodeEnv !== 'production' && (await isEmptyDatabase(db))) {
    log.info('empty embedded database: loading the demo data (SEED_DEMO_DATA=false to skip)');
    // Its files go to the configured store, as uploads would (the API's URL is not known yet:
    // this store signs nothing).
    const storage = await createStorage(config.files, { publicUrl: config.publicUrl, jwtSecret: db.jwtSecret });
    try {
      demo = (await seedDemoData(db, log, storage)).credentials;
    } finally {
      await storage.close();
    }
  }
  checkAborted(options.signal);
  return { db, demo };
}

export async function startAtrium(config: Config, log: Logger, options: StartOptions): Promise<Atrium> {
  const closers: Closers = [];
  const stopAll = stopper(closers, log);
  try {
    const { db, demo } = await prepareDatabase(config, log, options, closers);

    let url: string | undefined;
    let port: number | undefined;
    let worker: WorkerHandle | undefined;
    // Files (src/storage/): optional around PostgreSQL. A store that does not answer at start is
    // reported, not fatal: everything but files works, and files work once it answers.
    const storage = await createStorage(config.files, { publicUrl: () => url ?? config.publicUrl, jwtSecret: db.jwtSecret });
    closers.push({ name: 'file store', close: () => storage.close() });
    await storage.check().then(
      () => log.info({ driver: storage.driver, ...(storage.driver === 'local' ? { dir: config.files.localDir } : { bucket: config.files.s3.bucket }) }, 'file store ready'),
      (error: Error) => log.warn({ driver: storage.driver, error: error.message }, 'file store not answering: uploads and downloads fail until it does'),
    );
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
      const pgl = await createPostGraphile(makePreset(config, pool, tokens, errors, log, storage), log);
      closers.push({ name: 'graphql', close: async () => void (await pgl.release()) });
      const rateLimits = config.rateLimits.enabled ? createRateLimits(config.rateLimits, log) : undefined;
      if (rateLimits) closers.push({ name: 'rate limits', close: () => rateLimits.close() });
      const server = http.createServer();
      tuneKeepAlive(server);
      const app = await createApp({
        config,
        pgl,
        tokens,
        server,
        log,
        rateLimits,
        storage,
        readiness: {
          rateLimits: rateLimits ? () => rateLimits.store() : undefined,
          database: async () => {
            await pool.query('select 1');
          },
          pendingMigrations: cached(5000, () => pendingMigrations(db, log)),
          worker: options.worker ? () => workerHealth(worker, config.worker.staleAfterMs) : options.workerHealth ? () => workerHealth({ health: options.workerHealth! }, config.worker.staleAfterMs) : undefined,
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
      port = (server.address() as AddressInfo).port;
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
        files: { storage, scanUrl: config.files.scanUrl },
        refreshTokenTtlSeconds: config.auth.refreshTokenTtlSeconds,
      });
      worker = handle;
      closers.push({ name: 'worker', close: () => handle.stop() });
      log.info({ concurrency: config.worker.concurrency }, 'job worker running');
    }

    let stopping: Promise<void> | undefined;
    const atrium: Atrium = {
      db,
      url,
      port,
      worker,
      demo,
      stop: () => (stopping ??= stopAll()),
    };
    checkAborted(options.signal);
    return atrium;
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** `npm start`: what startSupervised runs. */
export interface SupervisedAtrium {
  db: Database;
  /** Base URL of the API (as its process reported it). */
  url: string;
  apiProcess: SupervisedChild;
  /** The job worker's own process (WORKER_INLINE, not WORKER_SAME_PROCESS). */
  workerProcess: WorkerProcess | undefined;
  /** The job worker runs inside the API process (WORKER_SAME_PROCESS). */
  workerInApi: boolean;
  demo: DemoCredentials[] | undefined;
  stop(): Promise<void>;
}

/** What the API process of `npm start` reports once it listens. */
export interface ApiListeningMessage {
  type: 'api-listening';
  url: string;
  port: number;
}

/**
 * `npm start`: the database, its migrations and the demo data in this process; the API in a
 * child process (`src/cli.ts api --supervised`, with the Node flags this process was started
 * with: the `start` script's heap bound), and the job worker in another (`worker --supervised`,
 * the `worker` script's), unless WORKER_SAME_PROCESS puts it in the API's or WORKER_INLINE=false
 * leaves it to `npm run worker`. A child that dies is started again (src/supervisor.ts); with
 * PORT=0 the API keeps the port its first process was given.
 */
export async function startSupervised(config: Config, log: Logger, options: { signal?: AbortSignal } = {}): Promise<SupervisedAtrium> {
  const closers: Closers = [];
  const stopAll = stopper(closers, log);
  try {
    const { db, demo } = await prepareDatabase(config, log, options, closers);
    const password = (url: string) => decodeURIComponent(new URL(url).password);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: db.ownerUrl,
      DATABASE_AUTHENTICATOR_PASSWORD: password(db.authenticatorUrl),
      DATABASE_WORKER_PASSWORD: password(db.workerUrl),
      JWT_SECRET: db.jwtSecret,
    };
    const { inline, sameProcess } = config.worker;

    let workerProcess: WorkerProcess | undefined;
    if (inline && !sameProcess) {
      const child = startWorkerProcess({ log, env });
      workerProcess = child;
      closers.push({ name: 'worker process', close: () => child.stop() });
    }

    // The API process: the heap flags this process got (`npm start`'s), else the `start` script's.
    const ownFlags = process.execArgv.filter((flag) => /^--max-(?:old|semi)-space-size=/.test(flag));
    const apiFlags = ownFlags.some((flag) => flag.startsWith('--max-old-space-size=')) ? ownFlags : scriptNodeFlags('start');
    let port = config.port;
    let listening: (message: ApiListeningMessage) => void = () => undefined;
    let exitedEarly: (why: string) => void = () => undefined;
    const firstListening = new Promise<ApiListeningMessage>((resolve, reject) => {
      listening = resolve;
      exitedEarly = (why) => reject(new Error(`the API process exited during start-up (${why}); its log lines above say why`));
    });
    let everListened = false;
    const api = superviseChild({
      name: 'API',
      nodeFlags: apiFlags,
      args: ['api', '--supervised', ...(inline && sameProcess ? ['--with-worker'] : []), ...(workerProcess ? ['--worker-reports'] : [])],
      env: () => ({ ...env, PORT: String(port) }),
      log,
      onMessage(message) {
        const m = message as ApiListeningMessage | undefined;
        if (m?.type !== 'api-listening') return;
        port = m.port; // a restarted API process listens where the first one did (PORT=0)
        everListened = true;
        listening(m);
      },
      onExit(code, signal) {
        if (!everListened) exitedEarly(`code ${code ?? signal}`);
      },
    });
    closers.push({ name: 'API process', close: () => api.stop() });
    if (workerProcess) {
      // The worker's health, for the API's /readyz.
      const relay = setInterval(() => api.send({ type: 'worker-health', ...healthMessage(workerProcess!.health()) }), 2000);
      relay.unref();
      closers.push({ name: 'worker health relay', close: async () => clearInterval(relay) });
    }
    const aborted = new Promise<never>((_resolve, reject) => {
      if (options.signal?.aborted) reject(new StartupAborted(options.signal.reason));
      options.signal?.addEventListener('abort', () => reject(new StartupAborted(options.signal!.reason)), { once: true });
    });
    // (Whichever loses the race settles later, or never: no one waits for it.)
    firstListening.catch(() => undefined);
    aborted.catch(() => undefined);
    const { url } = await Promise.race([firstListening, aborted]);
    let stopping: Promise<void> | undefined;
    return { db, url, apiProcess: api, workerProcess, workerInApi: inline && sameProcess, demo, stop: () => (stopping ??= stopAll()) };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

const healthMessage = ({ state, lastHeartbeatAt }: WorkerHealth) => ({ state, lastHeartbeatAt: lastHeartbeatAt?.toISOString() ?? null });

/**
 * SIGINT/SIGTERM at any moment. Installed before start-up begins: a signal during start-up aborts
 * it (`signal`; what has started is stopped, and the process exits 0); once started() names how
 * to stop, a signal stops everything in order and the process exits 0 (1 if that fails or takes
 * longer than 30 s). A second signal exits at once (1).
 */
export function handleSignals(log: Logger): { signal: AbortSignal; started(stop: () => Promise<void>): void } {
  const controller = new AbortController();
  let stop: (() => Promise<void>) | undefined;
  let signalled: NodeJS.Signals | undefined;
  const shutdown = (signal: NodeJS.Signals) => {
    log.info({ signal }, 'shutting down: finishing requests and jobs in progress');
    const timer = setTimeout(() => {
      log.error(`shutdown took longer than ${SHUTDOWN_TIMEOUT_MS / 1000} s; exiting`);
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    stop!().then(
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
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    signalled = signal;
    if (stop) return shutdown(signal);
    log.info({ signal }, 'signal during start-up: stopping what has started');
    controller.abort(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    started(fn) {
      stop = fn;
      if (signalled) shutdown(signalled);
    },
  };
}

/** The worker's readiness: running, with a heartbeat recorded within the stale window. */
function workerHealth(worker: { health(): { state: string; lastHeartbeatAt: Date | null } } | undefined, staleAfterMs: number): string {
  if (!worker) return 'stopped';
  const { state, lastHeartbeatAt } = worker.health();
  if (state !== 'running') return state;
  if (lastHeartbeatAt === null) return 'running'; // the first heartbeat is on its way
  const silentMs = Date.now() - lastHeartbeatAt.getTime();
  return silentMs <= staleAfterMs ? 'running' : `no heartbeat for ${Math.round(silentMs / 1000)} s (database unreachable?)`;
}
