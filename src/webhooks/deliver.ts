// One webhook delivery attempt: a signed JSON POST over node:http(s), with a deadline, no
// redirects followed (a 3xx is a failed attempt), and — unless private networks are allowed —
// only to a public address: the host is resolved once and the connection goes to exactly the
// address that was checked (./destination.ts), so neither an internal address written in any of
// its forms nor a name pointing inside the network, now or a moment later, is reached.
// `beforeSend` runs after the host is resolved, right before the request is made: the worker's
// last check that it still holds the job (src/worker/fencing.ts); when it throws, nothing is sent
// and postWebhook rejects with its error.
import http from 'node:http';
import https from 'node:https';
import { pinnedLookup, resolveDestination, type Resolver } from './destination.ts';
import { SIGNATURE_HEADER, signWebhook } from './signature.ts';

export { isPrivateAddress } from './destination.ts';

export interface DeliveryOptions {
  timeoutMs: number;
  allowPrivateNetworks: boolean;
  /** How host names are resolved (default: the system's resolver); tests inject their own. */
  resolve?: Resolver;
}

export interface DeliveryResult {
  ok: boolean;
  /** The HTTP status, when the endpoint answered. */
  status?: number;
  /** Why it failed, for the delivery log. */
  error?: string;
  /** The address connected to (the one checked), once the host was resolved and allowed. */
  address?: string;
}

const USER_AGENT = 'Atrium-Webhooks/1.0';

export async function postWebhook(
  url: string,
  secret: string,
  body: string,
  headers: Record<string, string>,
  options: DeliveryOptions,
  beforeSend?: () => Promise<void>,
): Promise<DeliveryResult> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return { ok: false, error: `not a valid URL: ${url}` };
  }
  if (target.protocol !== 'https:' && target.protocol !== 'http:') return { ok: false, error: `not an http(s) URL: ${url}` };
  const started = Date.now();
  const destination = await resolveDestination(target.hostname, options);
  if (!destination.ok) return { ok: false, error: destination.error };
  const address = destination.address.address;
  await beforeSend?.();
  const timeoutMs = Math.max(1, options.timeoutMs - (Date.now() - started));
  const transport = target.protocol === 'https:' ? https : http;
  return new Promise<DeliveryResult>((resolve) => {
    const req = transport.request(
      target,
      {
        method: 'POST',
        // Connect to the checked address only (no second DNS query); the Host header, TLS SNI and
        // the certificate check keep the URL's hostname. A fresh connection per delivery (no pooled
        // socket opened for another check).
        lookup: pinnedLookup(destination.address) as never,
        agent: false,
        headers: {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(body),
          'User-Agent': USER_AGENT,
          [SIGNATURE_HEADER]: signWebhook(secret, body),
          ...headers,
        },
        timeout: timeoutMs,
      },
      (res) => {
        // Read (and drop) at most 64 KiB of the answer; only the status matters.
        let read = 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > 65_536) res.destroy();
        });
        const done = () => {
          const status = res.statusCode ?? 0;
          const ok = status >= 200 && status < 300;
          resolve(ok ? { ok, status, address } : { ok, status, address, error: `the endpoint answered ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}` });
        };
        res.on('end', done);
        res.on('close', done);
        res.on('error', done);
      },
    );
    const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)), timeoutMs);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ ok: false, address, error: error.message || error.code || 'connection failed' }));
    req.on('close', () => clearTimeout(deadline));
    req.end(body);
  });
}
