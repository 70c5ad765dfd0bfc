// Structured logging (pino): JSON lines, one per event, for machines and log shippers; on a
// terminal outside production, the same events as readable lines (pino-pretty).
//
// JSON lines go to stdout in batches: written once 4 KB have gathered, or 25 ms after a line at
// the latest, and when the process exits. The worker logs two lines per job, and a write system
// call per line was about 13% of its CPU profile (docs/DATA_FLOWS.md, "Observability"). Writes block: when
// whatever reads stdout falls behind, the process waits for it (memory stays bounded). Node leaves
// a pipe or socket on stdout non-blocking, and pino's writer then sleeps 100 ms at every "try
// again", so stdout is made blocking first.
import pino from 'pino';
import pretty from 'pino-pretty';

export type Logger = pino.Logger;

/** One writer to stdout per process, shared by every logger (lines never interleave). */
let stdout: pino.DestinationStream & { flushSync(): void } | undefined;
function stdoutDestination() {
  if (!stdout) {
    (process.stdout as unknown as { _handle?: { setBlocking?: (blocking: boolean) => unknown } })._handle?.setBlocking?.(true);
    const destination = pino.destination({ dest: 1, sync: true, minLength: 4096, periodicFlush: 25 });
    process.on('exit', () => destination.flushSync());
    stdout = destination;
  }
  return stdout;
}

// No secret in a log line. Secrets never belong in what is logged (jobs carry ids, errors name no
// token), and pino's redaction list below is the net under that: any value under one of
// SECRET_KEYS is written as "[REDACTED]", at the top of a line's object and inside the shapes the
// code logs (LOGGED_SHAPES: serialized errors, request headers, job payloads and their data,
// GraphQL variables and inputs). pino's `*` matches exactly one level, and a path that starts with
// `*` costs every line ~1.5 µs (the worker writes two lines per job, tens of thousands a second),
// so the list names each shape instead; paths under a top-level key cost nothing on a line
// without that key. graphile-worker's own lines pass whole jobs (payload included), pools and
// options as meta: graphileLogFactory keeps only their facts (graphileMeta). Messages are not
// redacted (pino cannot): no code puts a secret into one.

/** Keys whose values are secrets wherever they appear (exact, case-sensitive, as the code and its libraries spell them). */
export const SECRET_KEYS = [
  'authorization', 'Authorization', 'cookie', 'Cookie', 'set-cookie', 'proxy-authorization',
  'password', 'newPassword', 'new_password', 'currentPassword', 'password_hash', 'passwordHash',
  'token', 'accessToken', 'access_token', 'refreshToken', 'refresh_token', 'resetToken', 'invitationToken',
  'secret', 'secrets', 'jwtSecret', 'signingSecret', 'signing_secret', 'webhookSecret', 'webhook_secret',
  'connectionString', 'databaseUrl', 'smtpUrl', 'pass',
  // Object storage: its key, and signed file URLs (each a bearer credential until it expires).
  'secretAccessKey', 'uploadUrl', 'downloadUrl',
];

/** Where secrets could sit in what is logged: '' is the line's own object. */
export const LOGGED_SHAPES = [
  '', 'err.', 'err.cause.', 'error.', 'fatalError.', 'secondError.',
  'headers.', 'req.headers.', 'request.headers.', 'res.headers.',
  'payload.', 'payload.data.', 'data.', 'job.', 'job.payload.', 'job.payload.data.',
  'variables.', 'variables.input.', 'input.', 'body.', 'body.variables.', 'body.variables.input.',
  'options.', 'config.', 'auth.', 'meta.',
];

/** `shape` + `key` as a pino path (bracket notation for keys like set-cookie). */
const pathFor = (shape: string, key: string): string =>
  /^[A-Za-z_$][\w$]*$/.test(key) ? `${shape}${key}` : `${shape.replace(/\.$/, '')}[${JSON.stringify(key)}]`;

/** pino's redaction list: every secret key in every logged shape. */
export const REDACT_PATHS: string[] = LOGGED_SHAPES.flatMap((shape) => SECRET_KEYS.map((key) => pathFor(shape, key)));

/** pino's options for every Atrium logger (level, name, redaction). */
export function loggerOptions(level: string, name = 'atrium'): pino.LoggerOptions {
  return { name, level, redact: { paths: REDACT_PATHS, censor: '[REDACTED]' } };
}

/** A logger; `destination` (tests) receives the JSON lines instead of stdout. */
export function createLogger(level: string, name = 'atrium', destination?: pino.DestinationStream): Logger {
  if (destination) return pino({ ...loggerOptions(level, name), base: { pid: process.pid } }, destination);
  const readable = process.stdout.isTTY && process.env.NODE_ENV !== 'production' && process.env.LOG_FORMAT !== 'json';
  return readable
    ? pino(loggerOptions(level, name), pretty({ colorize: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l', sync: true }))
    : pino({ ...loggerOptions(level, name), base: { pid: process.pid } }, stdoutDestination());
}

interface JobLike {
  id: string;
  task_identifier: string;
  attempts?: number;
  max_attempts?: number;
  payload?: unknown;
}
const isJob = (value: unknown): value is JobLike =>
  typeof value === 'object' && value !== null && 'task_identifier' in value && 'payload' in value;
const jobFacts = (job: JobLike) => ({ id: job.id, task: job.task_identifier, attempts: job.attempts, maxAttempts: job.max_attempts });
// graphile-worker meta that is never logged: event payloads (with the whole context), pools,
// options (connection strings), task parameters, replacement payloads, whole workers.
const UNLOGGED_META = new Set(['payload', 'ctx', 'worker', 'workerPool', 'options', 'parameters', 'replacementPayload', 'client', 'pool', 'pgPool']);

/**
 * graphile-worker's log meta, made safe: a job (it carries its payload) becomes its facts (id,
 * task, attempts), a list of jobs or of failure specs their ids; errors go under `err` (pino's
 * serializer, then the redaction list); event payloads, pools and options are left out.
 */
export function graphileMeta(meta: Record<string, unknown> | undefined): Record<string, unknown> {
  const safe: Record<string, unknown> = {};
  if (!meta) return safe;
  for (const [key, value] of Object.entries(meta)) {
    if (UNLOGGED_META.has(key)) continue;
    if (isJob(value)) safe[key] = jobFacts(value);
    else if (Array.isArray(value) && value.some((v) => isJob(v) || isJob((v as { job?: unknown } | null)?.job))) {
      safe[key === 'specs' ? 'jobs' : key] = value.map((v) => (isJob(v) ? v.id : (v as { job: JobLike }).job?.id));
    } else if (value instanceof Error) {
      // pino serializes an error under `err`; under any other key it would print `{}`.
      const name = key === 'error' && !('err' in meta) ? 'err' : key;
      safe[name] = name === 'err' ? value : pino.stdSerializers.err(value);
    } else if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.getPrototypeOf(value) === Object.prototype) safe[key] = value;
    // Anything else (a class instance: a client, a pool, a worker) is left out.
  }
  return safe;
}

/** A log factory for the @graphile/logger based libraries (graphile-worker, graphile-migrate). */
export function graphileLogFactory(logger: Logger) {
  return (scope: Record<string, unknown>) => {
    // Made on first use: graphile-worker makes a scope for every job, and most jobs log nothing.
    let child: Logger | undefined;
    return (level: string, message: string, meta?: Record<string, unknown>) => {
      const method = level === 'error' ? 'error' : level === 'warning' ? 'warn' : level === 'info' ? 'info' : 'debug';
      if (!logger.isLevelEnabled(method)) return; // (a job's debug line at level info costs nothing)
      child ??= logger.child(graphileMeta(scope));
      child[method](graphileMeta(meta), message);
    };
  };
}
