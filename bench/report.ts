// The benchmark's output: a readable table on stdout, a JSON file with every figure and the
// machine's facts, and a comparison with a previous JSON file (regressions over 15% flagged).
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { isStats, type Row, type Section, type Stats } from './stats.ts';

export interface MachineFacts {
  cores: number;
  cpu: string;
  memoryGiB: number;
  node: string;
  postgres: string;
  platform: string;
  date: string;
  /** The code measured: `git rev-parse --short HEAD`, with `+changes` when the tree differs from it. */
  commit?: string;
  /** PostgreSQL's settings that differ from their defaults (pg_settings: from a file or the command line). */
  settings?: Record<string, string>;
}

export interface BenchResult {
  command: string;
  facts: MachineFacts;
  dataset: { orgs: number; rows: number; tables: Record<string, number>; seconds: number };
  sections: Section[];
  notes: string[];
}

/** The commit of the working tree (and whether it has changes), or undefined outside git. */
export function codeCommit(cwd: string): string | undefined {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const changed = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return changed ? `${sha}+changes` : sha;
  } catch {
    return undefined;
  }
}

export function machineFacts(postgres: string): MachineFacts {
  return {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    postgres,
    platform: `${os.platform()} ${os.release()}`,
    date: new Date().toISOString(),
  };
}

const fmt = (v: number, unit: string) =>
  !Number.isFinite(v) ? '-' : unit === 'ops/s' || unit === 'count' ? v.toFixed(0) : unit === 'MB' || unit === 'MB/s' ? v.toFixed(1) : v < 10 ? v.toFixed(3) : v.toFixed(1);

function figure(v: Stats | number | undefined, unit: string): string {
  if (v === undefined) return '';
  if (isStats(v)) return `${fmt(v.p50, unit)} / ${fmt(v.p95, unit)} / ${fmt(v.p99, unit)}`;
  return fmt(v, unit);
}

function ratioText(row: Row): string {
  if (!row.ratio) return '';
  const r = row.ratio;
  if (r.value !== undefined) return `${r.value.toFixed(2)}×`;
  return `${r.p50?.toFixed(2) ?? '-'}× / ${r.p95?.toFixed(2) ?? '-'}×`;
}

export function formatReport(result: BenchResult): string {
  const lines: string[] = [];
  const f = result.facts;
  lines.push(`Atrium benchmark — ${f.date}`);
  lines.push(`${f.cores} cores (${f.cpu}), ${f.memoryGiB} GiB, Node ${f.node}, PostgreSQL ${f.postgres}, ${f.platform}${f.commit ? `, commit ${f.commit}` : ''}`);
  if (f.settings) lines.push(`PostgreSQL settings not at their defaults: ${Object.entries(f.settings).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  lines.push(`Dataset: ${result.dataset.orgs} organizations, ${Object.entries(result.dataset.tables).map(([t, n]) => `${t} ${n}`).join(', ')} (generated in ${result.dataset.seconds.toFixed(1)} s)`);
  lines.push('Latencies: p50 / p95 / p99 in ms. Ratios: ours ÷ baseline (p50 / p95), measured side by side in this run.');
  for (const section of result.sections) {
    lines.push('', `## ${section.title}`);
    const table = section.rows.map((row) => [
      row.name,
      `${figure(row.ours, row.unit)} ${row.unit === 'ms' ? '' : row.unit}`.trim(),
      row.baseline === undefined ? '' : `${figure(row.baseline, row.unit)}${row.baselineLabel ? ` (${row.baselineLabel})` : ''}`,
      ratioText(row),
      row.target ?? '',
      row.pass === undefined ? '' : row.pass ? 'ok' : 'MISSED',
    ]);
    const header = ['measure', 'ours', 'baseline', 'ratio', 'target', ''];
    const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
    lines.push(line(header), line(widths.map((w) => '-'.repeat(w))), ...table.map(line));
    for (const row of section.rows) if (row.note) lines.push(`  * ${row.name}: ${row.note}`);
    for (const note of section.notes) lines.push(`  note: ${note}`);
  }
  if (result.notes.length) lines.push('', ...result.notes.map((n) => `note: ${n}`));
  return `${lines.join('\n')}\n`;
}

/** The figure that a regression is judged on: p50 for latencies, the value otherwise. */
function headline(v: Stats | number | undefined): number | undefined {
  if (v === undefined) return undefined;
  return isStats(v) ? v.p50 : v;
}

export interface Regression {
  section: string;
  row: string;
  before: number;
  after: number;
  change: number;
}

/**
 * Rows whose headline figure got worse by more than `threshold` (0.15 = 15%) against `previous`:
 * latencies and sizes up, throughputs (operations or bytes a second) down.
 */
export function compareResults(previous: BenchResult, current: BenchResult, threshold = 0.15): Regression[] {
  const out: Regression[] = [];
  for (const section of current.sections) {
    const before = previous.sections.find((s) => s.id === section.id);
    if (!before) continue;
    for (const row of section.rows) {
      const old = before.rows.find((r) => r.name === row.name);
      const a = headline(old?.ours);
      const b = headline(row.ours);
      if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || a === 0) continue;
      const higherIsBetter = row.unit === 'ops/s' || row.unit === 'MB/s';
      const change = (b - a) / a;
      if (higherIsBetter ? change < -threshold : change > threshold) out.push({ section: section.title, row: row.name, before: a, after: b, change });
    }
  }
  return out;
}

export function formatRegressions(regressions: Regression[]): string {
  if (regressions.length === 0) return 'Compared with the previous run: no regression over 15%.\n';
  return `Compared with the previous run, ${regressions.length} regression(s) over 15%:\n${regressions
    .map((r) => `  ${r.section} / ${r.row}: ${r.before.toFixed(3)} → ${r.after.toFixed(3)} (${(r.change * 100).toFixed(0)}%)`)
    .join('\n')}\n`;
}
