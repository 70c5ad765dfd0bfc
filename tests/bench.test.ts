// The benchmark harness (npm run bench) in a tiny run: every section runs end to end on a fresh
// database and reports figures; the report, the JSON file and the regression check work. No
// figure is judged here (benchmarks are not timed tests): docs/PERFORMANCE.md has the real run.
import { describe, expect, test } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SECTIONS, parseArgs, runBench } from '../bench/index.ts';
import { REPORT_QUERIES } from '../bench/reports.ts';
import { compareResults, type BenchResult } from '../bench/report.ts';
import { isStats, stats, type Section } from '../bench/stats.ts';
import { testLogger } from './support/log.ts';

describe('the benchmark is a tool beside the product', () => {
  test('nothing under src/ imports the benchmark, and its peers are development dependencies', () => {
    const root = path.join(import.meta.dirname, '..');
    const files = (fs.readdirSync(path.join(root, 'src'), { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(50);
    const importing = files.filter((f) => /from '(\.\.\/)+bench\/|import\('(\.\.\/)+bench\//.test(fs.readFileSync(path.join(root, 'src', f), 'utf8')));
    expect(importing).toEqual([]);
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    for (const peer of ['pg-boss', 'autocannon']) {
      expect(pkg.dependencies[peer]).toBeUndefined();
      expect(pkg.devDependencies[peer]).toBeDefined();
    }
    expect(pkg.scripts.bench).toBe('node bench/index.ts');
  });
});

describe('statistics and comparison', () => {
  test('percentiles are nearest-rank', () => {
    const s = stats(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(s).toMatchObject({ n: 100, p50: 50, p95: 95, p99: 99, min: 1, max: 100, mean: 50.5 });
    expect(stats([7])).toMatchObject({ p50: 7, p95: 7, p99: 7 });
  });

  test('a regression over 15% is flagged: latencies up, throughputs down; smaller changes are not', () => {
    const lat = (p50: number) => ({ n: 1, p50, p95: p50, p99: p50, mean: p50, min: p50, max: p50 });
    const result = (byId: number, list: number, ops: number): BenchResult => ({
      command: '',
      facts: { cores: 2, cpu: '', memoryGiB: 1, node: '', postgres: '', platform: '', date: '' },
      dataset: { orgs: 1, rows: 1, tables: {}, seconds: 0 },
      notes: [],
      sections: [{ id: 's', title: 'S', notes: [], rows: [
        { name: 'by id', unit: 'ms', ours: lat(byId) },
        { name: 'list', unit: 'ms', ours: lat(list) },
        { name: 'writes', unit: 'ops/s', ours: ops },
      ] }],
    });
    const regressions = compareResults(result(1.0, 2.0, 1000), result(1.2, 2.2, 800));
    expect(regressions.map((r) => r.row)).toEqual(['by id', 'writes']);
    expect(compareResults(result(1, 2, 1000), result(1.1, 1, 1200))).toEqual([]);
  });
});

describe('npm run bench -- --smoke', () => {
  test('every section runs and reports figures; the JSON file holds them with the machine facts', async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-bench-test-')), 'result.json');
    let printed = '';
    const result = await runBench(parseArgs(['--smoke', '--out', out]), testLogger('bench'), (t) => (printed += t));
    expect(result.sections.map((s: Section) => s.id)).toEqual(Object.keys(SECTIONS));
    for (const section of result.sections) {
      expect({ section: section.id, rows: section.rows.length > 0 }).toEqual({ section: section.id, rows: true });
      for (const row of section.rows) {
        const value = isStats(row.ours) ? row.ours.p50 : row.ours;
        expect({ row: row.name, finite: Number.isFinite(value) }).toEqual({ row: row.name, finite: true });
      }
    }
    expect(result.dataset.tables.tasks).toBeGreaterThan(0);
    expect(printed).toContain('## 1. Row-level security');
    const saved = JSON.parse(fs.readFileSync(out, 'utf8')) as BenchResult;
    expect(saved.facts).toMatchObject({ cores: os.cpus().length, node: process.version });
    expect(saved.facts.postgres).toMatch(/^\d+/);
    // The code measured (in a git checkout) and the server's settings off their defaults.
    if (fs.existsSync(path.join(process.cwd(), '.git'))) expect(saved.facts.commit).toMatch(/^[0-9a-f]{7,}(\+changes)?$/);
    expect(Object.keys(saved.facts.settings ?? {})).toContain('max_connections');
    // The month-end data the reports read, and each report timed.
    expect(result.dataset.tables.time_entries).toBeGreaterThan(0);
    expect(result.sections.find((s: Section) => s.id === 'reports')!.rows.map((r) => r.name.replace(/ → .*/, ''))).toEqual(REPORT_QUERIES.map((q) => q.name));
    expect(saved.sections).toHaveLength(result.sections.length);
    expect(compareResults(saved, result)).toEqual([]);
  }, 600_000); // a guard against a hang: the smoke of every section takes 2-3 minutes on a loaded 2-core machine
});
