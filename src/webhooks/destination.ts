// Where a webhook may connect. Unless WEBHOOK_ALLOW_PRIVATE_NETWORKS is on (development), only
// to public unicast addresses: never loopback, private, link-local, unique-local, unspecified,
// multicast, broadcast, carrier-grade NAT, reserved or other special-purpose ranges — decided by
// ipaddr.js's range tables (a maintained library, not a hand list) — nor IPv6 forms that embed
// such an IPv4 address: IPv4-mapped (::ffff:127.0.0.1, also written ::ffff:7f00:1),
// IPv4-translated, IPv4-compatible (::127.0.0.1), NAT64 (64:ff9b::/96; the local-use
// 64:ff9b:1::/48 is refused outright), 6to4 and Teredo (server and client).
//
// The host is resolved once, here; every address it resolves to must pass; the request then
// connects to exactly the address checked (a lookup that answers only that address), so a name
// that answers public now and private a moment later (DNS rebinding) cannot move the connection.
// TLS still verifies the certificate against, and sends SNI for, the URL's hostname.
import { promises as dns } from 'node:dns';
import net from 'node:net';
import ipaddr from 'ipaddr.js';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to its addresses (tests inject their own). */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (hostname) =>
  (await dns.lookup(hostname, { all: true, verbatim: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));

const RANGE_NAMES: Record<string, string> = {
  unspecified: 'the unspecified address',
  broadcast: 'the broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address',
  loopback: 'a loopback address',
  carrierGradeNat: 'a carrier-grade NAT address',
  private: 'a private address',
  uniqueLocal: 'a unique-local address',
  reserved: 'a reserved address',
};
const described = (range: string) => RANGE_NAMES[range] ?? `a special-purpose address (${range})`;

const v4 = (high: number, low: number) => ipaddr.fromByteArray([high >> 8, high & 0xff, low >> 8, low & 0xff]) as ipaddr.IPv4;

/** The IPv4 addresses an IPv6 address embeds, by the form that embeds them; 'refuse' for forms never allowed. */
function embeddedIPv4(ip: ipaddr.IPv6, range: string): { form: string; addresses: ipaddr.IPv4[] } | 'refuse' | undefined {
  const p = ip.parts;
  switch (range) {
    case 'ipv4Mapped':
      return { form: 'IPv4-mapped', addresses: [ip.toIPv4Address()] };
    case 'rfc6145':
      return { form: 'IPv4-translated', addresses: [v4(p[6], p[7])] };
    case 'rfc6052':
      // 64:ff9b::/96 carries the address in its last 32 bits; 64:ff9b:1::/48 is for local use.
      return p[2] === 0 && p[3] === 0 && p[4] === 0 && p[5] === 0 ? { form: 'NAT64', addresses: [v4(p[6], p[7])] } : 'refuse';
    case '6to4':
      return { form: '6to4', addresses: [v4(p[1], p[2])] };
    case 'teredo':
      // The Teredo server, and the client's public address (stored inverted).
      return { form: 'Teredo', addresses: [v4(p[2], p[3]), v4(~p[6] & 0xffff, ~p[7] & 0xffff)] };
    case 'unicast':
      // IPv4-compatible (deprecated): ::a.b.c.d.
      return p.slice(0, 6).every((x) => x === 0) ? { form: 'IPv4-compatible', addresses: [v4(p[6], p[7])] } : undefined;
    default:
      return undefined;
  }
}

/**
 * Why `address` is not one a webhook may reach — e.g. "a loopback address", "an IPv4-mapped form
 * of a private address (10.0.0.1)" — or undefined for a public unicast address.
 */
export function nonPublicReason(address: string): string | undefined {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    // An IPv6 address written with a dotted tail is first put in canonical form by the URL parser
    // (ipaddr.js 2.5 reads ::127.0.0.1, IPv4-compatible, as IPv4-mapped ::ffff:127.0.0.1).
    ip = ipaddr.parse(address.includes(':') && address.includes('.') ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address);
  } catch {
    return 'not an IP address';
  }
  const range = ip.range();
  if (ip.kind() === 'ipv4') return range === 'unicast' ? undefined : described(range);
  const embedded = embeddedIPv4(ip as ipaddr.IPv6, range);
  if (embedded === 'refuse') return `a special-purpose address (${range}, local-use prefix)`;
  if (embedded) {
    for (const inner of embedded.addresses) {
      const innerRange = inner.range();
      if (innerRange !== 'unicast') return `an ${embedded.form} form of ${described(innerRange)} (${inner.toString()})`;
    }
    return undefined;
  }
  return range === 'unicast' ? undefined : described(range);
}

/** True when webhooks must not reach `address` unless private networks are allowed. */
export const isPrivateAddress = (address: string): boolean => nonPublicReason(address) !== undefined;

/** A host written as an IP address in a URL (`127.0.0.1`, `[::1]`), without brackets; undefined for a name. */
export function literalAddress(hostname: string): string | undefined {
  const bare = hostname.replace(/^\[|\]$/g, '');
  return net.isIP(bare) ? bare : undefined;
}

/** Why a URL's host is refused without resolving anything (an IP literal, or localhost), if it is. */
export function refusedLiteralHost(hostname: string): string | undefined {
  const literal = literalAddress(hostname);
  if (literal) {
    const reason = nonPublicReason(literal);
    return reason && `${literal} is ${reason}`;
  }
  const name = hostname.toLowerCase().replace(/\.$/, '');
  return name === 'localhost' || name.endsWith('.localhost') ? `${hostname} is this machine` : undefined;
}

export type Destination = { ok: true; address: ResolvedAddress } | { ok: false; error: string };

/**
 * The one address a request to `hostname` connects to: the literal itself, or the first address
 * the name resolves to — refused unless every address it resolves to is public (or private
 * networks are allowed). Resolution is bounded by `timeoutMs`.
 */
export async function resolveDestination(
  hostname: string,
  options: { allowPrivateNetworks: boolean; resolve?: Resolver; timeoutMs: number },
): Promise<Destination> {
  const literal = literalAddress(hostname);
  if (literal) {
    const reason = options.allowPrivateNetworks ? undefined : nonPublicReason(literal);
    if (reason) return { ok: false, error: `${literal} is ${reason}; webhooks reach only public addresses` };
    return { ok: true, address: { address: literal, family: net.isIPv6(literal) ? 6 : 4 } };
  }
  let addresses: ResolvedAddress[];
  let timer: NodeJS.Timeout | undefined;
  try {
    addresses = await Promise.race([
      (options.resolve ?? systemResolver)(hostname),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no DNS answer within ${options.timeoutMs} ms`)), options.timeoutMs);
      }),
    ]);
  } catch (error) {
    // Whether a name exists and where it points inside the network is not told: the same
    // answer as a name that resolves to a private address (below), when those are refused.
    if (!options.allowPrivateNetworks) return { ok: false, error: `${hostname} does not resolve to a public address; webhooks reach only public addresses` };
    return { ok: false, error: `${hostname} could not be resolved: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` };
  } finally {
    clearTimeout(timer);
  }
  if (addresses.length === 0 || (!options.allowPrivateNetworks && addresses.some((a) => isPrivateAddress(a.address)))) {
    return { ok: false, error: `${hostname} does not resolve to a public address; webhooks reach only public addresses` };
  }
  return { ok: true, address: addresses[0]! };
}

/** A `lookup` for node:net that answers only `pinned`: the connection goes where the check was made, with no second DNS query. */
export function pinnedLookup(pinned: ResolvedAddress) {
  return (_hostname: string, options: { all?: boolean }, callback: (err: NodeJS.ErrnoException | null, address: string | Array<{ address: string; family: number }>, family?: number) => void): void => {
    if (options?.all) callback(null, [{ address: pinned.address, family: pinned.family }]);
    else callback(null, pinned.address, pinned.family);
  };
}
