// A small SVG chart of the latency rows: for each, p50 / p95 / p99 of ours and of the baseline as
// horizontal bars on a log scale, so a 0.2 ms lookup and a 20 ms list share one picture.
import { isStats, type Section, type Stats } from './stats.ts';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function latencyChart(sections: Section[], title: string): string | undefined {
  const rows: Array<{ label: string; ours: Stats; baseline?: Stats }> = [];
  for (const section of sections) {
    for (const row of section.rows) {
      if (row.unit === 'ms' && isStats(row.ours)) rows.push({ label: `${section.id}: ${row.name}`, ours: row.ours, baseline: isStats(row.baseline) ? row.baseline : undefined });
    }
  }
  if (rows.length === 0) return undefined;
  const values = rows.flatMap((r) => [r.ours, r.baseline].filter((s): s is Stats => !!s).flatMap((s) => [s.p50, s.p99])).filter((v) => v > 0);
  const lo = Math.log10(Math.min(...values) / 1.5);
  const hi = Math.log10(Math.max(...values) * 1.5);
  const [labelW, plotW, rowH, top] = [330, 520, 34, 40];
  const x = (v: number) => labelW + ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * plotW;
  const bar = (s: Stats, y: number, color: string) =>
    `<line x1="${x(s.p50).toFixed(1)}" x2="${x(s.p99).toFixed(1)}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="2"/>` +
    `<rect x="${x(s.p50).toFixed(1)}" y="${y - 5}" width="${Math.max(1, x(s.p95) - x(s.p50)).toFixed(1)}" height="10" fill="${color}" opacity="0.8"/>` +
    `<circle cx="${x(s.p50).toFixed(1)}" cy="${y}" r="3" fill="#000"/>`;
  const ticks: string[] = [];
  for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) {
    const v = 10 ** e;
    ticks.push(`<line x1="${x(v)}" x2="${x(v)}" y1="${top - 10}" y2="${top + rows.length * rowH}" stroke="#ddd"/><text x="${x(v)}" y="${top - 14}" font-size="11" text-anchor="middle">${v >= 1 ? v : v.toFixed(-e)} ms</text>`);
  }
  const body = rows
    .map((r, i) => {
      const y = top + i * rowH + 12;
      return `<text x="4" y="${y + 4}" font-size="12">${esc(r.label)}</text>${bar(r.ours, y - 5, '#2b6cb0')}${r.baseline ? bar(r.baseline, y + 7, '#a0aec0') : ''}`;
    })
    .join('\n');
  const height = top + rows.length * rowH + 30;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + plotW + 20}" height="${height}" font-family="sans-serif">
<text x="4" y="16" font-size="13" font-weight="bold">${esc(title)}</text>
<text x="${labelW}" y="${height - 8}" font-size="11">dot p50, box p50–p95, line to p99 (log scale); blue: Atrium, grey: baseline</text>
${ticks.join('\n')}
${body}
</svg>
`;
}
