// Persisted (trusted) operations: when PERSISTED_OPERATIONS names a folder of `<id>.graphql`
// files or a JSON manifest `{ "<id>": "<document>" }` (what GraphQL Codegen's client preset with
// `persistedDocuments: true`, Relay's `--persist-output` and similar tools write), the API
// runs only those operations: a request sends the operation's id — `documentId` (Relay and
// GraphQL over HTTP), `id`, or `extensions.persistedQuery.sha256Hash` (Apollo) — and variables.
// ALLOW_UNPERSISTED_OPERATIONS=true also accepts other documents (a transition period).
//
// The operations are read once at start into memory (no file access per request, so asking for
// unknown ids costs nothing); an id that is a SHA-256 hex digest must be the digest of its
// document, so a manifest cannot carry a document under another document's id. Served by
// @grafserv/persisted, with its getter and id extraction replaced by ours (they never throw, so
// nothing about a refused request, such as its variables, is logged).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PersistedPlugin } from '@grafserv/persisted';
import type { GraphQLEdgeConfig } from '../config.ts';

export class PersistedOperationsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PersistedOperationsError';
  }
}

const ID = /^[A-Za-z0-9_:.-]{1,128}$/;
const SHA256 = /^[0-9a-f]{64}$/;

export const operationId = (document: string): string => createHash('sha256').update(document, 'utf8').digest('hex');

/** Reads the registered operations from a folder of `<id>.graphql` files or a JSON manifest. */
export function loadPersistedOperations(location: string): Map<string, string> {
  const operations = new Map<string, string>();
  const add = (id: string, document: unknown, where: string) => {
    if (!ID.test(id)) throw new PersistedOperationsError(`${where}: "${id}" is not a valid operation id (letters, digits, _ : . -; at most 128)`);
    if (typeof document !== 'string' || document.trim() === '') throw new PersistedOperationsError(`${where}: the operation "${id}" has no document`);
    if (SHA256.test(id) && operationId(document) !== id) throw new PersistedOperationsError(`${where}: "${id}" is not the SHA-256 of its document (it is ${operationId(document)})`);
    operations.set(id, document);
  };
  let stat: fs.Stats;
  try {
    stat = fs.statSync(location);
  } catch {
    throw new PersistedOperationsError(`PERSISTED_OPERATIONS: ${location} does not exist`);
  }
  if (stat.isDirectory()) {
    for (const file of fs.readdirSync(location).filter((f) => f.endsWith('.graphql')).sort()) {
      add(file.slice(0, -'.graphql'.length), fs.readFileSync(path.join(location, file), 'utf8'), `PERSISTED_OPERATIONS ${path.join(location, file)}`);
    }
  } else {
    let manifest: unknown;
    try {
      manifest = JSON.parse(fs.readFileSync(location, 'utf8'));
    } catch (error) {
      throw new PersistedOperationsError(`PERSISTED_OPERATIONS: ${location} is not JSON (${(error as Error).message})`);
    }
    if (typeof manifest !== 'object' || manifest === null || Array.isArray(manifest)) {
      throw new PersistedOperationsError(`PERSISTED_OPERATIONS: ${location} must hold a JSON object { "<id>": "<document>" }`);
    }
    for (const [id, document] of Object.entries(manifest)) add(id, document, `PERSISTED_OPERATIONS ${location}`);
  }
  if (operations.size === 0) throw new PersistedOperationsError(`PERSISTED_OPERATIONS: ${location} holds no operations`);
  return operations;
}

/** The operation id a request names, if any. */
export function idFromRequest(body: { documentId?: unknown; id?: unknown; extensions?: { persistedQuery?: { sha256Hash?: unknown } } } | null | undefined): string | undefined {
  const id = body?.documentId ?? body?.id ?? body?.extensions?.persistedQuery?.sha256Hash;
  return typeof id === 'string' ? id : undefined;
}

/** The preset part that enables persisted operations (empty when PERSISTED_OPERATIONS is unset). */
export function persistedOperationsPreset(config: Pick<GraphQLEdgeConfig, 'persistedOperations' | 'allowUnpersistedOperations'>): GraphileConfig.Preset {
  if (config.persistedOperations === undefined) return {};
  const operations = loadPersistedOperations(config.persistedOperations);
  return {
    plugins: [PersistedPlugin],
    grafserv: {
      // '' (no id) finds nothing: the plugin then refuses the request without logging it.
      hashFromPayload: (body) => idFromRequest(body as never) ?? (config.allowUnpersistedOperations && typeof (body as { query?: unknown })?.query === 'string' ? undefined : ''),
      persistedOperationsGetter: (id: string) => operations.get(id) ?? null,
      allowUnpersistedOperation: config.allowUnpersistedOperations,
    } as GraphileConfig.GrafservOptions,
  };
}
