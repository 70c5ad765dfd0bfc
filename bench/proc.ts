// Memory of processes, read from Linux's /proc: a process's resident set (VmRSS) and its peak
// (VmHWM, kept by the kernel, so no sample can miss it), and the footprint of a PostgreSQL server
// — the postmaster and every process it started. Their RSS added up counts the shared buffers
// (and shared libraries) once per process that touched them; their PSS (proportional set size,
// /proc/<pid>/smaps_rollup) shares each page among the processes that map it, so the PSS sum is
// the server's real footprint.
import fs from 'node:fs';
import path from 'node:path';

const MB = 1024 * 1024;

export interface ProcessMemory {
  /** Resident set now, MB. */
  rssMB: number;
  /** Highest resident set since the process started, MB. */
  peakMB: number;
}

function statusField(status: string, field: string): number | undefined {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? (Number(m[1]) * 1024) / MB : undefined;
}

/** VmRSS and VmHWM of `pid`; undefined when it is gone (or this is not Linux). */
export function processMemory(pid: number): ProcessMemory | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssMB = statusField(status, 'VmRSS');
    const peakMB = statusField(status, 'VmHWM');
    return rssMB === undefined || peakMB === undefined ? undefined : { rssMB, peakMB };
  } catch {
    return undefined;
  }
}

/** PSS of `pid` in MB (smaps_rollup); undefined when unreadable. */
export function processPss(pid: number): number | undefined {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? (Number(m[1]) * 1024) / MB : undefined;
  } catch {
    return undefined;
  }
}

/** Every live process whose parent is `pid`. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export interface PostgresFootprint {
  processes: number;
  /** Sum of the processes' RSS: shared buffers counted once per process that touched them. */
  rssMB: number;
  /** Sum of their PSS: each shared page divided among its users (undefined if unreadable). */
  pssMB: number | undefined;
}

/** The postmaster's pid from the data directory's postmaster.pid (first line). */
export function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The footprint of the server whose postmaster is `pid`: it and its children. */
export function postgresFootprint(pid: number): PostgresFootprint | undefined {
  const pids = [pid, ...childrenOf(pid)];
  let rss = 0;
  let pss: number | undefined = 0;
  let processes = 0;
  for (const p of pids) {
    const mem = processMemory(p);
    if (!mem) continue;
    processes++;
    rss += mem.rssMB;
    const share = processPss(p);
    pss = share === undefined || pss === undefined ? undefined : pss + share;
  }
  return processes === 0 ? undefined : { processes, rssMB: rss, pssMB: pss };
}

export interface Sample<T> {
  /** Seconds since the sampler started. */
  at: number;
  value: T;
}

/** Calls `read` every `intervalMs` until stopped; keeps every defined answer with its time. */
export function sampler<T>(intervalMs: number, read: () => T | undefined): { samples: Sample<T>[]; stop(): Sample<T>[] } {
  const started = process.hrtime.bigint();
  const samples: Sample<T>[] = [];
  const take = () => {
    const value = read();
    if (value !== undefined) samples.push({ at: Number(process.hrtime.bigint() - started) / 1e9, value });
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    samples,
    stop() {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}

/** Least-squares slope of value over time (units per second); NaN with fewer than 2 points. */
export function slope(points: Array<{ at: number; value: number }>): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((a, p) => a + p.at, 0) / n;
  const my = points.reduce((a, p) => a + p.value, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.at - mx) * (p.value - my);
    den += (p.at - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}
