// One webhook delivery attempt: a signed JSON POST over node:http(s), with a deadline, no
// redirects followed, and (unless allowed) no loopback, private or link-local destinations —
// checked on the address actually connected to, so DNS cannot point a public name inside.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { SIGNATURE_HEADER, signWebhook } from './signature.ts';

export interface DeliveryOptions {
  timeoutMs: number;
  allowPrivateNetworks: boolean;
}

export interface DeliveryResult {
  ok: boolean;
  /** The HTTP status, when the endpoint answered. */
  status?: number;
  /** Why it failed, for the delivery log. */
  error?: string;
}

const USER_AGENT = 'Atrium-Webhooks/1.0';

/** Is `address` somewhere a webhook must not reach by default (this host, a private network)? */
export function isPrivateAddress(address: string): boolean {
  if (net.isIPv4(address)) {
    const [a, b] = address.split('.').map(Number) as [number, number];
    return a === 0 || a === 10 || a === 127 || (a === 100 && b >= 64 && b <= 127) || (a === 169 && b === 254)
      || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || a >= 224;
  }
  const v6 = address.toLowerCase();
  if (v6.startsWith('::ffff:')) return isPrivateAddress(v6.slice(7));
  return v6 === '::' || v6 === '::1' || v6.startsWith('fc') || v6.startsWith('fd') || v6.startsWith('fe80') || v6.startsWith('ff');
}

function guardedLookup(allowPrivate: boolean) {
  return (hostname: string, options: object, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '');
      const list = addresses as LookupAddress[];
      const allowed = allowPrivate ? list : list.filter((a) => !isPrivateAddress(a.address));
      if (allowed.length === 0) {
        const refused = Object.assign(new Error(`${hostname} resolves only to private or loopback addresses, which webhooks may not reach`), { code: 'EPRIVATE' });
        return callback(refused, '');
      }
      if ((options as { all?: boolean }).all) return callback(null, allowed);
      return callback(null, allowed[0]!.address, allowed[0]!.family);
    });
  };
}

export async function postWebhook(
  url: string,
  secret: string,
  body: string,
  headers: Record<string, string>,
  options: DeliveryOptions,
): Promise<DeliveryResult> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return { ok: false, error: `not a valid URL: ${url}` };
  }
  if (!options.allowPrivateNetworks && net.isIP(target.hostname.replace(/^\[|\]$/g, '')) && isPrivateAddress(target.hostname.replace(/^\[|\]$/g, ''))) {
    return { ok: false, error: `${target.hostname} is a private or loopback address, which webhooks may not reach` };
  }
  const transport = target.protocol === 'https:' ? https : http;
  return new Promise<DeliveryResult>((resolve) => {
    const req = transport.request(
      target,
      {
        method: 'POST',
        lookup: guardedLookup(options.allowPrivateNetworks) as never,
        headers: {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(body),
          'User-Agent': USER_AGENT,
          [SIGNATURE_HEADER]: signWebhook(secret, body),
          ...headers,
        },
        timeout: options.timeoutMs,
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
          resolve(ok ? { ok, status } : { ok, status, error: `the endpoint answered ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}` });
        };
        res.on('end', done);
        res.on('close', done);
        res.on('error', done);
      },
    );
    const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ ok: false, error: error.message || error.code || 'connection failed' }));
    req.on('close', () => clearTimeout(deadline));
    req.end(body);
  });
}
