// What every benchmark section gets: the database (roles and URLs), the generated dataset, the
// options and a logger; and what it returns: a Section (bench/stats.ts).
import type { Config } from '../src/config.ts';
import type { Database } from '../src/db/bootstrap.ts';
import type { Logger } from '../src/log.ts';
import type { BenchOrg, Dataset } from '../src/db/dataset.ts';
import type { Section } from './stats.ts';

export interface BenchOptions {
  orgs: number;
  rows: number;
  /** Timed iterations per query variant (SQL sections). */
  iterations: number;
  /** Seconds of sustained load (API, jobs throughput). */
  durationSeconds: number;
  /** Seconds of the memory soak (0: skip). */
  soakSeconds: number;
  /** Concurrent connections of the HTTP load generator. */
  connections: number;
  /** Events the activity log grows to in the activity section (--events). */
  activityEvents: number;
  /** Tiny run for the smoke test: few iterations, no long loads. */
  smoke: boolean;
}

export interface BenchContext {
  db: Database;
  config: Config;
  dataset: Dataset;
  options: BenchOptions;
  log: Logger;
  /** Organizations in a fixed pseudo-random order, weighted by size (big tenants get more traffic). */
  pickOrg(i: number): BenchOrg;
  /** Notes for the report (e.g. what could not be measured here). */
  note(message: string): void;
}

export type BenchSection = (ctx: BenchContext) => Promise<Section>;

/** A deterministic pseudo-random sequence (mulberry32): the same run, the same choices. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** pickOrg for a dataset: organization i of a size-weighted shuffled list. */
export function orgPicker(orgs: BenchOrg[], seed = 42): (i: number) => BenchOrg {
  const rnd = random(seed);
  const total = orgs.reduce((a, o) => a + o.tasks, 0);
  const picks: BenchOrg[] = [];
  for (let k = 0; k < 4096; k++) {
    let r = rnd() * total;
    const org = orgs.find((o) => (r -= o.tasks) < 0) ?? orgs[orgs.length - 1]!;
    picks.push(org);
  }
  return (i) => picks[i % picks.length]!;
}
