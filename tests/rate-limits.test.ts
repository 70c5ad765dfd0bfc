// Request rate limits (src/http/rate-limits.ts, src/http/rate-limit-requests.ts) over real HTTP:
// per client address for anonymous requests, per user and per organization for signed-in ones,
// stricter ones for the sign-in mutations that aliases, fragments and operationName cannot get
// around; 429 + Retry-After + RATE_LIMITED past them; never on health checks and CORS preflights;
// a bounded in-memory store. In memory always; on the Redis at 127.0.0.1:6379 (TEST_REDIS_URL)
// when it answers: two API instances spend one budget, and a Redis outage — closed, or hung —
// keeps the API up with per-process limits, logged once when it starts and once when it ends.
//
// Each server here sits "behind a proxy on loopback" (TRUST_PROXY=loopback), so X-Forwarded-For
// names the client and every test has clients of its own.
import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Redis } from 'ioredis';
import pino from 'pino';
import { createTokenService } from '../src/auth/tokens.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { startAtrium, type Atrium } from '../src/index.ts';
import { clientAddressOf } from '../src/http/client-address.ts';
import { signInFieldCounts } from '../src/http/rate-limit-requests.ts';
import { createRateLimits } from '../src/http/rate-limits.ts';
import { closePools, pool, testConfig, unique, urlFor } from './support/db.ts';
import { freePort } from '../src/free-port.ts';

const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';

/** A logger whose lines (parsed) go to an array the test reads, not to the console. */
function capturedLog() {
  const lines: Array<{ level: number; msg: string; [key: string]: unknown }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines, count: (pattern: RegExp) => lines.filter((l) => pattern.test(l.msg)).length };
}

const servers: Atrium[] = [];
async function startServer(env: Record<string, string>, logger = capturedLog().logger): Promise<Atrium & { url: string }> {
  const config = testConfig({ DATABASE_URL: urlFor('owner'), TRUST_PROXY: 'loopback', ...env });
  const atrium = await startAtrium(config, logger, { api: true, worker: false });
  servers.push(atrium);
  return atrium as Atrium & { url: string };
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await closePools();
});

interface Answer {
  status: number;
  retryAfter: string | null;
  body: { data?: Record<string, any> | null; errors?: Array<{ message: string; extensions?: Record<string, any> }> };
}

async function post(baseUrl: string, body: unknown, options: { client?: string; token?: string } = {}): Promise<Answer> {
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(options.client ? { 'x-forwarded-for': options.client } : {}),
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
    },
    body: JSON.stringify(body),
  });
  return { status: response.status, retryAfter: response.headers.get('retry-after'), body: (await response.json()) as Answer['body'] };
}
const query = (baseUrl: string, options: { client?: string; token?: string } = {}) => post(baseUrl, { query: '{ __typename }' }, options);
const statuses = async (n: number, send: () => Promise<Answer>) => {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await send()).status);
  return out;
};
const readiness = async (baseUrl: string) => ((await (await fetch(`${baseUrl}/readyz`)).json()) as { checks: { rateLimits?: string } }).checks.rateLimits;
async function until(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const tokens = createTokenService(process.env.JWT_SECRET!, 900);
const tokenFor = async (userId: string, organizationId: string | null) => (await tokens.sign({ userId, sessionId: randomUUID(), organizationId })).token;

const loginField = (alias: string, email: string) => `${alias}: login(input: { email: "${email}", password: "wrong password" }) { userId }`;

describe('in memory', () => {
  let general: Atrium & { url: string };
  let signIn: Atrium & { url: string };
  beforeAll(async () => {
    [general, signIn] = await Promise.all([
      startServer({ RATE_LIMIT_ANONYMOUS: '3/1m', RATE_LIMIT_USER: '3/1m', RATE_LIMIT_ORGANIZATION: '5/1m' }),
      startServer({ RATE_LIMIT_LOGIN: '3/1m', RATE_LIMIT_REGISTER: '2/1m', RATE_LIMIT_CONFIRM_REGISTRATION: '2/1m', RATE_LIMIT_REFRESH: '2/1m', RATE_LIMIT_REQUEST_PASSWORD_RESET: '2/1m', RATE_LIMIT_RESET_PASSWORD: '2/1m' }),
    ]);
  }, 60_000);

  test("anonymous requests are limited per client address: past the limit 429 with Retry-After and RATE_LIMITED in sendJsonError's shape; other addresses keep their own budget", async () => {
    expect(await statuses(3, () => query(general.url, { client: '198.51.100.10' }))).toEqual([200, 200, 200]);
    const refused = await query(general.url, { client: '198.51.100.10' });
    expect(refused.status).toBe(429);
    const seconds = Number(refused.retryAfter);
    expect(seconds).toBeGreaterThanOrEqual(1);
    expect(seconds).toBeLessThanOrEqual(60);
    expect(refused.body).toEqual({
      errors: [
        {
          message: `Too many requests from your network address; try again in ${seconds} second${seconds === 1 ? '' : 's'}.`,
          extensions: { code: 'RATE_LIMITED', httpStatus: 429, retryAfterSeconds: seconds, limit: 'anonymous' },
        },
      ],
    });
    expect((await query(general.url, { client: '198.51.100.11' })).status).toBe(200);
  });

  test('an IPv6 client is one client per /64: its other addresses share the budget', async () => {
    expect(await statuses(3, () => query(general.url, { client: '2001:db8:aa:1::1' }))).toEqual([200, 200, 200]);
    expect((await query(general.url, { client: '2001:db8:aa:1:ffff::2' })).status).toBe(429);
    expect((await query(general.url, { client: '2001:db8:aa:2::1' })).status).toBe(200);
    expect(clientAddressOf('::ffff:203.0.113.5')).toBe('203.0.113.5');
    expect(clientAddressOf('2001:db8:aa:1:2:3:4:5')).toBe('2001:db8:aa:1::/64');
  });

  test('signed-in requests count per user and per organization, not against their address', async () => {
    const office = '198.51.100.20';
    expect(await statuses(4, () => query(general.url, { client: office }))).toEqual([200, 200, 200, 429]);
    // Signed in from the same (exhausted) address: its own budgets.
    const orgA = randomUUID();
    const alice = await tokenFor(randomUUID(), orgA);
    expect(await statuses(3, () => query(general.url, { client: office, token: alice }))).toEqual([200, 200, 200]);
    const overUser = await query(general.url, { client: office, token: alice });
    expect(overUser.status).toBe(429);
    expect(overUser.body.errors?.[0].extensions).toMatchObject({ code: 'RATE_LIMITED', limit: 'user' });
    // Two members of one organization share its budget (5), each within their own (3).
    const orgB = randomUUID();
    const [bob, carol] = await Promise.all([tokenFor(randomUUID(), orgB), tokenFor(randomUUID(), orgB)]);
    expect(await statuses(3, () => query(general.url, { token: bob }))).toEqual([200, 200, 200]);
    expect(await statuses(2, () => query(general.url, { token: carol }))).toEqual([200, 200]);
    const overOrg = await query(general.url, { token: carol });
    expect(overOrg.status).toBe(429);
    expect(overOrg.body.errors?.[0].extensions).toMatchObject({ code: 'RATE_LIMITED', limit: 'organization' });
    // Someone in another organization is not affected.
    expect((await query(general.url, { token: await tokenFor(randomUUID(), randomUUID()) })).status).toBe(200);
  });

  test('health checks and CORS preflights are never limited', async () => {
    // No X-Forwarded-For: the client is the proxy itself (127.0.0.1), exhausted here.
    expect(await statuses(4, () => query(general.url))).toEqual([200, 200, 200, 429]);
    for (let i = 0; i < 5; i++) {
      expect((await fetch(`${general.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${general.url}/readyz`)).status).toBe(200);
      const preflight = await fetch(`${general.url}/graphql`, { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } });
      expect(preflight.status).toBe(204);
    }
    expect(await readiness(general.url)).toBe('memory');
  });

  test('the sign-in mutations have stricter limits of their own, counted per field: aliases cannot get around them, and GraphQL does not run', async () => {
    const email = `${unique('aliased')}@example.com`;
    const aliased = await post(signIn.url, { query: `mutation { ${[1, 2, 3, 4].map((i) => loginField(`a${i}`, email)).join(' ')} }` }, { client: '203.0.113.30' });
    expect(aliased.status).toBe(429);
    expect(Number(aliased.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(aliased.body).toEqual({
      errors: [{ message: expect.stringMatching(/^Too many sign-in attempts from your network address; try again in \d+ seconds?\.$/), extensions: { code: 'RATE_LIMITED', httpStatus: 429, retryAfterSeconds: Number(aliased.retryAfter), limit: 'login' } }],
    });
    // Refused before GraphQL: not one of the four sign-ins was tried.
    expect((await pool('owner').query('select 1 from app_private.login_throttle where email = $1', [email])).rowCount).toBe(0);
    // Within the limit they run (the first failure ends the operation: login is non-null), and a
    // fourth is refused.
    const client = '203.0.113.31';
    const three = await post(signIn.url, { query: `mutation { ${[1, 2, 3].map((i) => loginField(`a${i}`, email)).join(' ')} }` }, { client });
    expect(three.status).toBe(200);
    expect(three.body.errors?.[0].extensions?.code).toBe('INVALID_CREDENTIALS');
    expect((await pool('owner').query('select 1 from app_private.login_throttle where email = $1 and client = $2', [email, client])).rowCount).toBe(1);
    expect((await post(signIn.url, { query: `mutation { ${loginField('again', email)} }` }, { client })).status).toBe(429);
    // Each sign-in mutation has its own budget: the exhausted login limit leaves register alone.
    expect((await post(signIn.url, { query: 'mutation { register(input: { email: "x@example.com", password: "a long password", name: "x" }) { requested } }' }, { client })).status).toBe(200);
  });

  test('fragments, inline fragments and operationName cannot hide sign-in mutations from the count; batches are refused', async () => {
    const email = `${unique('hidden')}@example.com`;
    const viaFragments = `mutation { ...F ... on Mutation { ${loginField('c', email)} ${loginField('d', email)} } } fragment F on Mutation { ${loginField('a', email)} ${loginField('b', email)} }`;
    expect((await post(signIn.url, { query: viaFragments }, { client: '203.0.113.40' })).status).toBe(429);
    const twoOperations = `mutation Small { ${loginField('a', email)} } mutation Big { ${[1, 2, 3, 4].map((i) => loginField(`b${i}`, email)).join(' ')} }`;
    // operationName picks the operation that runs, and the count follows it.
    const small = await post(signIn.url, { query: twoOperations, operationName: 'Small' }, { client: '203.0.113.41' });
    expect(small.status).toBe(200);
    expect(small.body.errors?.[0].extensions?.code).toBe('INVALID_CREDENTIALS');
    expect((await post(signIn.url, { query: twoOperations, operationName: 'Big' }, { client: '203.0.113.42' })).status).toBe(429);
    expect(signInFieldCounts(twoOperations, 'Big')).toEqual(new Map([['login', 4]]));
    expect(signInFieldCounts(twoOperations, undefined)).toEqual(new Map()); // ambiguous: GraphQL runs nothing
    expect(signInFieldCounts('mutation { login(input: {}) { userId } } # login login', 'nope')).toEqual(new Map());
    expect(signInFieldCounts('mutation { ...F ...F } fragment F on Mutation { ...F login(input: {}) { userId } }', undefined)).toEqual(new Map([['login', 1]]));
    // A batch (a JSON array of operations) is not accepted at all.
    const batch = await post(signIn.url, [1, 2, 3, 4].map(() => ({ query: `mutation { ${loginField('a', email)} }` })), { client: '203.0.113.43' });
    expect(batch.status).toBe(400);
    expect((await pool('owner').query('select 1 from app_private.login_throttle where email = $1 and client <> $2', [email, '203.0.113.41'])).rowCount).toBe(0);
  });

  test.each([
    ['register', 'register(input: { email: "nobody", password: "x", name: "x" }) { requested }'],
    ['confirmRegistration', 'confirmRegistration(input: { token: "x", password: "x" }) { userId }'],
    ['refresh', 'refresh(input: { refreshToken: "x" }) { userId }'],
    ['requestPasswordReset', 'requestPasswordReset(input: { email: "nobody@example.com" }) { requested }'],
    ['resetPassword', 'resetPassword(input: { token: "x", newPassword: "x" }) { userId }'],
  ])('%s has a limit of its own', async (field, selection) => {
    const client = `203.0.113.${50 + ['register', 'confirmRegistration', 'refresh', 'requestPasswordReset', 'resetPassword'].indexOf(field)}`;
    const refused = await post(signIn.url, { query: `mutation { a: ${selection} b: ${selection} c: ${selection} }` }, { client });
    expect(refused.status).toBe(429);
    expect(refused.body.errors?.[0].extensions).toMatchObject({ code: 'RATE_LIMITED', limit: field });
    expect((await post(signIn.url, { query: `mutation { ${loginField('a', 'nobody@example.com')} }` }, { client })).status).toBe(200);
  });

  test('without TRUST_PROXY, X-Forwarded-For changes nothing: every request counts against the socket address', async () => {
    const direct = await startServer({ TRUST_PROXY: '', RATE_LIMIT_ANONYMOUS: '3/1m' });
    const sent = await statuses(4, async () => query(direct.url, { client: `198.51.100.${Math.floor(Math.random() * 200)}` }));
    expect(sent).toEqual([200, 200, 200, 429]);
  });

  test('the in-memory limiters hold at most RATE_LIMIT_MEMORY_MAX_KEYS keys together: past it the oldest key is evicted (it fails open, never closed)', async () => {
    const config = testConfig({ RATE_LIMIT_MEMORY_MAX_KEYS: '100', RATE_LIMIT_ANONYMOUS: '1/1h', RATE_LIMIT_USER: '1/1h' }).rateLimits;
    const limits = createRateLimits({ ...config, redisUrl: undefined }, capturedLog().logger);
    try {
      expect((await limits.consume('anonymous', 'first')).allowed).toBe(true);
      expect((await limits.consume('anonymous', 'first')).allowed).toBe(false);
      for (let i = 0; i < 150; i++) {
        await limits.consume('anonymous', `a${i}`);
        await limits.consume('user', `u${i}`);
        expect(limits.memoryKeys()).toBeLessThanOrEqual(100);
      }
      expect(limits.memoryKeys()).toBe(100);
      // The oldest key was evicted: it starts a fresh window. A recent one is still counted.
      expect((await limits.consume('anonymous', 'first')).allowed).toBe(true);
      expect((await limits.consume('user', 'u149')).allowed).toBe(false);
    } finally {
      await limits.close();
    }
  });

  test('REDIS_URL at a closed port: the API keeps answering with per-process limits, and the outage is logged once, not per request', async () => {
    const log = capturedLog();
    const closed = await freePort();
    const server = await startServer({ REDIS_URL: `redis://:secret-password@127.0.0.1:${closed}`, RATE_LIMIT_ANONYMOUS: '3/1m' }, log.logger);
    expect(await statuses(6, () => query(server.url, { client: '198.51.100.60' }))).toEqual([200, 200, 200, 429, 429, 429]);
    await sleep(1500); // ioredis keeps trying to connect meanwhile
    expect(await statuses(3, () => query(server.url, { client: '198.51.100.61' }))).toEqual([200, 200, 200]);
    expect(await readiness(server.url)).toBe('memory (Redis unreachable)');
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    expect(log.count(/Redis is unreachable/)).toBe(1);
    expect(JSON.stringify(log.lines)).not.toContain('secret-password');
  });
});

describe('configuration', () => {
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig(env);
      return [];
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
  };

  test('limits are <requests>/<window> or off; defaults apply when unset', () => {
    const { rateLimits } = loadConfig({ RATE_LIMIT_LOGIN: '5/30s', RATE_LIMIT_REGISTER: 'off' });
    expect(rateLimits.limits.login).toEqual({ points: 5, durationSeconds: 30 });
    expect(rateLimits.limits.register).toBeNull();
    expect(rateLimits.limits.anonymous).toEqual({ points: 300, durationSeconds: 60 });
    expect(rateLimits).toMatchObject({ enabled: true, trustProxy: false, redisUrl: undefined, memoryMaxKeys: 20_000 });
    for (const bad of ['lots', '10/0s', '0/1m', '10/2d', '10/25h']) expect(problems({ RATE_LIMIT_USER: bad }).join()).toContain('RATE_LIMIT_USER');
  });

  test('TRUST_PROXY takes a hop count or addresses, never `true` (any client could pick its address)', () => {
    expect(loadConfig({ TRUST_PROXY: '1' }).rateLimits.trustProxy).toBe(1);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8, 2001:db8::1' }).rateLimits.trustProxy).toEqual(['loopback', '10.0.0.0/8', '2001:db8::1']);
    expect(problems({ TRUST_PROXY: 'true' })).toEqual([expect.stringMatching(/^TRUST_PROXY="true" would let any client choose its own address/)]);
    for (const bad of ['10.0.0.0/33', 'proxy.example.com', '11']) expect(problems({ TRUST_PROXY: bad })).toEqual([expect.stringMatching(/^TRUST_PROXY=/)]);
  });

  test('REDIS_URL must be redis:// or rediss://, and a bad one is reported without its password', () => {
    expect(loadConfig({ REDIS_URL: 'rediss://:pw@cache.internal:6380/2' }).rateLimits.redisUrl).toBe('rediss://:pw@cache.internal:6380/2');
    const found = problems({ REDIS_URL: 'http://user:hunter2-secret@cache:6379' });
    expect(found).toEqual(['REDIS_URL must start with redis:// or rediss:// (got http://)']);
  });
});

// ------------------------------------------------------------------------------------------
// On Redis: only when one answers (these machines run one at 127.0.0.1:6379).

async function redisAnswers(): Promise<boolean> {
  const probe = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}
const redisUp = await redisAnswers();
if (!redisUp) process.stderr.write(`\ntests/rate-limits.test.ts: no Redis answers at ${REDIS_URL}: the Redis cases are SKIPPED (the in-memory ones ran)\n`);

const proxies: RedisProxy[] = [];
afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
});

/** A TCP proxy to Redis the test can cut (stop), hang (hold every byte) and restore. */
class RedisProxy {
  port = 0;
  #server: net.Server | undefined;
  #sockets = new Set<net.Socket>();
  #held: Array<() => void> | undefined;
  commandsWhileHung = 0;

  constructor() {
    proxies.push(this);
  }

  async start(port = 0): Promise<void> {
    const target = new URL(REDIS_URL);
    this.#server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 6379), target.hostname);
      for (const [from, to] of [[client, upstream], [upstream, client]] as const) {
        this.#sockets.add(from);
        from.on('data', (chunk) => {
          if (!this.#held) return void to.write(chunk);
          if (from === client) this.commandsWhileHung += (chunk.toString('latin1').match(/\*\d+\r\n/g) ?? []).length;
          this.#held.push(() => to.write(chunk));
        });
        from.on('error', () => to.destroy());
        from.on('close', () => {
          this.#sockets.delete(from);
          to.destroy();
        });
      }
    });
    await new Promise<void>((resolve) => this.#server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.#server.address() as net.AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    this.#held = undefined;
    const closed = server?.listening ? new Promise((resolve) => server.close(resolve)) : undefined;
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  hang(): void {
    this.#held = [];
    this.commandsWhileHung = 0;
  }

  resume(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    for (const write of held) write();
  }
}

(redisUp ? describe : describe.skip)(`on Redis at ${REDIS_URL}${redisUp ? '' : ' (SKIPPED: no Redis answers)'}`, () => {
  const prefix = `atrium-test-${randomBytes(6).toString('hex')}:rl`;
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  test('two API instances sharing one Redis enforce one budget together', async () => {
    // (A generous Redis timeout: on a loaded machine a slow answer would count as an outage here.)
    const env = { REDIS_URL, RATE_LIMIT_KEY_PREFIX: prefix, RATE_LIMIT_ANONYMOUS: '10/1m', RATE_LIMIT_LOGIN: '4/1m', RATE_LIMIT_REDIS_TIMEOUT_MS: '5000' };
    const [a, b] = await Promise.all([startServer(env), startServer(env)]);
    await until('both on Redis', async () => (await readiness(a.url)) === 'redis' && (await readiness(b.url)) === 'redis');
    const client = '198.51.100.70';
    const sent: number[] = [];
    for (let i = 0; i < 12; i++) sent.push((await query(i % 2 === 0 ? a.url : b.url, { client })).status);
    expect(sent).toEqual([...Array(10).fill(200), 429, 429]);
    expect(await redis.get(`${prefix}:anonymous:${client}`)).toBe('12');
    // The sign-in limit too: two logins through each, then neither takes another.
    const email = `${unique('shared')}@example.com`;
    const twice = { query: `mutation { ${loginField('x', email)} ${loginField('y', email)} }` };
    expect((await post(a.url, twice, { client: '198.51.100.71' })).status).toBe(200);
    expect((await post(b.url, twice, { client: '198.51.100.71' })).status).toBe(200);
    expect((await post(a.url, { query: `mutation { ${loginField('z', email)} }` }, { client: '198.51.100.71' })).status).toBe(429);
    expect((await post(b.url, { query: `mutation { ${loginField('z', email)} }` }, { client: '198.51.100.71' })).status).toBe(429);
  });

  test('Redis going away keeps the API up with per-process limits; the outage and the recovery are each logged once, and the shared count goes on', async () => {
    const proxy = new RedisProxy();
    await proxy.start();
    const log = capturedLog();
    // The outage here is a refused connection (at once); a generous timeout keeps a slow answer
    // on a loaded machine from counting as one.
    const server = await startServer({ REDIS_URL: `redis://127.0.0.1:${proxy.port}`, RATE_LIMIT_KEY_PREFIX: prefix, RATE_LIMIT_ANONYMOUS: '5/1m', RATE_LIMIT_REDIS_TIMEOUT_MS: '5000' }, log.logger);
    await until('on Redis', async () => (await readiness(server.url)) === 'redis');
    const client = '198.51.100.80';
    expect(await statuses(2, () => query(server.url, { client }))).toEqual([200, 200]);
    expect(await redis.get(`${prefix}:anonymous:${client}`)).toBe('2');

    await proxy.stop();
    // Every request is answered; this process counts on its own (5 from zero).
    expect(await statuses(8, () => query(server.url, { client }))).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    expect(await readiness(server.url)).toBe('memory (Redis unreachable)');
    await sleep(1000);
    expect(log.count(/Redis is unreachable/)).toBe(1);

    await proxy.start(proxy.port);
    await until('back on Redis', async () => {
      await query(server.url, { client: '198.51.100.81' });
      return (await readiness(server.url)) === 'redis';
    });
    expect(log.count(/Redis answers again/)).toBe(1);
    expect(log.count(/Redis is unreachable/)).toBe(1);
    // Shared again: Redis had 2 for this client, so 3 more pass.
    expect(await statuses(4, () => query(server.url, { client }))).toEqual([200, 200, 200, 429]);
    await proxy.stop();
  });

  test('a hung Redis (connected, never answering) costs one timeout per probe interval, not one per request; the API answers throughout', async () => {
    const proxy = new RedisProxy();
    await proxy.start();
    const log = capturedLog();
    const server = await startServer({ REDIS_URL: `redis://127.0.0.1:${proxy.port}`, RATE_LIMIT_KEY_PREFIX: prefix, RATE_LIMIT_ANONYMOUS: '100/1m', RATE_LIMIT_REDIS_TIMEOUT_MS: '200' }, log.logger);
    await until('on Redis', async () => (await readiness(server.url)) === 'redis');
    proxy.hang();
    expect(await statuses(10, () => query(server.url, { client: '198.51.100.90' }))).toEqual(Array(10).fill(200));
    expect(log.count(/Redis is unreachable/)).toBe(1);
    // One command reached the hung Redis (and timed out); maybe one probe more on a slow machine.
    expect(proxy.commandsWhileHung).toBeGreaterThanOrEqual(1);
    expect(proxy.commandsWhileHung).toBeLessThanOrEqual(2);
    proxy.resume();
    await until('back on Redis', async () => {
      await query(server.url, { client: '198.51.100.91' });
      return (await readiness(server.url)) === 'redis';
    });
    expect(log.count(/Redis answers again/)).toBe(1);
    await proxy.stop();
  });
});
