// At most GRAPHQL_MAX_CONCURRENT requests in progress; a bounded queue waits its turn for a
// bounded time; beyond it, 503 SERVICE_UNAVAILABLE with Retry-After (src/http/concurrency.ts).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, test } from '@jest/globals';
import express from 'express';
import { concurrencyGate } from '../src/http/concurrency.ts';

let server: http.Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

/** A server behind the gate whose handler answers when `release()` is called. */
async function gated(limits: { maxConcurrent: number; maxQueued: number; queueTimeoutMs: number }) {
  const gate = concurrencyGate(limits);
  const waiting: Array<() => void> = [];
  const app = express();
  app.use(gate.middleware);
  app.use((_req, res) => waiting.push(() => res.json({ ok: true })));
  server = http.createServer(app);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const release = async (n: number) => {
    while (waiting.length < n) await new Promise((r) => setTimeout(r, 5));
    for (const answer of waiting.splice(0, n)) answer();
  };
  return { gate, url, release, inHandler: () => waiting.length };
}

const call = (url: string) => fetch(url, { method: 'POST' }).then(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: (await r.json()) as { errors: Array<{ message: string }> } }));

test('requests beyond the limit wait their turn; beyond the queue they are refused with 503 and Retry-After', async () => {
  const { gate, url, release } = await gated({ maxConcurrent: 2, maxQueued: 1, queueTimeoutMs: 30_000 });
  const first = [call(url), call(url)];
  while (gate.stats().active < 2) await new Promise((r) => setTimeout(r, 5));
  const third = call(url); // queued
  while (gate.stats().queued < 1) await new Promise((r) => setTimeout(r, 5));
  const fourth = await call(url); // the queue is full
  expect(fourth).toEqual({ status: 503, retryAfter: '1', body: { errors: [{ message: expect.stringContaining('busy'), extensions: { code: 'SERVICE_UNAVAILABLE', httpStatus: 503 } }] } });
  expect(gate.stats()).toMatchObject({ active: 2, queued: 1 });
  await release(2);
  expect((await Promise.all(first)).map((r) => r.status)).toEqual([200, 200]);
  await release(1); // the queued one got its turn
  expect((await third).status).toBe(200);
  expect(gate.stats()).toMatchObject({ active: 0, queued: 0, refused: 1 });
});

test('a request that waits longer than the queue timeout is refused', async () => {
  const { gate, url, release } = await gated({ maxConcurrent: 1, maxQueued: 5, queueTimeoutMs: 200 });
  const first = call(url);
  while (gate.stats().active < 1) await new Promise((r) => setTimeout(r, 5));
  const late = await call(url);
  expect(late.status).toBe(503);
  expect(late.body.errors[0].message).toContain('no turn within 200 ms');
  await release(1);
  expect((await first).status).toBe(200);
  expect(gate.stats()).toMatchObject({ active: 0, queued: 0 });
});
