// An S3-compatible store for tests: s3rver (in process, a temporary folder, the bucket made at
// start, silent) behind a small HTTP front that verifies SigV4 signatures.
//
// Why the front: s3rver 3.7.1 does not check SigV4 signatures at all (lib/middleware/
// authentication.js: "Signature version 4 calculation is unimplemeneted"; any signature passes),
// while AWS S3 and MinIO do, and the s3 driver's guarantees (a URL is bound to one key, size and
// content type) rest entirely on that check. The front computes the signature itself from the
// AWS documentation (canonical request, string to sign, signing key; node:crypto only, not the
// SDK's signer, so a signer bug cannot hide behind the same bug here), refuses a mismatch or an
// expired URL with S3's 403 and error XML, and streams everything else on to s3rver.
// https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: Record<string, unknown>) => S3rverInstance;
// s3rver is CommonJS without type declarations.
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;

export interface S3Harness {
  /** The verifying front (what the driver and the browser talk to). */
  endpoint: string;
  /** s3rver itself, which accepts any SigV4 signature: only for proving that the front is what refuses. */
  unverifiedEndpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  stop(): Promise<void>;
}

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - . _ ~ as %XX (upper case). */
function uriEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();

/** 20261201T011222Z → ms since the epoch (NaN when malformed). */
function parseAmzDate(value: string | undefined): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value ?? '');
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) : NaN;
}

class Refusal extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/** Refusals S3 answers with 400; the others with 403. */
const BAD_REQUEST = new Set(['AuthorizationQueryParametersError', 'AuthorizationHeaderMalformed', 'XAmzContentSHA256Mismatch', 'InvalidURI']);

/**
 * Checks the request's SigV4 signature (presigned query or Authorization header); throws a Refusal
 * when S3 would refuse it. `body` is the request body (read only for Authorization-header
 * requests, whose payload hash S3 checks too).
 */
function verify(req: http.IncomingMessage, body: Buffer | undefined, secrets: Map<string, string>, now: number): void {
  const rawUrl = req.url ?? '/';
  const queryAt = rawUrl.indexOf('?');
  const rawPath = queryAt < 0 ? rawUrl : rawUrl.slice(0, queryAt);
  // Query parameters as sent, decoded once ('+' is not a space in SigV4).
  const params = (queryAt < 0 ? '' : rawUrl.slice(queryAt + 1)).split('&').filter((p) => p !== '').map((pair) => {
    const eq = pair.indexOf('=');
    return eq < 0 ? [decodeURIComponent(pair), ''] : [decodeURIComponent(pair.slice(0, eq)), decodeURIComponent(pair.slice(eq + 1))];
  });
  const param = (name: string) => params.find(([k]) => k === name)?.[1];

  let credential: string, signedHeaders: string, signature: string, amzDate: string, payloadHash: string;
  const presigned = param('X-Amz-Algorithm') !== undefined;
  const authorization = req.headers.authorization;
  if (presigned) {
    if (param('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') throw new Refusal('AuthorizationQueryParametersError', 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"');
    const [c, h, s, d, e] = ['X-Amz-Credential', 'X-Amz-SignedHeaders', 'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-Expires'].map(param);
    if ([c, h, s, d, e].includes(undefined)) throw new Refusal('AuthorizationQueryParametersError', 'Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.');
    [credential, signedHeaders, signature, amzDate] = [c!, h!, s!, d!];
    const expires = Number(e);
    if (!Number.isInteger(expires) || expires < 1 || expires > 604_800) throw new Refusal('AuthorizationQueryParametersError', 'X-Amz-Expires must be from 1 to 604800 seconds');
    if (now > parseAmzDate(amzDate) + expires * 1000) throw new Refusal('AccessDenied', 'Request has expired');
    payloadHash = param('X-Amz-Content-Sha256') ?? 'UNSIGNED-PAYLOAD';
  } else if (authorization !== undefined) {
    const m = /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$/.exec(authorization);
    if (!m) throw new Refusal('AuthorizationHeaderMalformed', 'The authorization header is malformed.');
    [, credential, signedHeaders, signature] = m;
    amzDate = String(req.headers['x-amz-date'] ?? '');
    if (!(Math.abs(now - parseAmzDate(amzDate)) <= 15 * 60_000)) throw new Refusal('RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.');
    payloadHash = String(req.headers['x-amz-content-sha256'] ?? '');
    if (payloadHash !== 'UNSIGNED-PAYLOAD' && payloadHash !== sha256(body ?? Buffer.alloc(0))) {
      throw new Refusal('XAmzContentSHA256Mismatch', 'The provided x-amz-content-sha256 header does not match what was computed.');
    }
  } else {
    throw new Refusal('AccessDenied', 'Access Denied (anonymous requests are not allowed)');
  }

  // Credential = <access key id>/<yyyymmdd>/<region>/s3/aws4_request
  const [accessKeyId, day, region, service, terminator, ...extra] = credential.split('/');
  const secret = secrets.get(accessKeyId);
  if (secret === undefined) throw new Refusal('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
  if (extra.length > 0 || day !== amzDate.slice(0, 8) || service !== 's3' || terminator !== 'aws4_request' || !region) {
    throw new Refusal('AuthorizationHeaderMalformed', 'The credential scope is malformed.');
  }
  const headerNames = signedHeaders.split(';');
  if (!headerNames.includes('host')) throw new Refusal('AccessDenied', 'The host header must be signed.');

  const canonicalRequest = [
    req.method,
    // S3: each path segment URI-encoded once (as received, decoded first), '/' kept.
    rawPath.split('/').map((segment) => uriEncode(decodeURIComponent(segment))).join('/'),
    params
      .filter(([k]) => !(presigned && k === 'X-Amz-Signature'))
      .map(([k, v]) => [uriEncode(k), uriEncode(v)])
      .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join('&'),
    // Node joins repeated headers with ', ' (what SigV4 asks for); a signed header not sent is empty.
    ...headerNames.map((name) => `${name}:${String(req.headers[name] ?? '').trim().replace(/\s+/g, ' ')}`),
    '',
    signedHeaders,
    payloadHash,
  ].join('\n');
  const scope = [day, region, service, terminator].join('/');
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonicalRequest)].join('\n');
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), terminator);
  const expected = Buffer.from(hmac(signingKey, stringToSign).toString('hex'));
  const given = Buffer.from(signature);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    throw new Refusal('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.');
  }
}

function refuse(res: http.ServerResponse, refusal: Refusal): void {
  const xml = (text: string) => text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
  res.writeHead(BAD_REQUEST.has(refusal.code) ? 400 : 403, {
    'content-type': 'application/xml',
    connection: 'close',
  });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${xml(refusal.code)}</Code><Message>${xml(refusal.message)}</Message></Error>`);
}

export async function startS3Harness(options: { bucket?: string; region?: string } = {}): Promise<S3Harness> {
  const bucket = options.bucket ?? 'atrium-test';
  const region = options.region ?? 'us-east-1';
  // s3rver knows only its built-in key id; it ignores the secret of SigV4 requests, the front does not.
  const accessKeyId = 'S3RVER';
  const secretAccessKey = randomBytes(24).toString('base64url');
  const secrets = new Map([[accessKeyId, secretAccessKey]]);

  const directory = await fsp.mkdtemp(path.join(os.tmpdir(), 'atrium-s3-'));
  const s3rver = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true, configureBuckets: [{ name: bucket }] });
  const upstream = await s3rver.run();

  // No keep-alive towards s3rver, so that closing it never waits on an idle connection.
  const agent = new http.Agent({ keepAlive: false });
  const front = http.createServer((req, res) => {
    /** True when the request may go on; otherwise answers as S3 would. */
    const check = (body: Buffer | undefined): boolean => {
      try {
        verify(req, body, secrets, Date.now());
        return true;
      } catch (error) {
        // A refused upload's body is discarded; the answer closes the connection, as S3 does.
        req.resume();
        refuse(res, error instanceof Refusal ? error : new Refusal('InvalidURI', 'Could not parse the specified URI.'));
        return false;
      }
    };
    const forward = () => {
      const proxied = http.request({ agent, host: '127.0.0.1', port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      proxied.on('error', () => res.destroy());
      return proxied;
    };
    if (req.headers.authorization !== undefined) {
      // SDK requests (HeadObject, DeleteObject, HeadBucket): small bodies, hashed before forwarding.
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        if (check(body)) forward().end(body);
      });
      return;
    }
    if (check(undefined)) req.pipe(forward());
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  const port = (front.address() as AddressInfo).port;

  let stopped: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    unverifiedEndpoint: `http://127.0.0.1:${upstream.port}`,
    bucket,
    region,
    accessKeyId,
    secretAccessKey,
    stop() {
      stopped ??= (async () => {
        front.closeAllConnections();
        await new Promise<void>((resolve) => front.close(() => resolve()));
        await s3rver.close();
        agent.destroy();
        await fsp.rm(directory, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
