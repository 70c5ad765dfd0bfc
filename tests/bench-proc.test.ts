// The benchmark's memory readings (bench/proc.ts): a process's resident set and peak from
// /proc, the processes a parent started (how the PostgreSQL footprint finds its backends), and
// the growth slope the soak's "flat" verdict rests on.
import { spawn } from 'node:child_process';
import { expect, test } from '@jest/globals';
import { childrenOf, postgresFootprint, processMemory, slope } from '../bench/proc.ts';

const linux = process.platform === 'linux';

test('a process reads its resident set and its peak (VmHWM ≥ VmRSS)', () => {
  if (!linux) return;
  const mem = processMemory(process.pid)!;
  expect(mem.rssMB).toBeGreaterThan(1);
  expect(mem.peakMB).toBeGreaterThanOrEqual(mem.rssMB);
  expect(processMemory(2 ** 22 + 12345)).toBeUndefined(); // no such process
});

test('the children of a process are found by their parent pid, and summed into a footprint', async () => {
  if (!linux) return;
  const child = spawn('sleep', ['30']);
  try {
    await new Promise((resolve) => child.once('spawn', resolve));
    expect(childrenOf(process.pid)).toContain(child.pid);
    const footprint = postgresFootprint(process.pid)!;
    expect(footprint.processes).toBeGreaterThanOrEqual(2);
    expect(footprint.rssMB).toBeGreaterThan(processMemory(process.pid)!.rssMB);
    expect(footprint.pssMB).toBeGreaterThan(0);
  } finally {
    child.kill('SIGKILL');
  }
});

test('the growth slope is the least-squares slope (units per second); flat memory has slope 0', () => {
  expect(slope([{ at: 0, value: 100 }, { at: 60, value: 160 }, { at: 120, value: 220 }])).toBeCloseTo(1);
  expect(slope([{ at: 0, value: 100 }, { at: 5, value: 110 }, { at: 10, value: 100 }])).toBeCloseTo(0);
  expect(slope([{ at: 0, value: 100 }])).toBeNaN();
});
