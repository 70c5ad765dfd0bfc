// The job worker in a process of its own, started and supervised by `npm start`: an API flood
// that fills the API process's heap cannot take jobs in flight down with it, and each process
// has its own heap bound (package.json: `start` for the API, `worker` for this one).
//
//   parent (npm start)                      child (src/cli.ts worker --supervised)
//   spawns the child with the database      connects as the worker role, runs no migrations
//   URLs and secrets in its environment     (the parent did), reports its health every 2 s
//   restarts it if it dies (1 s, 2 s, …     over the IPC channel; stops when asked (SIGTERM)
//   30 s apart; reset after 60 s of life)   or when the parent is gone (the channel closes)
//   stops it first at shutdown (SIGTERM,
//   then SIGKILL after 30 s)
//
// The child runs in its own process group, so a Ctrl-C in the terminal reaches only the parent,
// which then stops the child in order. Both write JSON lines to the same stdout.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { ROOT } from '../paths.ts';

export interface WorkerProcessOptions {
  /** Environment of the child: the parent's, plus how to reach the database. */
  env: NodeJS.ProcessEnv;
  log: Logger;
  /** How long a stop waits for the child before killing it. */
  stopTimeoutMs?: number;
}

/** What the child reports over IPC. */
export interface WorkerHealthMessage {
  type: 'worker-health';
  state: 'running' | 'restarting' | 'stopped';
  lastHeartbeatAt: string | null;
}

export interface WorkerProcess {
  pid(): number | undefined;
  restarts(): number;
  /** The child's last report, or what is wrong with it. */
  health(): { state: string; lastHeartbeatAt: Date | null };
  stop(): Promise<void>;
}

/** The Node flags of an npm script (e.g. the heap bounds of `worker`), from package.json. */
export function scriptNodeFlags(script: string): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  return (pkg.scripts[script] ?? '').split(/\s+/).filter((part) => part.startsWith('--'));
}

export function startWorkerProcess(options: WorkerProcessOptions): WorkerProcess {
  const log = options.log.child({ component: 'worker-process' });
  const stopTimeoutMs = options.stopTimeoutMs ?? 30_000;
  let child: ChildProcess | undefined;
  let latest: WorkerHealthMessage | undefined;
  let stopping = false;
  let restarts = 0;
  let restartTimer: NodeJS.Timeout | undefined;
  let failuresInARow = 0;

  const launch = () => {
    const startedAt = Date.now();
    latest = undefined;
    const proc = spawn(process.execPath, [...scriptNodeFlags('worker'), path.join(ROOT, 'src', 'cli.ts'), 'worker', '--supervised'], {
      cwd: process.cwd(),
      env: options.env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      detached: true,
    });
    child = proc;
    proc.on('message', (message: WorkerHealthMessage) => {
      if (message?.type === 'worker-health') latest = message;
    });
    proc.once('exit', (code, signal) => {
      if (child === proc) child = undefined;
      if (stopping) return;
      failuresInARow = Date.now() - startedAt > 60_000 ? 1 : failuresInARow + 1;
      const delay = Math.min(1000 * 2 ** (failuresInARow - 1), 30_000);
      log.error({ code, signal, restartInMs: delay }, 'the job worker process exited; restarting it');
      restartTimer = setTimeout(() => {
        restartTimer = undefined;
        if (stopping) return;
        restarts++;
        launch();
      }, delay);
    });
    log.info({ pid: proc.pid }, 'job worker process started');
  };
  launch();

  let stopped: Promise<void> | undefined;
  return {
    pid: () => child?.pid,
    restarts: () => restarts,
    health() {
      if (!child) return { state: stopping ? 'stopped' : 'restarting (the worker process exited)', lastHeartbeatAt: null };
      if (!latest) return { state: 'running', lastHeartbeatAt: null }; // starting: its first report is on its way
      return { state: latest.state, lastHeartbeatAt: latest.lastHeartbeatAt === null ? null : new Date(latest.lastHeartbeatAt) };
    },
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        if (restartTimer) clearTimeout(restartTimer);
        const proc = child;
        if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => {
          log.error(`the job worker process did not stop within ${stopTimeoutMs / 1000} s; killing it`);
          proc.kill('SIGKILL');
        }, stopTimeoutMs);
        await exited;
        clearTimeout(timer);
      })()),
  };
}

/** In the child: report health to the parent, and stop when the parent is gone. */
export function superviseFromParent(worker: { health(): { state: WorkerHealthMessage['state']; lastHeartbeatAt: Date | null } }, stop: () => Promise<void>): void {
  if (!process.send) return;
  const report = () => {
    if (!process.connected) return;
    const { state, lastHeartbeatAt } = worker.health();
    process.send?.({ type: 'worker-health', state, lastHeartbeatAt: lastHeartbeatAt?.toISOString() ?? null } satisfies WorkerHealthMessage);
  };
  report();
  setInterval(report, 2000).unref();
  process.once('disconnect', () => {
    void stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
