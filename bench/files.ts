// 8. Files through the local driver (src/storage/local.ts, src/http/files.ts): the real API
// process (`src/cli.ts api`, as in section 3) with the default driver, its FILES_DIR in a
// temporary folder, and the owner of the largest organization's real access token.
//
//   minting      signing a URL is done by a GraphQL read: FileObject.downloadUrl and .uploadUrl
//                sign on every read (the URL is not stored). Measured like section 3 (autocannon
//                from another process, `connections` clients, same warm-up and duration) for one
//                available file's downloadUrl and one pending file's uploadUrl, beside the same
//                read without a URL field (what the URL adds: its rule in SQL and the HMAC); and
//                requestFileUpload, which is what a frontend calls to get an upload URL (a new
//                pending row, its audit event and expiry job, and the URL in its payload); and
//                the driver's presign calls alone in this process, the signing without the read
//   transfers    1 MiB uploaded (PUT) and downloaded (GET) with plain fetch, one request at a
//                time, through the driver's signed URLs vs the same bytes through a bare
//                node:http server (bench/file-peer.ts) started the same way with the same
//                Node flags; and the full flow a frontend runs: requestFileUpload → PUT →
//                completeFileUpload → downloadUrl (a query) → GET. The three take turns in
//                rounds, each round in another order, so all see the same machine.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../src/paths.ts';
import { createLocalStorage } from '../src/storage/local.ts';
import { clearOutboxJobs, freePort, ownerTokens, runApiLoads, startApiServer, startServerProcess, tokenTtl, loadTiming, type ApiOperation, type ApiServer } from './api.ts';
import type { BenchContext } from './context.ts';
import type { HttpRequestSpec } from './load.ts';
import { stats, timeEach, type Row, type Section, type Stats } from './stats.ts';

const MiB = 1024 * 1024;
const CONTENT_TYPE = 'application/pdf';
/** The tasks a request and a completion queue, removed afterwards (no worker runs here). */
const FILE_JOBS = ['file_upload_expire', 'file_uploaded'];

const FILE_FIELDS = 'rowId name contentType sizeBytes status';
const UPLOAD_FIELDS = 'uploadUrl { url method headers { name value } expiresAt }';
const fileQuery = (extra: string) => `query File($org: UUID!, $id: UUID!) { fileObject(organizationId: $org, rowId: $id) { ${FILE_FIELDS} ${extra} } }`;
const REQUEST = `mutation Request($input: RequestFileUploadInput!) { requestFileUpload(input: $input) { fileObject { rowId storageKey ${UPLOAD_FIELDS} } } }`;
const COMPLETE = 'mutation Complete($id: UUID!) { completeFileUpload(input: { id: $id }) { fileObject { rowId status downloadUrl } } }';

interface Upload {
  url: string;
  method: string;
  headers: Array<{ name: string; value: string }>;
}
interface Requested {
  rowId: string;
  storageKey: string;
  uploadUrl: Upload;
}

/** How long the flow's calls wait out a busy server (503 with Retry-After) before failing. */
const BUSY_DEADLINE_MS = 120_000;

/**
 * One GraphQL call as the owner; any error fails the section (the flow must work to be measured),
 * except the busy server's refusal (503 SERVICE_UNAVAILABLE, Retry-After), which a client is told
 * to retry: on a loaded machine a load's last requests can still hold every turn when the flow
 * starts. `busy` counts those retries (reported with the section).
 */
function client(server: ApiServer, token: string, busy: { retries: number }) {
  return async <T>(query: string, variables: Record<string, unknown>): Promise<T> => {
    const deadline = Date.now() + BUSY_DEADLINE_MS;
    for (;;) {
      const response = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await response.json()) as { data?: T; errors?: unknown[] };
      const retryAfter = Number(response.headers.get('retry-after'));
      if (response.status === 503 && retryAfter > 0 && Date.now() + retryAfter * 1000 < deadline) {
        busy.retries++;
        await new Promise((resolve) => setTimeout(resolve, retryAfter * 1000));
        continue;
      }
      if (body.errors || !body.data) throw new Error(`files: ${query.slice(0, 40)}… answered ${response.status} ${JSON.stringify(body.errors ?? body).slice(0, 300)}`);
      return body.data;
    }
  };
}

async function put(url: string, headers: Record<string, string>, bytes: Uint8Array): Promise<void> {
  const response = await fetch(url, { method: 'PUT', headers, body: bytes });
  await response.arrayBuffer();
  if (response.status !== 200) throw new Error(`files: PUT ${new URL(url).pathname} answered ${response.status}`);
}

async function get(url: string, size: number): Promise<Buffer> {
  const response = await fetch(url);
  const body = Buffer.from(await response.arrayBuffer());
  if (response.status !== 200 || body.length !== size) throw new Error(`files: GET ${new URL(url).pathname} answered ${response.status} with ${body.length} bytes`);
  return body;
}

const since = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

/** Times `fn` in ms. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return since(start);
}

/**
 * PUT of `bytes` to `url`, then GET of the URL `then` gives (its own time not counted): the two
 * times in ms. `compare`: the bytes that come back must be those sent (else only their count).
 */
async function putThenGet(bytes: Buffer, url: string, headers: Record<string, string>, then: () => Promise<string>, compare: boolean): Promise<[number, number]> {
  const up = await timed(() => put(url, headers, bytes));
  const from = await then();
  let body: Buffer | undefined;
  const down = await timed(async () => (body = await get(from, bytes.length)));
  if (compare && !body!.equals(bytes)) throw new Error(`files: ${new URL(from).host} served other bytes than were uploaded`);
  return [up, down];
}

interface Transfers {
  upload: number[];
  download: number[];
  both: number[];
}
const add = (into: Transfers, [up, down]: [number, number]) => {
  into.upload.push(up);
  into.download.push(down);
  into.both.push(up + down);
};

const headersOf = (upload: Upload) => Object.fromEntries(upload.headers.map((h) => [h.name, h.value]));

/** Megabytes (MiB) a second at the median. */
const throughput = (s: Stats, bytes: number) => bytes / MiB / (s.p50 / 1000);

export async function filesSection(ctx: BenchContext): Promise<Section> {
  const { options } = ctx;
  const rows: Row[] = [];
  const notes: string[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-bench-files-'));
  const apiDir = path.join(tmp, 'api');
  const peerDir = path.join(tmp, 'peer');
  // The largest organization (pickOrg weighs by size), as its owner.
  const org = [...ctx.dataset.orgs].sort((a, b) => b.tasks - a.tasks)[0]!;
  const token = (await ownerTokens(ctx, tokenTtl(ctx))).get(org.id)!;
  const bytes = randomBytes(MiB);
  const input = { name: 'bench.pdf', contentType: CONTENT_TYPE, sizeBytes: String(bytes.length) };

  const server = await startApiServer(ctx, { FILES_DIR: apiDir });
  const peerPort = await freePort();
  let peer: ApiServer | undefined;
  try {
    peer = await startServerProcess(ctx, 'the plain file server', [path.join(ROOT, 'bench/file-peer.ts')], { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(peerPort), PEER_DIR: peerDir }, peerPort);
    const busy = { retries: 0 };
    const gql = client(server, token, busy);
    const request = async () => (await gql<{ requestFileUpload: { fileObject: Requested } }>(REQUEST, { input })).requestFileUpload.fileObject;
    const complete = async (id: string) => (await gql<{ completeFileUpload: { fileObject: { status: string; downloadUrl: string | null } } }>(COMPLETE, { id })).completeFileUpload.fileObject;
    const downloadUrl = async (id: string) => (await gql<{ fileObject: { downloadUrl: string | null } }>(fileQuery('downloadUrl'), { org: org.id, id })).fileObject.downloadUrl;

    // 1. Minting: one available file, one pending, and the reads of each.
    const available = await request();
    await put(available.uploadUrl.url, headersOf(available.uploadUrl), bytes);
    if ((await complete(available.rowId)).status !== 'available') throw new Error('files: the completed file is not available');
    const pending = await request();
    const auth = { authorization: `Bearer ${token}` };
    const read = (id: string, extra: string, emptyMarker?: string): HttpRequestSpec[] => [{ headers: auth, body: JSON.stringify({ query: fileQuery(extra), variables: { org: org.id, id } }), emptyMarker }];
    const plain: ApiOperation = { name: 'fileObject by id, no URL (the read alone)', p95Target: undefined, requests: read(available.rowId, '', '"fileObject":null') };
    const download: ApiOperation = { name: 'downloadUrl: fileObject by id of an available file, with its signed GET URL', p95Target: undefined, requests: read(available.rowId, 'downloadUrl', '"downloadUrl":null') };
    const upload: ApiOperation = { name: 'uploadUrl: fileObject by id of a pending file, with its signed PUT URL', p95Target: undefined, requests: read(pending.rowId, UPLOAD_FIELDS, '"uploadUrl":null') };
    const requestOp: ApiOperation = {
      name: 'requestFileUpload: a new pending file and its upload URL',
      p95Target: undefined,
      requests: [{ headers: auth, body: JSON.stringify({ query: REQUEST, variables: { input } }), emptyMarker: '"uploadUrl":null' }],
    };
    const { results } = await runApiLoads(ctx, server, [plain, download, upload, requestOp], false);
    const [base, ...minted] = results;
    let errors = 0;
    let answers = 0;
    for (const { api } of results) {
      errors += api.errors;
      answers += api.requests;
    }
    const answered = (r: (typeof results)[number]) =>
      `${r.api.requestsPerSecond.toFixed(0)} req/s, ${r.api.requests} answers, ${r.api.errors} errors` + (r.api.errorSamples.length ? `; e.g. ${r.api.errorSamples[0]}` : '');
    for (const r of minted) {
      const beside = r.op !== requestOp;
      rows.push({
        name: r.op.name,
        unit: 'ms',
        ours: r.api.latency,
        ...(beside ? { baseline: base!.api.latency, baselineLabel: 'the same read without a URL', ratio: { p50: r.api.latency.p50 / base!.api.latency.p50, p95: r.api.latency.p95 / base!.api.latency.p95 } } : {}),
        note: answered(r) + (beside ? `; without a URL: ${answered(base!)}` : ''),
      });
      rows.push({
        name: `${r.op.name} — throughput`,
        unit: 'ops/s',
        ours: r.api.requestsPerSecond,
        ...(beside ? { baseline: base!.api.requestsPerSecond, baselineLabel: 'the same read without a URL', ratio: { value: r.api.requestsPerSecond / base!.api.requestsPerSecond } } : {}),
      });
    }
    // The signing alone, in this process: the local driver's presign calls without the request,
    // the GraphQL read and the SQL rule around them (a driver of its own, with a key of its own).
    const signer = createLocalStorage({ dir: apiDir, baseUrl: server.url, signingKey: randomBytes(32) });
    const signings = options.smoke ? 200 : 20_000;
    const signed = [
      ['presignDownload', await timeEach(signings, () => signer.presignDownload({ key: available.storageKey, fileName: input.name, contentType: CONTENT_TYPE, expiresInSeconds: 300 }))],
      ['presignUpload', await timeEach(signings, () => signer.presignUpload({ key: pending.storageKey, size: bytes.length, contentType: CONTENT_TYPE, expiresInSeconds: 900 }))],
    ] as const;
    for (const [call, times] of signed) {
      const s = stats(times);
      rows.push({ name: `signing alone: the local driver's ${call}, in process`, unit: 'ms', ours: s, note: `${signings} calls one after another, mean ${(s.mean * 1000).toFixed(1)} µs` });
    }
    rows.push({ name: 'errors, minting loads', unit: 'count', ours: errors, target: '0', pass: errors === 0, note: `${errors} of ${answers} answers (non-2xx, GraphQL errors, or no URL)` });

    // 2. Transfers: rounds of three, each in another order; only the named steps are timed.
    const iterations = options.smoke ? 5 : 200;
    const warmup = options.smoke ? 1 : 10;
    const driver: Transfers = { upload: [], download: [], both: [] };
    const plainHttp: Transfers = { upload: [], download: [], both: [] };
    // The full flow's steps, in order: request, PUT, complete, downloadUrl, GET.
    const flow: number[][] = [[], [], [], [], []];
    const flowTotal: number[] = [];
    const keys: string[] = [];
    const variants: Array<(i: number, record: boolean) => Promise<void>> = [
      // The driver: a new pending file's URL (untimed), PUT; completed (untimed), GET.
      async (i, record) => {
        const file = await request();
        keys.push(file.storageKey);
        const times = await putThenGet(bytes, file.uploadUrl.url, headersOf(file.uploadUrl), async () => (await complete(file.rowId)).downloadUrl!, i === 0);
        if (record) add(driver, times);
      },
      // The plain server: PUT, GET of the same name.
      async (i, record) => {
        const url = `${peer!.url}/round-${i}`;
        const times = await putThenGet(bytes, url, { 'content-type': CONTENT_TYPE }, async () => url, i === 0);
        if (record) add(plainHttp, times);
      },
      // The full flow, every step timed.
      async (_i, record) => {
        const steps: number[] = [];
        let file: Requested | undefined;
        let url: string | null = null;
        steps.push(await timed(async () => (file = await request())));
        keys.push(file!.storageKey);
        steps.push(await timed(() => put(file!.uploadUrl.url, headersOf(file!.uploadUrl), bytes)));
        steps.push(await timed(() => complete(file!.rowId)));
        steps.push(await timed(async () => (url = await downloadUrl(file!.rowId))));
        steps.push(await timed(() => get(url!, bytes.length)));
        if (!record) return;
        steps.forEach((ms, k) => flow[k]!.push(ms));
        flowTotal.push(steps.reduce((a, b) => a + b, 0));
      },
    ];
    for (let i = -warmup; i < iterations; i++) {
      const round = ((i % variants.length) + variants.length) % variants.length;
      for (const variant of [...variants.slice(round), ...variants.slice(0, round)]) await variant(i, i >= 0);
      // Each round starts from empty stores: its objects go, untimed (the rows stay, unread).
      for (const key of keys.splice(0)) for (const f of [key, `${key}.meta.json`]) fs.rmSync(path.join(apiDir, ...f.split('/')), { force: true });
      fs.rmSync(path.join(peerDir, `round-${i}`), { force: true });
    }

    const mb = (bytes.length / MiB).toFixed(0);
    const label = 'bare node:http server, same bytes';
    const side = (name: string, ours: number[], theirs: number[]) => {
      const [o, t] = [stats(ours), stats(theirs)];
      rows.push({ name, unit: 'ms', ours: o, baseline: t, baselineLabel: label, ratio: { p50: o.p50 / t.p50, p95: o.p95 / t.p95 } });
      return [o, t] as const;
    };
    const [up, upPeer] = side(`upload ${mb} MiB (PUT to a signed URL)`, driver.upload, plainHttp.upload);
    const [down, downPeer] = side(`download ${mb} MiB (GET of a signed URL)`, driver.download, plainHttp.download);
    const [, bothPeer] = side(`round trip ${mb} MiB (PUT + GET)`, driver.both, plainHttp.both);
    for (const [name, o, t] of [['upload', up, upPeer], ['download', down, downPeer]] as const) {
      const [ours, theirs] = [throughput(o, bytes.length), throughput(t, bytes.length)];
      rows.push({ name: `${name} ${mb} MiB — throughput at the median`, unit: 'MB/s', ours, baseline: theirs, baselineLabel: label, ratio: { value: ours / theirs } });
    }
    const total = stats(flowTotal);
    const median = (v: number[]) => stats(v).p50.toFixed(2);
    rows.push({
      name: `full flow ${mb} MiB: requestFileUpload → PUT → completeFileUpload → downloadUrl → GET`,
      unit: 'ms',
      ours: total,
      baseline: bothPeer,
      baselineLabel: `${label}, PUT + GET`,
      ratio: { p50: total.p50 / bothPeer.p50, p95: total.p95 / bothPeer.p95 },
      note: `medians of the steps: request ${median(flow[0]!)}, PUT ${median(flow[1]!)}, complete ${median(flow[2]!)}, downloadUrl ${median(flow[3]!)}, GET ${median(flow[4]!)} ms`,
    });

    if (busy.retries > 0) notes.push(`The flow's GraphQL calls were refused as busy (503, Retry-After) ${busy.retries} times and retried; a retried step's time includes the wait.`);
    const timing = loadTiming(ctx);
    notes.push(
      `Minting: the API of section 3 (\`src/cli.ts api\`, NODE_ENV=production, the local driver, FILES_DIR in a temporary folder), organization ${org.id} (${org.tasks} tasks) as its owner; each operation ${options.connections} connections for ${timing.durationSeconds} s after ${timing.warmupSeconds} s of warm-up, from a separate process (autocannon, bench/load.ts). The URLs are signed on every read; the read without a URL is the baseline.`,
      `Transfers: ${iterations} rounds after ${warmup} untimed ones, one request at a time with fetch from the harness; each round runs the driver, the plain server and the full flow, in turn starting with the next one. Driver: a new pending file per round (requestFileUpload untimed), PUT timed, completeFileUpload untimed, GET of its downloadUrl timed. Plain server (bench/file-peer.ts): the same ${bytes.length} bytes PUT to and GET from a new name; a temporary file renamed into place, no fsync, like the driver, which also checks the signature, writes a content-type file beside the object and runs behind the API's Express middleware. Both servers run with the same Node flags (those of \`npm start\`). Every answer is checked (status, ${bytes.length} bytes; the first round's bytes compared). MB/s: MiB (2^20 bytes) a second at the median.`,
    );
  } finally {
    const stopped = await Promise.all([server.stop(), peer?.stop()]);
    for (const [what, s] of [['API server', stopped[0]], ['plain file server', stopped[1]]] as const) {
      if (s && s.code !== 0) notes.push(`The ${what} did not stop cleanly on SIGTERM (${s.signal ?? `exit ${s.code}`}).`);
    }
    await clearOutboxJobs(ctx, FILE_JOBS).catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return { id: 'files', title: '8. Files: signed URLs, and 1 MiB through the local driver vs a bare node:http server', rows, notes };
}
