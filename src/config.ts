// Configuration: read once from the environment, validated, frozen.
// Every variable is listed in .env.example; every problem names its variable.
import { isIP } from 'node:net';
import path from 'node:path';
import { DEFAULT_QUEUE_VACUUM } from './worker/queue-vacuum.ts';

export type NodeEnv = 'development' | 'production' | 'test';

export interface RoleNames {
  owner: string;
  authenticator: string;
  visitor: string;
  worker: string;
  /** NOLOGIN group role for other services that queue jobs (app_private.enqueue_job). */
  producer: string;
}

export interface Config {
  nodeEnv: NodeEnv;
  host: string;
  port: number;
  /** Public base URL printed at start (defaults to http://host:port). */
  publicUrl: string;
  database: {
    /** DATABASE_URL as given; undefined means "boot an embedded PostgreSQL". */
    url: string | undefined;
    roles: RoleNames;
    /** Passwords for the roles the app logs in as (undefined: embedded mode generates them). */
    ownerPassword: string | undefined;
    authenticatorPassword: string | undefined;
    workerPassword: string | undefined;
    embeddedDir: string;
    /** EMBEDDED_PG_DIR was set (no fallback location then). */
    embeddedDirChosen: boolean;
    embeddedPort: number;
  };
  auth: {
    /** HS256 secret for access tokens; undefined: a development secret is generated and kept in .data/. */
    jwtSecret: string | undefined;
    accessTokenTtlSeconds: number;
    refreshTokenTtlSeconds: number;
  };
  worker: {
    /** `npm start` runs a job worker (in a child process of its own, unless sameProcess). */
    inline: boolean;
    /** Run that worker inside the API's process instead (one heap for both). */
    sameProcess: boolean;
    concurrency: number;
    /** How often each worker process records that it is alive (src/worker/heartbeat.ts). */
    heartbeatIntervalMs: number;
    /** A worker silent this long is dead: the jobs it held are unlocked and run again. */
    staleAfterMs: number;
    /** A busy worker vacuums the job table after finishing this many jobs (0: leave it to autovacuum). */
    queueVacuumAfterJobs: number;
  };
  webhooks: {
    /** How long one delivery attempt may take (connect + answer). */
    timeoutMs: number;
    /** Deliver to loopback, private and link-local addresses (development; off in production). */
    allowPrivateNetworks: boolean;
  };
  graphiql: boolean;
  /**
   * The most rows one page of a GraphQL connection may hold (`first`/`last` above it are
   * refused); also the page size when a query gives neither (src/http/page-size.ts).
   */
  pageSizeMax: number;
  /** Load the demo data (src/db/seed.ts) when `npm start` finds an empty embedded database. */
  seedDemoData: boolean;
  /** Origins allowed to call the API from a browser ('*' for any). */
  corsOrigins: string[];
  logLevel: string;
  email: EmailConfig;
  /** The GraphQL edge: what one request may ask for, and what the API serves (src/http/graphql-edge.ts). */
  graphql: GraphQLEdgeConfig;
  /** Client addresses and request rate limits (src/http/client-address.ts, src/http/rate-limits.ts). */
  rateLimits: RateLimitConfig;
  /** Object storage for files (src/storage/, docs/FILES.md). */
  files: FilesConfig;
}

/** Object storage for files (FILES_*, S3_*; docs/FILES.md). */
export interface FilesConfig {
  /** FILES_DRIVER: `s3` when S3_BUCKET is set, else `local`. */
  driver: 'local' | 's3';
  /** FILES_DIR: where the local driver keeps the bytes. */
  localDir: string;
  /**
   * FILES_SIGNING_SECRET: the local driver's HMAC key for its URLs; undefined: derived from the
   * JWT secret (HKDF, its own label), so the embedded default needs no configuration.
   */
  signingSecret: string | undefined;
  /** How long a presigned upload URL is valid; an upload not completed by then is cleaned up. */
  uploadUrlTtlSeconds: number;
  /** How long a presigned download URL is valid. */
  downloadUrlTtlSeconds: number;
  /** FILE_SCAN_URL: the scanner every completed upload is sent to (docs/FILES.md); undefined: marked clean. */
  scanUrl: string | undefined;
  s3: {
    /** S3_ENDPOINT: undefined means AWS S3 itself (by region). */
    endpoint: string | undefined;
    /** S3_PUBLIC_ENDPOINT: the endpoint browsers reach, when it differs (e.g. http://localhost:9000 beside http://minio:9000). */
    publicEndpoint: string | undefined;
    bucket: string;
    region: string;
    /** S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY; undefined: the AWS SDK's default chain (AWS_* variables, instance roles). */
    accessKeyId: string | undefined;
    secretAccessKey: string | undefined;
    /** S3_FORCE_PATH_STYLE: http://host/bucket/key instead of http://bucket.host/key (MinIO and most self-hosted stores). */
    forcePathStyle: boolean;
  };
}

/** Limits and switches of the GraphQL edge (GRAPHQL_*; .env.example explains each). */
export interface GraphQLEdgeConfig {
  maxTokens: number;
  maxDepth: number;
  maxAliases: number;
  maxDirectives: number;
  maxFields: number;
  maxCollections: number;
  maxRows: number;
  maxBodyBytes: number;
  maxResponseBytes: number;
  /** Documents (and their operation plans) kept parsed and planned. */
  documentCacheSize: number;
  /** Longest time Grafast may spend planning one operation, in ms (planning blocks the event loop). */
  planningTimeoutMs: number;
  /** GraphQL requests in progress at once; more wait in a bounded queue (src/http/concurrency.ts). */
  maxConcurrent: number;
  maxQueued: number;
  queueTimeoutMs: number;
  /** Introspection and "Did you mean …?" suggestions (default: off in production). */
  introspection: boolean;
  /** statement_timeout of every request's transaction, in ms. */
  statementTimeoutMs: number;
  /** A folder of `<sha256>.graphql` files or a JSON manifest { id: document }: the registered operations. */
  persistedOperations: string | undefined;
  /** With persistedOperations: also accept documents that are not registered. */
  allowUnpersistedOperations: boolean;
}

/** Transactional email (src/email/, task send_email). */
export interface EmailConfig {
  /** SMTP_URL: send through this SMTP server; undefined: write each message to `dir` instead. */
  smtpUrl: string | undefined;
  /** EMAIL_DIR: where the development transport writes one .eml file per message. */
  dir: string;
  /** EMAIL_FROM: the From header, `address` or `Name <address>`. */
  from: string;
  /** APP_URL: base of the links in emails (the web app a person opens), no trailing slash. */
  appUrl: string;
}

/** `points` requests (or sign-in mutations) per key in a fixed window of `durationSeconds`. */
export interface RateLimit {
  points: number;
  durationSeconds: number;
}

/** The limits, each keyed by what it counts (docs: README "Rate limits", .env.example). */
export const RATE_LIMIT_NAMES = ['anonymous', 'user', 'organization', 'login', 'register', 'confirmRegistration', 'requestPasswordReset', 'resetPassword', 'refresh'] as const;
export type RateLimitName = (typeof RATE_LIMIT_NAMES)[number];

export interface RateLimitConfig {
  /** RATE_LIMITS: false turns every limit of the HTTP layer off (the database's sign-in throttle stays). */
  enabled: boolean;
  /**
   * TRUST_PROXY: Express's `trust proxy`: false (the socket's address is the client), a number of
   * proxy hops, or the proxies' addresses/subnets. Never `true` (any client could pick its address).
   */
  trustProxy: false | number | string[];
  /** REDIS_URL: share the limits across processes on Redis; undefined: in this process's memory. */
  redisUrl: string | undefined;
  /** RATE_LIMIT_KEY_PREFIX: prefix of every Redis key (several deployments can share one Redis). */
  keyPrefix: string;
  /** RATE_LIMIT_REDIS_TIMEOUT_MS: a Redis call slower than this counts as an outage (per-process limits answer). */
  redisTimeoutMs: number;
  /** RATE_LIMIT_MEMORY_MAX_KEYS: the most keys the in-memory limiters hold together (oldest evicted first). */
  memoryMaxKeys: number;
  /** RATE_LIMIT_<NAME>: null when that limit is off. */
  limits: Record<RateLimitName, RateLimit | null>;
}

/** Defaults: README "Rate limits" says why each is what it is. */
export const DEFAULT_RATE_LIMITS: Record<RateLimitName, string> = {
  anonymous: '300/1m',
  user: '600/1m',
  organization: '6000/1m',
  login: '30/10m',
  register: '10/1h',
  confirmRegistration: '20/1h',
  requestPasswordReset: '10/1h',
  resetPassword: '20/1h',
  refresh: '200/10m',
};

const RATE_LIMIT_VARIABLES: Record<RateLimitName, string> = {
  anonymous: 'RATE_LIMIT_ANONYMOUS',
  user: 'RATE_LIMIT_USER',
  organization: 'RATE_LIMIT_ORGANIZATION',
  login: 'RATE_LIMIT_LOGIN',
  register: 'RATE_LIMIT_REGISTER',
  confirmRegistration: 'RATE_LIMIT_CONFIRM_REGISTRATION',
  requestPasswordReset: 'RATE_LIMIT_REQUEST_PASSWORD_RESET',
  resetPassword: 'RATE_LIMIT_RESET_PASSWORD',
  refresh: 'RATE_LIMIT_REFRESH',
};

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600 };

/** `300/1m` → 300 per 60 s; `off` → null. Undefined (with the problem) when malformed. */
export function parseRateLimit(value: string): RateLimit | null | undefined {
  if (['off', 'false', '0'].includes(value.toLowerCase())) return null;
  const match = /^(\d{1,10})\s*\/\s*(\d{1,6})\s*([smh]?)$/.exec(value);
  if (!match) return undefined;
  const points = Number(match[1]);
  const durationSeconds = Number(match[2]) * DURATION_UNITS[match[3] || 's'];
  if (points < 1 || points > 1_000_000_000 || durationSeconds < 1 || durationSeconds > 24 * 3600) return undefined;
  return { points, durationSeconds };
}

const TRUST_PROXY_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

/** TRUST_PROXY: `false`, a hop count (1-10), or addresses, subnets and names, comma-separated. Undefined when malformed. */
export function parseTrustProxy(value: string): false | number | string[] | undefined {
  const v = value.toLowerCase();
  if (['false', 'off', 'no', '0'].includes(v)) return false;
  if (/^\d+$/.test(v)) {
    const hops = Number(v);
    return hops >= 1 && hops <= 10 ? hops : undefined;
  }
  const entries = value.split(',').map((e) => e.trim()).filter((e) => e !== '');
  const valid = (entry: string) => {
    if (TRUST_PROXY_NAMES.includes(entry)) return true;
    const [address, bits, ...rest] = entry.split('/');
    const family = isIP(address);
    if (family === 0 || rest.length > 0) return false;
    return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
  };
  return entries.length > 0 && entries.every(valid) ? entries : undefined;
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}\nSee .env.example for every variable.`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
// `address` or `Name <address>` (the name may be quoted); one address, no line breaks.
const EMAIL_FROM = /^(?:[^<>\r\n]*<[^@\s<>]+@[^@\s<>]+>|[^@\s<>]+@[^@\s<>]+)$/;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Parses `env` (defaults to process.env). Throws ConfigError listing every problem at once. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const problems: string[] = [];
  const str = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], fallback: T): T => {
    const v = str(name);
    if (v === undefined) return fallback;
    if ((allowed as readonly string[]).includes(v)) return v as T;
    problems.push(`${name}="${v}" must be one of: ${allowed.join(', ')}`);
    return fallback;
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const v = str(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name}="${v}" must be an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const v = str(name)?.toLowerCase();
    if (v === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    problems.push(`${name}="${env[name]}" must be true or false`);
    return fallback;
  };
  const role = (name: string, fallback: string): string => {
    const v = str(name) ?? fallback;
    if (!ROLE_NAME.test(v)) problems.push(`${name}="${v}" must be a lower-case SQL identifier (a-z, 0-9, _)`);
    return v;
  };

  const nodeEnv = oneOf<NodeEnv>('NODE_ENV', ['development', 'production', 'test'], 'development');
  const production = nodeEnv === 'production';
  const host = str('HOST') ?? '127.0.0.1';
  const port = int('PORT', 3000, 0, 65535);

  const url = str('DATABASE_URL');
  if (url !== undefined) {
    try {
      const u = new URL(url);
      if (!['postgres:', 'postgresql:'].includes(u.protocol)) problems.push(`DATABASE_URL must start with postgres:// (got ${u.protocol}//)`);
      if (!u.pathname || u.pathname === '/') problems.push('DATABASE_URL must name a database, e.g. postgres://user:pass@host:5432/atrium');
    } catch {
      problems.push('DATABASE_URL is not a valid URL (expected postgres://user:password@host:5432/database)');
    }
  } else if (production) {
    problems.push('DATABASE_URL is required when NODE_ENV=production (the embedded PostgreSQL is for development only)');
  }

  const roles: RoleNames = {
    owner: role('DATABASE_OWNER', 'atrium_owner'),
    authenticator: role('DATABASE_AUTHENTICATOR', 'atrium_authenticator'),
    visitor: role('DATABASE_VISITOR', 'atrium_visitor'),
    worker: role('DATABASE_WORKER', 'atrium_worker'),
    producer: role('DATABASE_PRODUCER', 'atrium_producer'),
  };
  if (new Set(Object.values(roles)).size !== 5) {
    problems.push('DATABASE_OWNER, DATABASE_AUTHENTICATOR, DATABASE_VISITOR, DATABASE_WORKER and DATABASE_PRODUCER must be five different roles');
  }

  // Required only when the app logs in with them (checked in src/db/bootstrap.ts).
  const authenticatorPassword = str('DATABASE_AUTHENTICATOR_PASSWORD');
  const workerPassword = str('DATABASE_WORKER_PASSWORD');

  const jwtSecret = str('JWT_SECRET');
  if (jwtSecret !== undefined && jwtSecret.length < 32) problems.push('JWT_SECRET must be at least 32 characters (use e.g. `openssl rand -base64 48`)');
  if (jwtSecret === undefined && production) problems.push('JWT_SECRET is required when NODE_ENV=production');

  const logLevel = str('LOG_LEVEL') ?? (nodeEnv === 'test' ? 'warn' : 'info');
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`LOG_LEVEL="${logLevel}" must be one of: ${LOG_LEVELS.join(', ')}`);

  const smtpUrl = str('SMTP_URL');
  if (smtpUrl !== undefined) {
    // Never echo the URL itself: it usually carries a password.
    let u: URL | undefined;
    try {
      u = new URL(smtpUrl);
    } catch {
      problems.push('SMTP_URL is not a valid URL (expected smtp://user:password@host:587 or smtps://user:password@host:465)');
    }
    if (u && !['smtp:', 'smtps:'].includes(u.protocol)) problems.push(`SMTP_URL must start with smtp:// or smtps:// (got ${u.protocol}//)`);
    else if (u && !u.hostname) problems.push('SMTP_URL must name a host, e.g. smtp://user:password@smtp.example.com:587');
  } else if (production) {
    problems.push('SMTP_URL is required when NODE_ENV=production (without it emails are only written to EMAIL_DIR)');
  }
  const emailFrom = str('EMAIL_FROM') ?? 'Atrium <no-reply@localhost>';
  if (!EMAIL_FROM.test(emailFrom)) problems.push(`EMAIL_FROM="${emailFrom}" must be an address or "Name <address>", e.g. Atrium <no-reply@example.com>`);
  const appUrl = str('APP_URL');
  if (appUrl !== undefined) {
    let protocol: string | undefined;
    try {
      protocol = new URL(appUrl).protocol;
    } catch {
      problems.push(`APP_URL="${appUrl}" is not a valid URL (expected e.g. https://app.example.com)`);
    }
    if (protocol !== undefined && !['http:', 'https:'].includes(protocol)) problems.push(`APP_URL="${appUrl}" must start with http:// or https://`);
  } else if (production) {
    problems.push('APP_URL is required when NODE_ENV=production (the links in emails point at it)');
  }

  const persistedOperations = str('PERSISTED_OPERATIONS');
  const trustProxyValue = str('TRUST_PROXY');
  let trustProxy: false | number | string[] = false;
  if (trustProxyValue !== undefined) {
    const parsed = parseTrustProxy(trustProxyValue);
    if (parsed === undefined) {
      problems.push(
        ['true', 'yes', 'on'].includes(trustProxyValue.toLowerCase())
          ? `TRUST_PROXY="${trustProxyValue}" would let any client choose its own address (X-Forwarded-For); give the number of proxies in front of Atrium (e.g. 1) or their addresses`
          : `TRUST_PROXY="${trustProxyValue}" must be false, a number of proxies from 1 to 10, or comma-separated addresses, subnets (10.0.0.0/8) or loopback, linklocal, uniquelocal`,
      );
    } else {
      trustProxy = parsed;
    }
  }
  const redisUrl = str('REDIS_URL');
  if (redisUrl !== undefined) {
    // Never echo the URL itself: it may carry a password.
    let u: URL | undefined;
    try {
      u = new URL(redisUrl);
    } catch {
      problems.push('REDIS_URL is not a valid URL (expected redis://[:password@]host:6379[/db] or rediss://…)');
    }
    if (u && !['redis:', 'rediss:'].includes(u.protocol)) problems.push(`REDIS_URL must start with redis:// or rediss:// (got ${u.protocol}//)`);
    else if (u && !u.hostname) problems.push('REDIS_URL must name a host, e.g. redis://127.0.0.1:6379');
  }
  const rateLimitKeyPrefix = str('RATE_LIMIT_KEY_PREFIX') ?? 'atrium:rl';
  if (!/^[A-Za-z0-9:_.-]{1,64}$/.test(rateLimitKeyPrefix)) problems.push(`RATE_LIMIT_KEY_PREFIX="${rateLimitKeyPrefix}" must be 1 to 64 letters, digits or : _ . -`);
  const limits = {} as Record<RateLimitName, RateLimit | null>;
  for (const name of RATE_LIMIT_NAMES) {
    const variable = RATE_LIMIT_VARIABLES[name];
    const parsed = parseRateLimit(str(variable) ?? DEFAULT_RATE_LIMITS[name]);
    if (parsed === undefined) {
      problems.push(`${variable}="${str(variable)}" must be <requests>/<window> with a window of 1s to 24h (e.g. ${DEFAULT_RATE_LIMITS[name]}, 20/30s), or off`);
    }
    limits[name] = parsed ?? null;
  }

  const filesDriver = str('FILES_DRIVER') ?? (str('S3_BUCKET') !== undefined ? 's3' : 'local');
  if (filesDriver !== 'local' && filesDriver !== 's3') problems.push(`FILES_DRIVER="${filesDriver}" must be local or s3`);
  if (filesDriver === 's3' && str('S3_BUCKET') === undefined) problems.push('S3_BUCKET is required when FILES_DRIVER=s3');
  const s3Bucket = str('S3_BUCKET') ?? '';
  if (s3Bucket !== '' && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(s3Bucket)) problems.push(`S3_BUCKET="${s3Bucket}" is not a valid bucket name (3 to 63 lowercase letters, digits, dots and hyphens)`);
  for (const name of ['S3_ENDPOINT', 'S3_PUBLIC_ENDPOINT', 'FILE_SCAN_URL']) {
    const value = str(name);
    if (value === undefined) continue;
    let protocol: string | undefined;
    try {
      protocol = new URL(value).protocol;
    } catch {
      problems.push(`${name} is not a valid URL (expected e.g. https://s3.example.com)`);
    }
    if (protocol !== undefined && !['http:', 'https:'].includes(protocol)) problems.push(`${name} must start with http:// or https://`);
  }
  const s3AccessKeyId = str('S3_ACCESS_KEY_ID');
  const s3SecretAccessKey = str('S3_SECRET_ACCESS_KEY');
  if ((s3AccessKeyId === undefined) !== (s3SecretAccessKey === undefined)) problems.push('S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together: set both, or neither (the AWS default credential chain)');
  const filesSigningSecret = str('FILES_SIGNING_SECRET');
  if (filesSigningSecret !== undefined && filesSigningSecret.length < 32) problems.push('FILES_SIGNING_SECRET must be at least 32 characters (use e.g. `openssl rand -base64 48`)');

  const config: Config = {
    nodeEnv,
    host,
    port,
    publicUrl: (str('PUBLIC_URL') ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`).replace(/\/$/, ''),
    database: {
      url,
      roles,
      ownerPassword: str('DATABASE_OWNER_PASSWORD'),
      authenticatorPassword,
      workerPassword,
      embeddedDir: path.resolve(cwd, str('EMBEDDED_PG_DIR') ?? '.data/postgres'),
      embeddedDirChosen: str('EMBEDDED_PG_DIR') !== undefined,
      embeddedPort: int('EMBEDDED_PG_PORT', 54329, 1, 65535),
    },
    auth: {
      jwtSecret,
      accessTokenTtlSeconds: int('ACCESS_TOKEN_TTL_SECONDS', 15 * 60, 30, 24 * 3600),
      refreshTokenTtlSeconds: int('REFRESH_TOKEN_TTL_SECONDS', 30 * 24 * 3600, 300, 365 * 24 * 3600),
    },
    worker: {
      inline: bool('WORKER_INLINE', true),
      sameProcess: bool('WORKER_SAME_PROCESS', false),
      concurrency: int('WORKER_CONCURRENCY', 5, 1, 100),
      heartbeatIntervalMs: int('WORKER_HEARTBEAT_INTERVAL_MS', 10_000, 100, 600_000),
      staleAfterMs: int('WORKER_STALE_AFTER_MS', 45_000, 500, 3_600_000),
      queueVacuumAfterJobs: int('WORKER_QUEUE_VACUUM_AFTER_JOBS', DEFAULT_QUEUE_VACUUM.afterJobs, 0, 100_000_000),
    },
    webhooks: {
      timeoutMs: int('WEBHOOK_TIMEOUT_MS', 10_000, 100, 120_000),
      allowPrivateNetworks: bool('WEBHOOK_ALLOW_PRIVATE_NETWORKS', !production),
    },
    graphiql: production ? false : bool('GRAPHIQL', true),
    pageSizeMax: int('PAGE_SIZE_MAX', 100, 1, 10_000),
    seedDemoData: bool('SEED_DEMO_DATA', true),
    corsOrigins: (str('CORS_ORIGINS') ?? (production ? '' : '*')).split(',').map((o) => o.trim()).filter((o) => o !== ''),
    logLevel,
    email: {
      smtpUrl,
      dir: path.resolve(cwd, str('EMAIL_DIR') ?? '.data/email'),
      from: emailFrom,
      appUrl: (appUrl ?? `http://localhost:${port}`).replace(/\/+$/, ''),
    },
    graphql: {
      maxTokens: int('GRAPHQL_MAX_TOKENS', 5_000, 50, 1_000_000),
      maxDepth: int('GRAPHQL_MAX_DEPTH', 10, 2, 100),
      maxAliases: int('GRAPHQL_MAX_ALIASES', 20, 0, 10_000),
      maxDirectives: int('GRAPHQL_MAX_DIRECTIVES', 20, 0, 10_000),
      maxFields: int('GRAPHQL_MAX_FIELDS', 300, 10, 100_000),
      maxCollections: int('GRAPHQL_MAX_COLLECTIONS', 20, 1, 10_000),
      maxRows: int('GRAPHQL_MAX_ROWS', 5_000, 1, 10_000_000),
      maxBodyBytes: int('GRAPHQL_MAX_BODY_BYTES', 256 * 1024, 1024, 100 * 1024 * 1024),
      maxResponseBytes: int('GRAPHQL_MAX_RESPONSE_BYTES', 8 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
      documentCacheSize: int('GRAPHQL_DOCUMENT_CACHE_SIZE', 50, 0, 100_000),
      planningTimeoutMs: int('GRAPHQL_PLANNING_TIMEOUT_MS', 2_000, 1, 600_000),
      maxConcurrent: int('GRAPHQL_MAX_CONCURRENT', 8, 1, 10_000),
      maxQueued: int('GRAPHQL_MAX_QUEUED', 100, 0, 100_000),
      queueTimeoutMs: int('GRAPHQL_QUEUE_TIMEOUT_MS', 10_000, 10, 600_000),
      introspection: bool('GRAPHQL_INTROSPECTION', !production),
      statementTimeoutMs: int('STATEMENT_TIMEOUT_MS', 5_000, 100, 3_600_000),
      persistedOperations: persistedOperations === undefined ? undefined : path.resolve(cwd, persistedOperations),
      allowUnpersistedOperations: bool('ALLOW_UNPERSISTED_OPERATIONS', persistedOperations === undefined),
    },
    rateLimits: {
      enabled: bool('RATE_LIMITS', true),
      trustProxy,
      redisUrl,
      keyPrefix: rateLimitKeyPrefix,
      redisTimeoutMs: int('RATE_LIMIT_REDIS_TIMEOUT_MS', 200, 10, 10_000),
      memoryMaxKeys: int('RATE_LIMIT_MEMORY_MAX_KEYS', 20_000, 100, 10_000_000),
      limits,
    },
    files: {
      driver: filesDriver === 's3' ? 's3' : 'local',
      localDir: path.resolve(cwd, str('FILES_DIR') ?? '.data/files'),
      signingSecret: filesSigningSecret,
      // A presigned URL is valid at most 7 days (SigV4's limit).
      uploadUrlTtlSeconds: int('FILE_UPLOAD_URL_TTL_SECONDS', 15 * 60, 10, 7 * 24 * 3600),
      // At most an hour: a download link cannot be taken back (a deleted or infected file's link
      // works until it expires).
      downloadUrlTtlSeconds: int('FILE_DOWNLOAD_URL_TTL_SECONDS', 5 * 60, 10, 3600),
      scanUrl: str('FILE_SCAN_URL'),
      s3: {
        endpoint: str('S3_ENDPOINT')?.replace(/\/+$/, ''),
        publicEndpoint: str('S3_PUBLIC_ENDPOINT')?.replace(/\/+$/, ''),
        bucket: s3Bucket,
        region: str('S3_REGION') ?? 'us-east-1',
        accessKeyId: s3AccessKeyId,
        secretAccessKey: s3SecretAccessKey,
        forcePathStyle: bool('S3_FORCE_PATH_STYLE', str('S3_ENDPOINT') !== undefined),
      },
    },
  };
  if (config.graphql.maxRows < config.pageSizeMax) problems.push(`GRAPHQL_MAX_ROWS (${config.graphql.maxRows}) must be at least PAGE_SIZE_MAX (${config.pageSizeMax}): one full page must fit`);
  if (config.worker.staleAfterMs < 3 * config.worker.heartbeatIntervalMs) {
    problems.push('WORKER_STALE_AFTER_MS must be at least 3 × WORKER_HEARTBEAT_INTERVAL_MS (a worker that misses one heartbeat is not dead)');
  }
  if (production && bool('GRAPHIQL', false)) problems.push('GRAPHIQL cannot be enabled when NODE_ENV=production');
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}
