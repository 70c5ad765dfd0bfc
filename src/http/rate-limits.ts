// Request rate limits (README, "Rate limits"): fixed-window counters from rate-limiter-flexible,
// kept on Redis (through ioredis) when REDIS_URL is set, so that every API process spends from one
// budget, and in this process's memory when it is not (the embedded default needs no Redis).
//
// A Redis outage does not take the API down, nor lift the limits: each call that Redis cannot
// answer (not connected, or slower than RATE_LIMIT_REDIS_TIMEOUT_MS) is answered by an in-memory
// limiter with the same budget, so during an outage each process enforces the limits on its own
// (N processes allow up to N × the budget). The database's sign-in throttle (app_private.login)
// does not depend on Redis at all and stays the floor for password guessing. The outage is logged
// once when it starts and once when Redis answers again, never per request. While Redis is down,
// one call every PROBE_INTERVAL_MS tries it again (a hung Redis costs one timeout per interval,
// not one per request); ioredis reconnects by itself and its `ready` event ends the outage too.
// (rate-limiter-flexible's own `insuranceLimiter` option does the same fallback, but silently: we
// could not log the outage and its end, so the fallback is these few lines instead.)
//
// Memory: the in-memory limiters share one store of at most RATE_LIMIT_MEMORY_MAX_KEYS keys
// (default 20,000). A key lives until its window ends (a timer deletes it), so the store holds the
// distinct clients, users and organizations seen within each limit's window; past the bound the
// oldest key is evicted first — that client starts a fresh window early (the limit fails open for
// it, never closed). A key costs about 550 bytes (measured: Map entry, record, timer), so 20,000
// keys are about 11 MB of the 512 MB heap `npm start` gives the API process. On Redis, keys carry the
// window as their TTL; set a maxmemory policy there (docker-compose.yml does).
import { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { RateLimit, RateLimitConfig, RateLimitName } from '../config.ts';
import type { Logger } from '../log.ts';

export interface Verdict {
  allowed: boolean;
  /** When refused: seconds until the window ends and the key may try again (at least 1). */
  retryAfterSeconds: number;
}

export interface RateLimits {
  /** Counts `points` against `limit` for `key`; always allowed when that limit is off. */
  consume(limit: RateLimitName, key: string, points?: number): Promise<Verdict>;
  /** Where the counters are now: `memory`, `redis`, or `memory (Redis unreachable)`. */
  store(): string;
  /** Keys the in-memory limiters hold together (at most RATE_LIMIT_MEMORY_MAX_KEYS). */
  memoryKeys(): number;
  close(): Promise<void>;
}

/** While Redis is down, how often one call tries it again. */
export const PROBE_INTERVAL_MS = 5000;

const ALLOWED: Verdict = Object.freeze({ allowed: true, retryAfterSeconds: 0 });
const refused = (res: RateLimiterRes): Verdict => ({ allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(res.msBeforeNext / 1000)) });

interface MemoryStorageLike {
  _storage: Map<string, unknown>;
  delete(key: string): boolean;
}

/**
 * One store for every in-memory limiter, bounded by a key count. rate-limiter-flexible's memory
 * store has no bound of its own, so the limiters are made to share the first one's store (their
 * keys carry each limiter's prefix) and the oldest keys are evicted past the bound. This reaches
 * into the library's internals; a version that changes them fails at start, not silently.
 */
class BoundedMemoryStore {
  #storage: MemoryStorageLike | undefined;
  readonly maxKeys: number;

  constructor(maxKeys: number) {
    this.maxKeys = maxKeys;
  }

  limiter(limit: RateLimit, keyPrefix: string): RateLimiterMemory {
    const limiter = new RateLimiterMemory({ points: limit.points, duration: limit.durationSeconds, keyPrefix });
    const internals = limiter as unknown as { _memoryStorage?: MemoryStorageLike };
    const own = internals._memoryStorage;
    if (!own || !(own._storage instanceof Map) || typeof own.delete !== 'function') {
      throw new Error('rate-limiter-flexible no longer keeps RateLimiterMemory._memoryStorage._storage: update src/http/rate-limits.ts');
    }
    if (this.#storage) internals._memoryStorage = this.#storage;
    else this.#storage = own;
    return limiter;
  }

  get size(): number {
    return this.#storage?._storage.size ?? 0;
  }

  /** Evicts the oldest keys (the Map keeps insertion order: the earliest windows) past the bound. */
  trim(): void {
    const storage = this.#storage;
    if (!storage || storage._storage.size <= this.maxKeys) return;
    for (const key of storage._storage.keys()) {
      if (storage._storage.size <= this.maxKeys) break;
      storage.delete(key); // also clears the key's expiry timer
    }
  }
}

/** host:port of a Redis URL, for log lines (never the password). */
function redisTarget(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || 6379}`;
}

export function createRateLimits(config: RateLimitConfig, log: Logger): RateLimits {
  const memory = new BoundedMemoryStore(config.memoryMaxKeys);
  const redis = config.redisUrl
    ? new Redis(config.redisUrl, {
        // Fail at once while disconnected (the in-memory limiter answers) instead of queueing.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        commandTimeout: config.redisTimeoutMs,
        connectTimeout: 2000,
        // Reconnect for ever, backing off to one attempt every 5 s.
        retryStrategy: (attempt: number) => Math.min(attempt * 200, 5000),
      })
    : undefined;
  const target = config.redisUrl ? redisTarget(config.redisUrl) : undefined;

  const limiters = new Map<RateLimitName, { memory: RateLimiterMemory; redis?: RateLimiterRedis }>();
  for (const [name, limit] of Object.entries(config.limits) as Array<[RateLimitName, RateLimit | null]>) {
    if (!limit) continue;
    const keyPrefix = `${config.keyPrefix}:${name}`;
    limiters.set(name, {
      memory: memory.limiter(limit, keyPrefix),
      redis: redis
        ? new RateLimiterRedis({
            storeClient: redis,
            points: limit.points,
            duration: limit.durationSeconds,
            keyPrefix,
            // Not connected: fail at once (and fall back) rather than wait for the connection.
            rejectIfRedisNotReady: true,
            // A key over its limit is refused from memory until its window ends: a flood from one
            // client costs no Redis round trips once it is over.
            inMemoryBlockOnConsumed: limit.points + 1,
          })
        : undefined,
    });
  }

  // Redis's state as the limits see it: connecting (first connection; memory answers quietly),
  // up, or down (memory answers; logged once). Transitions are logged, nothing else.
  let state: 'connecting' | 'up' | 'down' = 'connecting';
  let downSince = 0;
  let nextProbeAt = 0;
  const markUp = () => {
    if (state === 'up') return;
    if (state === 'down') log.info({ redis: target, outageSeconds: Math.round((Date.now() - downSince) / 1000) }, 'Redis answers again: rate limits are shared across API processes again');
    else log.info({ redis: target }, 'rate limits are shared across API processes on Redis');
    state = 'up';
  };
  let closed = false;
  const markDown = (error: unknown) => {
    if (state === 'down' || closed) return;
    state = 'down';
    downSince = Date.now();
    nextProbeAt = downSince + PROBE_INTERVAL_MS;
    log.warn({ redis: target, error: (error as Error)?.message }, 'Redis is unreachable: each API process enforces the rate limits on its own until it is back');
  };
  const redisUsable = (): boolean => {
    if (state === 'up') return true;
    if (state === 'down' && Date.now() >= nextProbeAt) {
      nextProbeAt = Date.now() + PROBE_INTERVAL_MS;
      return true;
    }
    return false;
  };
  if (redis) {
    redis.on('ready', markUp);
    // ioredis emits `error` at every failed reconnect: only the first one of an outage is logged.
    redis.on('error', markDown);
    redis.on('close', () => markDown(new Error('connection closed')));
  } else {
    log.info('rate limits are kept in this process (set REDIS_URL to share them across API processes)');
  }
  let unexpected = false;

  return {
    async consume(name, key, points = 1) {
      const pair = limiters.get(name);
      if (!pair) return ALLOWED;
      try {
        if (pair.redis && redisUsable()) {
          try {
            await pair.redis.consume(key, points);
            markUp();
            return ALLOWED;
          } catch (error) {
            if (error instanceof RateLimiterRes) {
              markUp();
              return refused(error);
            }
            markDown(error);
          }
        }
        await pair.memory.consume(key, points);
        return ALLOWED;
      } catch (error) {
        if (error instanceof RateLimiterRes) return refused(error);
        // Not expected from the in-memory limiter; fail open rather than refuse everyone.
        if (!unexpected) log.error({ err: error }, 'rate limiter failed: letting requests through');
        unexpected = true;
        return ALLOWED;
      } finally {
        memory.trim();
      }
    },
    store() {
      if (!redis) return 'memory';
      return state === 'up' ? 'redis' : state === 'down' ? 'memory (Redis unreachable)' : 'memory (connecting to Redis)';
    },
    memoryKeys() {
      return memory.size;
    },
    async close() {
      if (!redis) return;
      closed = true;
      redis.disconnect();
    },
  };
}
