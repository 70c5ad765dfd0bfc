// The load generator of the API and memory sections, run as a child process of its own so that
// neither the server nor the harness shares its CPU time with it. Two kinds of load, each with
// `connections` concurrent clients for a warm-up and then `durationSeconds` of measured time:
//
//   http  autocannon (keep-alive connections, one request in flight each) POSTing the given
//         GraphQL bodies in turn; an answer counts as an error when it is not 2xx, carries
//         GraphQL `errors`, or holds the operation's "nothing found" marker (e.g. "task":null)
//   pg    the floor: the same data with `pg` directly, one connection per client, the given
//         queries in turn as prepared statements; an error when it fails or returns no row
//
// The parent (runLoad) sends the spec over IPC and gets back latency percentiles, requests per
// second and the error count, with a few error messages.
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { stats, type Stats } from './stats.ts';

export interface HttpRequestSpec {
  headers: Record<string, string>;
  body: string;
  /** A substring of the answer that means "found nothing" (counted as an error), e.g. "task":null. */
  emptyMarker?: string;
}

export interface LoadCommon {
  connections: number;
  durationSeconds: number;
  /** Untimed load before the measured window (connections warm, plans cached, JIT done). */
  warmupSeconds: number;
  /**
   * Keep the window open past durationSeconds until this many answers came back (at most
   * MAX_EXTENSION_SECONDS more): a smoke run's one-second window on a busy machine may
   * otherwise close before the first answer.
   */
  minAnswers?: number;
}

/** How long a window may stay open waiting for minAnswers. */
const MAX_EXTENSION_SECONDS = 30;

export interface HttpLoadSpec extends LoadCommon {
  kind: 'http';
  url: string;
  requests: HttpRequestSpec[];
}

export interface PgLoadSpec extends LoadCommon {
  kind: 'pg';
  connectionString: string;
  /** Prepared statement text; each entry of `values` is one request's parameters. */
  text: string;
  values: unknown[][];
}

export type LoadSpec = HttpLoadSpec | PgLoadSpec;

export interface LoadResult {
  latency: Stats;
  /** Answers in the measured window. */
  requests: number;
  requestsPerSecond: number;
  errors: number;
  /** Up to five distinct error messages (or answer excerpts). */
  errorSamples: string[];
  seconds: number;
}

/** Collects latencies and errors inside the measured window. */
class Recorder {
  readonly latencies: number[] = [];
  errors = 0;
  readonly samples = new Set<string>();
  measuring = false;
  record(ms: number, error?: string): void {
    if (!this.measuring) return;
    this.latencies.push(ms);
    if (error !== undefined) {
      this.errors++;
      if (this.samples.size < 5) this.samples.add(error.slice(0, 300));
    }
  }
  result(seconds: number): LoadResult {
    return {
      latency: stats(this.latencies),
      requests: this.latencies.length,
      requestsPerSecond: this.latencies.length / seconds,
      errors: this.errors,
      errorSamples: [...this.samples],
      seconds,
    };
  }
}

/** The measured window: starts after the warm-up, lasts durationSeconds (or until minAnswers). */
function window(spec: LoadCommon, recorder: Recorder): Promise<number> {
  return new Promise((resolve) => {
    setTimeout(() => {
      recorder.measuring = true;
      const started = process.hrtime.bigint();
      const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
      const close = () => {
        if (recorder.latencies.length < (spec.minAnswers ?? 0) && elapsed() < spec.durationSeconds + MAX_EXTENSION_SECONDS) {
          setTimeout(close, 50);
          return;
        }
        recorder.measuring = false;
        resolve(elapsed());
      };
      setTimeout(close, spec.durationSeconds * 1000);
    }, spec.warmupSeconds * 1000);
  });
}

// autocannon ships no types; the little of it used here.
interface AutocannonRequest {
  method: string;
  path: string;
  setupRequest(request: Record<string, unknown>, context: Record<string, unknown>): Record<string, unknown>;
  onResponse(status: number, body: string, context: Record<string, unknown>): void;
}
interface AutocannonInstance {
  on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): void;
  on(event: 'reqError', listener: (error: Error) => void): void;
  stop(): void;
}
type Autocannon = (options: Record<string, unknown>, done: (error: Error | null, result: { errors: number; timeouts: number }) => void) => AutocannonInstance;

async function runHttp(spec: HttpLoadSpec): Promise<LoadResult> {
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  const recorder = new Recorder();
  const url = new URL(spec.url);
  let next = 0;
  // What each answer said, checked in onResponse (which autocannon calls before 'response').
  let verdict: string | undefined;
  const request: AutocannonRequest = {
    method: 'POST',
    path: url.pathname,
    setupRequest(req, context) {
      const r = spec.requests[next++ % spec.requests.length]!;
      context.emptyMarker = r.emptyMarker; // per connection: one request in flight on each
      return { ...req, headers: { 'content-type': 'application/json', accept: 'application/json', ...r.headers }, body: r.body };
    },
    onResponse(status, body, context) {
      const emptyMarker = context.emptyMarker as string | undefined;
      if (status < 200 || status > 299) verdict = `HTTP ${status}: ${body}`;
      else if (body.includes('"errors"')) verdict = body;
      else if (emptyMarker && body.includes(emptyMarker)) verdict = `nothing found: ${body}`;
      else verdict = undefined;
    },
  };
  const measured = window(spec, recorder);
  const done = new Promise<{ errors: number; timeouts: number }>((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${url.protocol}//${url.host}`,
        connections: spec.connections,
        pipelining: 1,
        duration: spec.warmupSeconds + spec.durationSeconds + (spec.minAnswers ? MAX_EXTENSION_SECONDS : 0) + 0.2,
        timeout: 10,
        requests: [request],
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
    instance.on('response', (_client, _status, _bytes, ms) => {
      recorder.record(ms, verdict);
      verdict = undefined;
    });
    instance.on('reqError', (error) => recorder.record(NaN, `request failed: ${error.message}`));
    // A window kept open for minAnswers may close early: stop sending then.
    if (spec.minAnswers) void measured.then(() => instance.stop());
  });
  const seconds = await measured;
  const totals = await done;
  const result = recorder.result(seconds);
  // Latencies of failed requests (NaN) are not latencies.
  result.latency = stats(recorder.latencies.filter((v) => Number.isFinite(v)));
  if (totals.timeouts > 0) result.errorSamples.push(`${totals.timeouts} request(s) timed out (whole run, warm-up included)`);
  return result;
}

async function runPg(spec: PgLoadSpec): Promise<LoadResult> {
  const recorder = new Recorder();
  const clients = Array.from({ length: spec.connections }, () => new pg.Client({ connectionString: spec.connectionString }));
  await Promise.all(clients.map((c) => c.connect()));
  let next = 0;
  let running = true;
  const loop = async (client: pg.Client) => {
    while (running) {
      const values = spec.values[next++ % spec.values.length]!;
      const t = process.hrtime.bigint();
      try {
        const r = await client.query({ name: 'bench', text: spec.text, values });
        recorder.record(Number(process.hrtime.bigint() - t) / 1e6, r.rowCount === 0 ? `no row for ${JSON.stringify(values)}` : undefined);
      } catch (error) {
        recorder.record(Number(process.hrtime.bigint() - t) / 1e6, (error as Error).message);
      }
    }
  };
  try {
    const loops = clients.map(loop);
    const seconds = await window(spec, recorder);
    running = false;
    await Promise.all(loops);
    return recorder.result(seconds);
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

export function runLoadHere(spec: LoadSpec): Promise<LoadResult> {
  return spec.kind === 'http' ? runHttp(spec) : runPg(spec);
}

const LOAD_FILE = fileURLToPath(import.meta.url);

/** Runs `spec` in a child process of its own (this file), and returns what it measured. */
export function runLoad(spec: LoadSpec): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = fork(LOAD_FILE, [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: LoadResult | undefined;
    child.once('message', (message) => {
      const m = message as { result?: LoadResult; error?: string };
      if (m.error !== undefined) reject(new Error(`load generator: ${m.error}`));
      else result = m.result;
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (result) resolve(result);
      else reject(new Error(`load generator exited (${signal ?? code}) without a result`));
    });
    child.send(spec);
  });
}

// As a child: one spec in, one result out.
if (process.argv[1] === LOAD_FILE && process.send) {
  process.once('message', (spec) => {
    runLoadHere(spec as LoadSpec).then(
      (result) => process.send!({ result }, () => process.exit(0)),
      (error: Error) => process.send!({ error: error.stack ?? error.message }, () => process.exit(1)),
    );
  });
}
