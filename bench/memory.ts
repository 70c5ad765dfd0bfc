// 5. Memory: the API server's peak resident set during the API load runs (VmHWM: the kernel's
// own peak, no sample can miss it), the embedded PostgreSQL's footprint beside it (PSS summed
// over the postmaster and its children; their RSS sum double-counts shared buffers), and a soak:
// steady API load (the four operations of section 3 in turn) on a freshly started server for
// --soak seconds (default 300), its RSS sampled every 5 s, to show whether memory stays flat.
//
// "Flat": after a warm-up (the first fifth of the soak, at most 60 s), the last sample is within
// 10% of the first, and the least-squares slope of all samples since is under 1 MB per minute.
// The worker's memory (≤ 200 MB) belongs to the jobs section.
import type { BenchContext } from './context.ts';
import { apiOperations, clearOutboxJobs, postgresPid, recordedLoadMemory, runApiLoads, serverNodeOptions, startApiServer, tokenTtl, type ApiOperation, type ApiServer, type LoadMemory } from './api.ts';
import { runLoad, type HttpRequestSpec } from './load.ts';
import { postgresFootprint, processMemory, sampler, slope, type PostgresFootprint } from './proc.ts';
import type { Row, Section } from './stats.ts';

const SERVER_TARGET_MB = 350;
const FLAT_GROWTH = 0.1;
const FLAT_SLOPE_MB_PER_MIN = 1;

/** The four operations' requests interleaved (a, b, c, d, a, b, ...). */
function mixed(ops: ApiOperation[]): HttpRequestSpec[] {
  const out: HttpRequestSpec[] = [];
  const longest = Math.max(...ops.map((o) => o.requests.length));
  for (let i = 0; i < longest; i++) for (const op of ops) if (op.requests[i]) out.push(op.requests[i]!);
  return out;
}

async function stopped(server: ApiServer, notes: string[]): Promise<void> {
  const s = await server.stop();
  if (s.code !== 0) notes.push(`The soak's server did not stop cleanly on SIGTERM (${s.signal ?? `exit ${s.code}`}):\n${server.output()}`);
}

// A latency, or '-' when no answer came back in the window (a smoke run on a loaded machine).
const ms = (n: number | null | undefined) => (typeof n === 'number' && Number.isFinite(n) ? n.toFixed(1) : '-');
const mb = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(1));
const pgText = (f: PostgresFootprint | undefined) => (f ? `${f.processes} processes, PSS ${mb(f.pssMB)} MB, RSS sum ${mb(f.rssMB)} MB` : '-');

export async function memorySection(ctx: BenchContext): Promise<Section> {
  const { options } = ctx;
  const rows: Row[] = [];
  const notes: string[] = [];
  const ops = await apiOperations(ctx, tokenTtl(ctx));

  // Peak during the API load runs: those of section 3 when it ran, otherwise run them here.
  let load: LoadMemory | undefined = recordedLoadMemory(ctx);
  if (load) {
    notes.push('Load runs: those of section 3 (api), on its server.');
  } else {
    const server = await startApiServer(ctx);
    try {
      load = (await runApiLoads(ctx, server, ops, false)).memory;
    } finally {
      await stopped(server, notes);
      await clearOutboxJobs(ctx).catch(() => undefined);
    }
    notes.push('Load runs: the four operations of section 3 run here (section 3 did not run), without the pg floor.');
  }
  rows.push({
    name: 'API server peak RSS during the load runs',
    unit: 'MB',
    ours: load.serverPeakMB,
    baseline: load.serverIdleMB,
    baselineLabel: 'once ready, before load',
    ratio: { value: load.serverPeakMB / load.serverIdleMB },
    target: `≤ ${SERVER_TARGET_MB} MB`,
    pass: load.serverPeakMB <= SERVER_TARGET_MB,
    note: 'VmHWM of the server process (peak resident set since it started)',
  });
  const key = (f: PostgresFootprint | undefined) => (f ? (f.pssMB ?? f.rssMB) : NaN);
  rows.push({
    name: `PostgreSQL footprint during the load runs (${load.postgresPeak?.pssMB !== undefined ? 'PSS' : 'RSS'} sum)`,
    unit: 'MB',
    ours: key(load.postgresPeak),
    baseline: key(load.postgresIdle),
    baselineLabel: 'before load',
    ratio: load.postgresPeak && load.postgresIdle ? { value: key(load.postgresPeak) / key(load.postgresIdle) } : undefined,
    note: load.postgresMissing ?? `peak sample: ${pgText(load.postgresPeak)}; before: ${pgText(load.postgresIdle)}`,
  });

  // The soak. --soak 0 skips it, except in a smoke run, which soaks 2 s to run the code (no verdict).
  const soakSeconds = options.soakSeconds > 0 ? options.soakSeconds : options.smoke ? 2 : 0;
  if (soakSeconds === 0) {
    notes.push('Soak skipped (--soak 0).');
  } else {
    const verdict = options.soakSeconds > 0;
    const server = await startApiServer(ctx);
    const pg = postgresPid(ctx);
    const interval = options.smoke ? 250 : 5000;
    const rss = sampler(interval, () => processMemory(server.pid)?.rssMB);
    let result;
    let postgresStart: PostgresFootprint | undefined;
    let postgresEnd: PostgresFootprint | undefined;
    try {
      postgresStart = pg.pid ? postgresFootprint(pg.pid) : undefined;
      result = await runLoad({ kind: 'http', url: `${server.url}/graphql`, connections: options.connections, warmupSeconds: 0, durationSeconds: soakSeconds, requests: mixed(ops) });
      postgresEnd = pg.pid ? postgresFootprint(pg.pid) : undefined;
    } finally {
      rss.stop();
      await stopped(server, notes);
      await clearOutboxJobs(ctx).catch(() => undefined);
    }
    const samples = rss.samples.filter((s) => s.at <= soakSeconds + 1);
    const warmup = Math.min(60, soakSeconds / 5);
    const steady = samples.filter((s) => s.at >= warmup);
    const start = steady[0]?.value ?? NaN;
    const end = steady[steady.length - 1]?.value ?? NaN;
    const peak = Math.max(...samples.map((s) => s.value));
    const perMinute = slope(steady) * 60;
    const flat = (end - start) / start < FLAT_GROWTH && perMinute < FLAT_SLOPE_MB_PER_MIN;
    rows.push({
      name: `soak ${soakSeconds} s: server RSS, end vs start`,
      unit: 'MB',
      ours: end,
      baseline: start,
      baselineLabel: `after ${warmup.toFixed(0)} s warm-up`,
      ratio: { value: end / start },
      target: verdict ? `flat: end < ${(1 + FLAT_GROWTH).toFixed(2)}× start, slope < ${FLAT_SLOPE_MB_PER_MIN} MB/min` : undefined,
      pass: verdict ? flat : undefined,
      note: `slope ${perMinute.toFixed(2)} MB/min over ${steady.length} samples every ${interval / 1000} s${verdict ? '' : ' (smoke: a 2 s soak runs the code, no verdict)'}`,
    });
    rows.push({
      name: `soak ${soakSeconds} s: server RSS growth per minute`,
      unit: 'MB',
      ours: perMinute,
      target: verdict ? `< ${FLAT_SLOPE_MB_PER_MIN} MB/min` : undefined,
      pass: verdict ? perMinute < FLAT_SLOPE_MB_PER_MIN : undefined,
    });
    rows.push({
      name: `soak ${soakSeconds} s: server peak RSS`,
      unit: 'MB',
      ours: peak,
      target: `≤ ${SERVER_TARGET_MB} MB`,
      pass: peak <= SERVER_TARGET_MB,
      note: `sampled every ${interval / 1000} s, warm-up included`,
    });
    rows.push({
      name: `soak ${soakSeconds} s: requests (four operations in turn)`,
      unit: 'ops/s',
      ours: result.requestsPerSecond,
      target: '0 errors',
      pass: result.errors === 0,
      note: `${result.requests} answers, ${result.errors} errors, p50/p95/p99 ${ms(result.latency.p50)}/${ms(result.latency.p95)}/${ms(result.latency.p99)} ms${result.errorSamples.length ? `; e.g. ${result.errorSamples[0]}` : ''}`,
    });
    rows.push({
      name: `soak ${soakSeconds} s: PostgreSQL footprint, end vs start (${postgresEnd?.pssMB !== undefined ? 'PSS' : 'RSS'} sum)`,
      unit: 'MB',
      ours: key(postgresEnd),
      baseline: key(postgresStart),
      baselineLabel: 'start',
      ratio: postgresEnd && postgresStart ? { value: key(postgresEnd) / key(postgresStart) } : undefined,
      note: pg.missing ?? `end: ${pgText(postgresEnd)}`,
    });
  }
  if (rows.some((r) => r.unit === 'MB' && r.pass === false) && serverNodeOptions().length === 0) {
    notes.push(
      "Missed with Node's default heap settings: on a machine with plenty of memory V8 lets the young generation and the old space grow well past the live heap before collecting (see `--trace-gc` on the server), so the resident set climbs for minutes under load without a leak. " +
        'What it would take: bound the heap in the server\'s start command (e.g. --max-old-space-size and --max-semi-space-size); measure a setting with BENCH_SERVER_NODE_OPTIONS="--max-old-space-size=192 --max-semi-space-size=16" npm run bench -- --only memory.',
    );
  }
  notes.push(
    serverNodeOptions().length
      ? `The server runs as in section 3: \`node ${serverNodeOptions().join(' ')} src/cli.ts api\` (the heap bounds of \`npm start\`, or BENCH_SERVER_NODE_OPTIONS when set), NODE_ENV=production, no worker.`
      : "The server runs as in section 3: `src/cli.ts api`, NODE_ENV=production, no worker, Node's default heap settings (BENCH_SERVER_NODE_OPTIONS sets others).",
    'PostgreSQL: the postmaster (from postmaster.pid) and its children. PSS (smaps_rollup) divides each shared page among the processes mapping it, so the PSS sum is the real footprint; the RSS sum counts shared buffers once per process that touched them.',
    'The worker\'s memory (target ≤ 200 MB) is measured in the jobs section.',
  );
  return { id: 'memory', title: '5. Memory: API server peak RSS under load, PostgreSQL footprint, soak', rows, notes };
}
