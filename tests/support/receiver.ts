// A real local HTTP server that receives webhooks: records every request (headers and raw body)
// and answers as told per path: a status code, 'hang' (never answers), a status after a delay, or
// a redirect (a 3xx status with a Location).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type Answer = number | 'hang' | { status: number; delayMs: number } | { status: number; location: string };

export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: any;
}

export interface Receiver {
  url(path: string): string;
  /** How to answer requests to `path` from now on (default 200). */
  answer(path: string, how: Answer): void;
  requests(path?: string): Received[];
  /** Waits until `path` has received `count` requests (fails after `timeoutMs`). */
  waitFor(path: string, count: number, timeoutMs?: number): Promise<Received[]>;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const answers = new Map<string, Answer>();
  const hanging = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      const path = req.url ?? '/';
      received.push({ path, headers: req.headers, body, json });
      const how = answers.get(path) ?? 200;
      if (how === 'hang') {
        hanging.add(res);
        return;
      }
      const reply = (status: number, headers: Record<string, string> = {}) => res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(status < 300 ? 'ok' : 'nope');
      if (typeof how === 'number') reply(how);
      else if ('location' in how) reply(how.status, { location: how.location });
      else setTimeout(() => reply(how.status), how.delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const requests = (path?: string) => received.filter((r) => path === undefined || r.path === path);
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    answer: (path, how) => void answers.set(path, how),
    requests,
    async waitFor(path, count, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (requests(path).length < count) {
        if (Date.now() > deadline) throw new Error(`${path} received ${requests(path).length} of ${count} requests within ${timeoutMs} ms`);
        await sleep(25);
      }
      return requests(path);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
