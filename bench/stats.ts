// Latency statistics and the shape of every benchmark figure.
import type { Stats } from '../src/stats.ts';

export { stats, type Stats } from '../src/stats.ts';

/**
 * One line of a benchmark section: our figure, the baseline measured beside it in the same run,
 * their ratio, and the target it is held to. Latencies are Stats in ms; throughputs and sizes
 * are plain numbers with a unit.
 */
export interface Row {
  name: string;
  unit: 'ms' | 'ops/s' | 'MB' | 'MB/s' | 'count' | 'ratio';
  ours: Stats | number;
  baseline?: Stats | number;
  baselineLabel?: string;
  /** ours / baseline: for latencies p50 and p95; for throughputs one number. */
  ratio?: { p50?: number; p95?: number; value?: number };
  /** The target, in words, e.g. "p50 ratio ≤ 1.10". */
  target?: string;
  /** Whether the target is met (undefined: no target). */
  pass?: boolean;
  note?: string;
}

export interface Section {
  id: string;
  title: string;
  rows: Row[];
  notes: string[];
}

export const isStats = (v: Stats | number | undefined): v is Stats => typeof v === 'object' && v !== null;

/** Times `fn` `n` times (after `warmup` untimed runs), in milliseconds. */
export async function timeEach(n: number, fn: (i: number) => Promise<unknown>, warmup = Math.min(50, Math.ceil(n / 10))): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn(i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await fn(i);
    out.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return out;
}

/**
 * Times two variants interleaved (A, B, A, B, ...), so both see the same machine noise.
 * Returns their timings in milliseconds.
 */
export async function timeSideBySide(n: number, a: (i: number) => Promise<unknown>, b: (i: number) => Promise<unknown>, warmup = 50): Promise<[number[], number[]]> {
  for (let i = 0; i < warmup; i++) {
    await a(i);
    await b(i);
  }
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < n; i++) {
    const order = i % 2 === 0;
    for (const [fn, out] of order ? ([[a, ta], [b, tb]] as const) : ([[b, tb], [a, ta]] as const)) {
      const t = process.hrtime.bigint();
      await fn(i);
      out.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  }
  return [ta, tb];
}
