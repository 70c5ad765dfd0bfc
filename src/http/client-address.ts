// Who is calling: the client's network address as the API sees it, in the form the rate limits
// (src/http/rate-limits.ts) and the database's sign-in throttle (app.client_address,
// app_private.login) key on.
//
// The address is Express's `req.ip`: the socket's peer, or — only with TRUST_PROXY — the address
// the trusted proxies name in X-Forwarded-For (README, "Rate limits"). Without TRUST_PROXY a
// client-supplied X-Forwarded-For changes nothing.
//
// IPv4 addresses are used whole; an IPv4-mapped IPv6 address (::ffff:203.0.113.7, what a server
// listening on :: sees for IPv4 clients) is the IPv4 address. IPv6 addresses are cut to their /64:
// one subscriber (a home, an office, a cloud VM) gets at least a /64 and can use any of its 2^64
// addresses, so a per-address key would give one client unlimited budgets.
import type { Request } from 'express';
import ipaddr from 'ipaddr.js';

/** `203.0.113.7`, `2001:db8:1:2::/64`, or `unknown` (no address: a socket already closed). */
export function clientAddressOf(ip: string | undefined): string {
  if (!ip || !ipaddr.isValid(ip)) return 'unknown';
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return address.toString();
  const prefix = ipaddr.IPv6.networkAddressFromCIDR(`${address.toNormalizedString()}/64`);
  return `${prefix.toString()}/64`;
}

export function clientAddress(req: Request): string {
  return clientAddressOf(req.ip);
}
