// Memory bounded by design (docs/SECURITY.md, "Memory"): the API process, started as
// `npm start` starts it but with a smaller heap (its API child process gets the heap flags
// `start` was given), answers hundreds of distinct documents, each as
// large as the limits allow (GRAPHQL_MAX_COLLECTIONS connections, GRAPHQL_MAX_FIELDS fields),
// and stays up: Grafast's operation plans (about 2.4 MB each for such a document) are cached for
// at most GRAPHQL_DOCUMENT_CACHE_SIZE documents. With Grafast's own default (500 documents),
// these plans alone would need about 380 MB, and the process would die of an exhausted heap.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, expect, test } from '@jest/globals';
import fs from 'node:fs';
import { childrenOf, processMemory } from '../bench/proc.ts';
import { ROOT } from '../src/paths.ts';
import { scriptNodeFlags } from '../src/supervisor.ts';
import { tokenFor } from './support/app.ts';
import { closePools, createOrganization, signUp, urlFor } from './support/db.ts';
import { freePort } from '../src/free-port.ts';

afterAll(closePools);

const HEAP_MB = 256;
const DOCUMENTS = 160;

test(`${DOCUMENTS} distinct documents at the limits leave the API up within a ${HEAP_MB} MB heap`, async () => {
  const owner = await signUp('memory');
  const orgId = await createOrganization(owner, 'memory');
  const token = await tokenFor(owner, orgId);
  const port = await freePort();
  // npm start's flags, with a smaller old space (the semi-space setting stays).
  const flags = scriptNodeFlags('start').filter((f) => !f.startsWith('--max-old-space-size'));
  const child = spawn(process.execPath, [...flags, `--max-old-space-size=${HEAP_MB}`, path.join(ROOT, 'src/cli.ts'), 'start'], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: urlFor('owner'), PORT: String(port), WORKER_INLINE: 'false', SEED_DEMO_DATA: 'false', LOG_LEVEL: 'warn', LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output = (output + d).slice(-20_000)));
  child.stderr.on('data', (d) => (output = (output + d).slice(-20_000)));
  let exit: string | undefined;
  child.once('exit', (code, signal) => (exit = `exit ${code ?? signal}`));
  const url = `http://127.0.0.1:${port}/graphql`;
  const post = async (query: string) => {
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query }) });
    return (await response.json()) as { data?: Record<string, any>; errors?: unknown[] };
  };
  try {
    const deadline = Date.now() + 90_000;
    while ((await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status).catch(() => 0)) !== 200) {
      if (exit || Date.now() > deadline) throw new Error(`the API did not start (${exit ?? 'timeout'}):\n${output}`);
      await sleep(200);
    }
    // The API runs in a child process of `start` (src/index.ts, startSupervised): the one measured.
    const apiPids = () => childrenOf(child.pid!).filter((pid) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('cli.ts\0api'));
    const [apiPid] = apiPids();
    expect(apiPid).toEqual(expect.any(Number));
    expect(fs.readFileSync(`/proc/${apiPid}/cmdline`, 'utf8')).toContain(`--max-old-space-size=${HEAP_MB}`);
    // The root connections and, for each, the scalar fields of its nodes.
    const schema = await post('{ __schema { queryType { fields { name args { name type { kind } } type { name } } } } }');
    const connections = (schema.data!.__schema.queryType.fields as Array<{ name: string; args: Array<{ name: string; type: { kind: string } }>; type: { name: string | null } }>)
      .filter((f) => f.args.some((a) => a.name === 'first') && f.type.name?.endsWith('Connection') && !f.args.some((a) => a.type.kind === 'NON_NULL')); // (not those that need arguments: recordHistory, activityBetween)
    const scalars = new Map<string, string[]>();
    for (const connection of connections) {
      const type = await post(`{ __type(name: "${connection.type.name!.replace(/Connection$/, '')}") { fields { name args { name } type { kind ofType { kind } } } } }`);
      const fields = (type.data!.__type?.fields ?? []) as Array<{ name: string; args: unknown[]; type: { kind: string; ofType: { kind: string } | null } }>;
      scalars.set(connection.name, fields.filter((f) => f.args.length === 0 && ['SCALAR', 'ENUM'].includes(f.type.kind === 'NON_NULL' ? f.type.ofType!.kind : f.type.kind)).map((f) => f.name));
    }
    // 20 connections × (connection + nodes + 13 fields) = 300 fields: at both limits.
    const chosen = connections.filter((c) => scalars.get(c.name)!.length >= 13).slice(0, 20);
    expect(chosen.length).toBe(20);
    for (let i = 0; i < DOCUMENTS; i++) {
      const query = `query Widest${i} { ${chosen.map((c, j) => `${c.name}(first: ${1 + ((i + j) % 7)}) { nodes { ${scalars.get(c.name)!.slice(0, 13).join(' ')} } }`).join(' ')} }`;
      const answer = await post(query).catch((error: Error) => ({ errors: [`no answer: ${error.message}`] }));
      if (answer.errors) throw new Error(`document ${i}: ${JSON.stringify(answer.errors).slice(0, 500)} (${exit ?? 'process up'})\n${output.slice(-3000)}`);
    }
    expect(exit).toBeUndefined();
    expect(await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status)).toBe(200);
    expect(apiPids()).toEqual([apiPid]); // the same API process: it never died (and was restarted)
    const memory = processMemory(apiPid!);
    expect(memory).toBeDefined();
    // Heap bounded by --max-old-space-size (the process would have died otherwise), plus code,
    // young generation and buffers.
    expect(memory!.rssMB).toBeLessThan(HEAP_MB + 250);
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => (exit ? resolve(undefined) : child.once('exit', resolve)));
  }
}, 240_000);
