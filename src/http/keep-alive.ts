// Idle keep-alive connections stay open longer than the clients and load balancers in front of
// the server keep them (AWS ALB: 60 s; undici, Node's fetch: 4 s), so that the client always
// closes first. With Node's default of 5 s, a client could reuse a connection the server was
// closing at that moment and get ECONNRESET (seen under load), or a load balancer answer 502.
import type { Server } from 'node:http';

/** How long a server keeps an idle keep-alive connection open (ms). */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

export function tuneKeepAlive(server: Server): void {
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  // Node requires the headers timeout to be longer than the keep-alive timeout.
  server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1_000;
}
