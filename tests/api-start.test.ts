// The API's start on a database that does not answer at first (src/http/postgraphile.ts,
// createPostGraphile): PostGraphile reads the schema once and keeps the result, so a read that
// failed because a connection could not be made (on a loaded machine, during a restart) would
// leave every later request failing. The read is made again, with growing pauses, until it
// succeeds or the patience runs out; then the start fails with the database's error.
// The database is reached through a gate: a TCP proxy that cuts every connection while shut.
import { afterAll, expect, test } from '@jest/globals';
import net from 'node:net';
import pino from 'pino';
import { createTokenService } from '../src/auth/tokens.ts';
import { ErrorCatalog } from '../src/http/errors.ts';
import { createApiPool, createPostGraphile, makePreset } from '../src/http/postgraphile.ts';
import { createStorage } from '../src/storage/index.ts';
import { closePools, testConfig, urlFor } from './support/db.ts';

afterAll(closePools);

/** A proxy to the test database that cuts each connection while `open` is false. */
async function gate(): Promise<{ url: string; cut: () => number; open: () => void; close: () => Promise<void> }> {
  const target = new URL(urlFor('authenticator'));
  let open = false;
  let cut = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    if (!open) {
      cut++;
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    cut: () => cut,
    open: () => void (open = true),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** createPostGraphile as the API calls it, with the pool behind `url`; its log lines kept. */
async function build(url: string, patienceMs: number) {
  const config = testConfig({ DATABASE_URL: urlFor('owner') });
  const lines: Array<Record<string, any>> = [];
  const log = pino({ level: 'info' }, { write: (text: string) => void lines.push(JSON.parse(text)) });
  const pool = createApiPool({ authenticatorUrl: url }, log as never);
  const storage = await createStorage({ ...config.files, driver: 'local' }, { publicUrl: config.publicUrl, jwtSecret: process.env.JWT_SECRET! });
  const errors = await ErrorCatalog.load(urlFor('owner'));
  const tokens = createTokenService(process.env.JWT_SECRET!, 900);
  const preset = makePreset(config, pool, tokens, errors, log as never, storage);
  const close = async () => {
    await pool.end();
    await storage.close();
  };
  return { lines, close, made: createPostGraphile(preset, log as never, patienceMs) };
}

test('a database that cuts the first connections: the schema is read again until it answers, each failure logged at warn level', async () => {
  const door = await gate();
  const { lines, close, made } = await build(door.url, 60_000);
  try {
    const opened = (async () => {
      while (door.cut() < 2) await new Promise((resolve) => setTimeout(resolve, 20));
      door.open();
    })();
    const pgl = await made;
    await opened;
    const schema = await pgl.getSchema();
    expect(schema.getQueryType()?.getFields().clientCompanies).toBeDefined();
    await pgl.release();
    const retries = lines.filter((l) => l.msg === 'the database did not answer while the GraphQL schema was read; trying again');
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(retries.every((l) => l.level === 40 && typeof l.error === 'string' && l.retryInMs > 0)).toBe(true);
    expect(JSON.stringify(lines)).not.toContain(new URL(urlFor('authenticator')).password || '\u0000');
  } finally {
    await close();
    await door.close();
  }
}, 90_000);

test('a database still silent when the patience runs out: the start fails with its error', async () => {
  const door = await gate();
  const { lines, close, made } = await build(door.url, 1_500);
  try {
    await expect(made).rejects.toThrow(/Connection terminated|ECONNRESET|timeout/);
    expect(door.cut()).toBeGreaterThanOrEqual(2);
    expect(lines.filter((l) => l.msg?.startsWith('the database did not answer')).length).toBeGreaterThanOrEqual(1);
  } finally {
    await close();
    await door.close();
  }
}, 60_000);
