// Outbound requests that cannot reach inside (src/webhooks/destination.ts, deliver.ts,
// src/http/webhook-urls.ts): with WEBHOOK_ALLOW_PRIVATE_NETWORKS off, webhooks reach only public
// addresses — every internal range and every IPv6 form embedding one refused, literals and names
// alike — the host is resolved once and the connection goes to exactly the checked address (DNS
// rebinding), TLS keeps the URL's hostname for SNI and the certificate check, and redirects are
// not followed. Endpoints at internal IP literals are refused when created or changed, and a
// delivery to one, made anyway, never leaves.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import type { JobHelpers } from 'graphile-worker';
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { nonPublicReason, refusedLiteralHost, resolveDestination, type Resolver } from '../src/webhooks/destination.ts';
import { postWebhook, type DeliveryOptions } from '../src/webhooks/deliver.ts';
import { deliverWebhook } from '../src/worker/tasks/deliver_webhook.ts';
import { errorCode, gql, registerAndConfirm, startTestApp } from './support/app.ts';
import { asVisitor, closePools, pool, sessionOf, unique } from './support/db.ts';
import { oneTenant, type Tenant } from './support/fixtures.ts';
import { inRequest } from './support/outbox.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';

let receiver: Receiver;
let port: number;
beforeAll(async () => {
  receiver = await startReceiver();
  port = Number(new URL(receiver.url('/')).port);
});
afterAll(async () => {
  await receiver?.close();
  await closePools();
});

const REFUSE: DeliveryOptions = { timeoutMs: 1000, allowPrivateNetworks: false };
const ALLOW: DeliveryOptions = { timeoutMs: 1000, allowPrivateNetworks: true };
/** A resolver that answers `answers` in turn (the last one from then on) and counts its calls. */
function scriptedResolver(...answers: string[][]): Resolver & { calls: number } {
  const resolver = Object.assign(
    async (_hostname: string) => {
      const answer = answers[Math.min(resolver.calls, answers.length - 1)]!;
      resolver.calls += 1;
      return answer.map((address) => ({ address, family: address.includes(':') ? (6 as const) : (4 as const) }));
    },
    { calls: 0 },
  );
  return resolver;
}

describe('which addresses a webhook may reach (ipaddr.js ranges, IPv6 forms decoded)', () => {
  test.each([
    ['127.0.0.1', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['0.0.0.0', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['192.0.2.1', 'reserved'],
    ['240.0.0.1', 'reserved'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['fc00::1', 'unique-local'],
    ['fd12:3456::1', 'unique-local'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'IPv4-mapped form of a loopback address (127.0.0.1)'],
    ['::ffff:7f00:1', 'IPv4-mapped form of a loopback address (127.0.0.1)'],
    ['::ffff:a00:1', 'IPv4-mapped form of a private address (10.0.0.1)'],
    ['::ffff:a9fe:a9fe', 'IPv4-mapped form of a link-local address (169.254.169.254)'],
    ['::127.0.0.1', 'IPv4-compatible form of a loopback address'],
    ['::7f00:1', 'IPv4-compatible form of a loopback address'],
    ['::ffff:0:7f00:1', 'IPv4-translated form of a loopback address'],
    ['64:ff9b::7f00:1', 'NAT64 form of a loopback address'],
    ['64:ff9b::a9fe:a9fe', 'NAT64 form of a link-local address (169.254.169.254)'],
    ['64:ff9b:1::a00:1', 'local-use prefix'],
    ['2002:7f00:1::1', '6to4 form of a loopback address'],
    ['2002:c0a8:101::1', '6to4 form of a private address (192.168.1.1)'],
    ['2001:0:a00:1::1', 'Teredo form of a private address (10.0.0.1)'], // the Teredo server
    ['2001:0:4136:e378:8000:63bf:f5ff:fffe', 'Teredo form of a private address (10.0.0.1)'], // the client (inverted)
    ['2001:db8::1', 'reserved'],
  ])('%s is refused: %s', (address, reason) => {
    expect(nonPublicReason(address)).toContain(reason);
  });

  test.each(['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'])('%s is public', (address) => {
    expect(nonPublicReason(address)).toBeUndefined();
  });

  test('the URL forms of an internal host are caught without DNS: decimal, hex, bracketed IPv6, localhost names', () => {
    const hostOf = (url: string) => new URL(url).hostname;
    expect(hostOf('http://2130706433/')).toBe('127.0.0.1');
    for (const url of ['http://2130706433/', 'http://0x7f.0.0.1/', 'http://127.1/', 'http://[::ffff:127.0.0.1]/', 'http://[::1]/', 'http://localhost./', 'http://hooks.localhost/', 'http://LOCALHOST/']) {
      expect({ url, refused: refusedLiteralHost(hostOf(url)) !== undefined }).toEqual({ url, refused: true });
    }
    expect(refusedLiteralHost(hostOf('http://hooks.example.com/'))).toBeUndefined(); // names are checked at delivery
    expect(refusedLiteralHost(hostOf('http://[2606:4700::1111]/'))).toBeUndefined();
  });
});

describe('delivery with private networks refused (postWebhook)', () => {
  test('an internal address written in any form is refused before connecting', async () => {
    for (const host of ['127.0.0.1', 'localhost', '[::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '2130706433', '0x7f.0.0.1', '[::127.0.0.1]', '[64:ff9b::7f00:1]']) {
      const result = await postWebhook(`http://${host}:${port}/never`, 'whsec_x', '{}', {}, REFUSE);
      expect({ host, ok: result.ok, error: result.error }).toEqual({ host, ok: false, error: expect.stringMatching(/webhooks reach only public addresses/) });
    }
    expect(receiver.requests('/never')).toEqual([]);
  });

  test('a name resolving to an internal address is refused; so is one resolving to public and internal ones, and one that does not resolve, with the same message', async () => {
    const refusedBy = async (resolve: Resolver) => (await postWebhook(`http://hooks.example.test:${port}/never`, 'whsec_x', '{}', {}, { ...REFUSE, resolve })).error;
    const internal = await refusedBy(scriptedResolver(['127.0.0.1']));
    expect(internal).toBe('hooks.example.test does not resolve to a public address; webhooks reach only public addresses');
    expect(await refusedBy(scriptedResolver(['::ffff:10.0.0.1']))).toBe(internal);
    expect(await refusedBy(scriptedResolver(['93.184.216.34', '10.0.0.1']))).toBe(internal);
    expect(await refusedBy(async () => Promise.reject(Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' })))).toBe(internal);
    expect(receiver.requests('/never')).toEqual([]);
  });

  test('DNS rebinding: the host is resolved once, and the connection goes to the address that was checked', async () => {
    // Public at the check, then inside: the attempt goes to the public address (unreachable from
    // here, so it fails), never to this machine, and the resolver is not asked again.
    const rebinding = scriptedResolver(['93.184.216.34'], ['127.0.0.1']);
    const result = await postWebhook(`http://rebind.example.test:${port}/rebound`, 'whsec_x', '{}', {}, { timeoutMs: 500, allowPrivateNetworks: false, resolve: rebinding });
    expect(result).toMatchObject({ ok: false, address: '93.184.216.34' });
    expect(rebinding.calls).toBe(1);
    expect(receiver.requests('/rebound')).toEqual([]);
    // The same with private networks allowed: a second look-up would get 127.0.0.2, where nothing listens.
    const moving = scriptedResolver(['127.0.0.1'], ['127.0.0.2']);
    const pinned = await postWebhook(`http://moving.example.test:${port}/pinned`, 'whsec_x', '{}', {}, { ...ALLOW, resolve: moving });
    expect(pinned).toEqual({ ok: true, status: 200, address: '127.0.0.1' });
    expect(moving.calls).toBe(1);
    expect(receiver.requests('/pinned')).toHaveLength(1);
    expect(receiver.requests('/pinned')[0].headers.host).toBe(`moving.example.test:${port}`); // the URL's host, not the address
  });

  test('redirects are not followed: a 3xx answer is a failed attempt, and its Location is not visited', async () => {
    receiver.answer('/moved', { status: 302, location: receiver.url('/redirect-target') });
    const result = await postWebhook(receiver.url('/moved'), 'whsec_x', '{}', {}, ALLOW);
    expect(result).toMatchObject({ ok: false, status: 302, error: 'the endpoint answered 302 Found' });
    expect(receiver.requests('/moved')).toHaveLength(1);
    await sleep(200);
    expect(receiver.requests('/redirect-target')).toEqual([]);
  });

  describe('https: SNI and the certificate check keep the URL\'s hostname while connecting to the pinned address', () => {
    // A self-signed certificate for hooks.example.test (tests/support/tls/, test-only), trusted
    // by this process while these tests run.
    const dir = path.join(import.meta.dirname, 'support', 'tls');
    const cert = fs.readFileSync(path.join(dir, 'hooks.example.test.crt'), 'utf8');
    const key = fs.readFileSync(path.join(dir, 'hooks.example.test.key'), 'utf8');
    let server: https.Server;
    let tlsPort: number;
    const servernames: Array<string | false | null> = [];
    const defaultCAs = tls.getCACertificates('default');

    beforeAll(async () => {
      server = https.createServer({ cert, key }, (_req, res) => res.writeHead(204).end());
      server.on('secureConnection', (socket: tls.TLSSocket) => servernames.push(socket.servername));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      tlsPort = (server.address() as AddressInfo).port;
      tls.setDefaultCACertificates([...defaultCAs, cert]);
    });
    afterAll(async () => {
      tls.setDefaultCACertificates(defaultCAs);
      await new Promise((resolve) => server.close(resolve));
    });

    test('the certificate of the URL\'s hostname is accepted at the pinned address, with SNI for that hostname', async () => {
      const result = await postWebhook(`https://hooks.example.test:${tlsPort}/`, 'whsec_x', '{}', {}, { ...ALLOW, resolve: scriptedResolver(['127.0.0.1']) });
      expect(result).toEqual({ ok: true, status: 204, address: '127.0.0.1' });
      expect(servernames.at(-1)).toBe('hooks.example.test');
    });

    test('another hostname pointing at the same address is refused by the certificate check', async () => {
      const result = await postWebhook(`https://other.example.test:${tlsPort}/`, 'whsec_x', '{}', {}, { ...ALLOW, resolve: scriptedResolver(['127.0.0.1']) });
      expect(result.ok).toBe(false);
      expect(result.error).toMatch(/does not match certificate's altnames|altname/i);
    });
  });

  test('resolving and connecting share one deadline', async () => {
    const slow: Resolver = () => new Promise(() => undefined); // never answers
    const started = Date.now();
    const result = await postWebhook(`http://slow.example.test:${port}/`, 'whsec_x', '{}', {}, { timeoutMs: 300, allowPrivateNetworks: true, resolve: slow });
    expect(result).toMatchObject({ ok: false, error: expect.stringMatching(/could not be resolved: no DNS answer within 300 ms/) });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect((await resolveDestination('slow.example.test', { timeoutMs: 300, allowPrivateNetworks: false, resolve: slow })).ok).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

describe('endpoints and deliveries with private networks refused (WEBHOOK_ALLOW_PRIVATE_NETWORKS=false)', () => {
  let t: Tenant;
  beforeAll(async () => {
    t = await oneTenant('ssrf');
  }, 60_000);

  test('an endpoint at an internal IP literal is refused when created or changed (WEBHOOK_URL_NOT_ALLOWED), and nothing is written', async () => {
    const app = await startTestApp({ env: { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'false' } });
    try {
      const url = app.url!;
      let token = (await registerAndConfirm(url, { email: `${unique('ssrf')}@example.com`, name: 'SSRF Owner' })).accessToken;
      const orgId = (await gql<any>(url, 'mutation { createOrganization(input: { name: "SSRF Studio" }) { organization { rowId } } }', {}, token)).data.createOrganization.organization.rowId;
      token = (await gql<any>(url, 'mutation($o: UUID) { switchOrganization(input: { organizationId: $o }) { accessToken } }', { o: orgId }, token)).data.switchOrganization.accessToken;
      const create = (u: string) => gql<any>(url, 'mutation($u: String!) { createWebhookEndpoint(input: { url: $u, eventTypes: ["invoice.paid"] }) { webhookEndpointSecret { endpointId } } }', { u }, token);
      for (const internal of [`http://[::ffff:127.0.0.1]:${port}/`, `http://[::ffff:7f00:1]:${port}/`, 'http://169.254.169.254/latest/meta-data', 'http://2130706433/', 'http://localhost:8080/', 'https://[64:ff9b::a00:1]/']) {
        const res = await create(internal);
        expect({ internal, code: errorCode(res), status: res.errors![0].extensions?.httpStatus }).toEqual({ internal, code: 'WEBHOOK_URL_NOT_ALLOWED', status: 422 });
      }
      expect((await pool('owner').query('select 1 from app_public.webhook_endpoints where organization_id = $1', [orgId])).rowCount).toBe(0);
      const created = await create('https://hooks.example.com/atrium');
      expect(created.errors).toBeUndefined();
      const id = created.data.createWebhookEndpoint.webhookEndpointSecret.endpointId;
      const update = await gql(url, 'mutation($o: UUID!, $id: UUID!, $u: String!) { updateWebhookEndpoint(input: { organizationId: $o, rowId: $id, patch: { url: $u } }) { webhookEndpoint { url } } }', { o: orgId, id, u: 'http://[fd00::1]/' }, token);
      expect(errorCode(update)).toBe('WEBHOOK_URL_NOT_ALLOWED');
      expect((await pool('owner').query('select url from app_public.webhook_endpoints where id = $1', [id])).rows).toEqual([{ url: 'https://hooks.example.com/atrium' }]);
    } finally {
      await app.stop();
    }
  });

  test('a delivery to an IPv4-mapped loopback endpoint made anyway (straight in SQL) never leaves: the attempt is logged as refused', async () => {
    // The endpoint and its ping, committed with the ping's job taken out of the queue in the same
    // transaction (the other test files' workers allow this machine); then the deliver_webhook
    // task runs it as a production worker would.
    const { result: delivery, done } = await inRequest(sessionOf(t.admin, t.orgId), async (c) => {
      const { rows } = await c.query('select endpoint_id from app_public.create_webhook_endpoint($1, $2)', [`http://[::ffff:127.0.0.1]:${port}/mapped`, ['invoice.paid']]);
      const ping = (await c.query('select id from app_public.send_test_webhook($1)', [rows[0].endpoint_id])).rows[0].id as string;
      await c.query('reset role');
      await c.query('delete from graphile_worker._private_jobs where key = $1', [`deliver_webhook:${ping}`]);
      return ping;
    });
    await done(true);
    const helpers = {
      job: { id: '-1', key: `deliver_webhook:${delivery}`, task_identifier: 'deliver_webhook', attempts: 1, max_attempts: 10 },
      logger: { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined },
      withPgClient: async <T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
        const client = await pool('worker').connect();
        try {
          return await fn(client);
        } finally {
          client.release();
        }
      },
    } as unknown as JobHelpers;
    await expect(deliverWebhook(REFUSE)({ organization_id: t.orgId, delivery_id: delivery }, helpers)).rejects.toThrow(/IPv4-mapped form of a loopback address/);
    const row = (await asVisitor(sessionOf(t.admin, t.orgId), (c) => c.query('select status, attempts, last_error from app_public.webhook_deliveries where id = $1', [delivery]))).rows[0];
    expect(row).toEqual({ status: 'pending', attempts: 1, last_error: expect.stringMatching(/IPv4-mapped form of a loopback address.*webhooks reach only public addresses/) });
    expect(receiver.requests('/mapped')).toEqual([]);
  });
});
