// `npm start` runs the API and the job worker each in a process of its own, and supervises them:
// a part that dies (a crash, an exhausted heap, a kill) is started again, the others go on.
//
//   parent (npm start)                        child (src/cli.ts api|worker --supervised)
//   embedded PostgreSQL, migrations, demo     connects with the URLs and secrets of its
//   data; spawns each child with the          environment, runs no migrations (the parent
//   database URLs and secrets in its          did); reports over the IPC channel (the API its
//   environment                               address once listening, the worker its health
//   restarts a child that exits (1 s, 2 s, …  every 2 s); stops when asked (SIGTERM) or when
//   30 s apart; reset after 60 s of life)     the parent is gone (the channel closes)
//   stops them first at shutdown (SIGTERM,
//   then SIGKILL after 30 s)
//
// Each child runs in its own process group, so a Ctrl-C in the terminal reaches only the parent,
// which then stops the children in order. All write JSON lines to the same stdout.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from './log.ts';
import { ROOT } from './paths.ts';

export interface ChildOptions {
  /** How log lines name it: "the API process exited; restarting it". */
  name: string;
  /** Node's flags (heap bounds) and the arguments of src/cli.ts. */
  nodeFlags: string[];
  args: string[];
  /** Environment of each launch (read again at every restart). */
  env: () => NodeJS.ProcessEnv;
  log: Logger;
  /** A message the child sent over IPC. */
  onMessage?: (message: unknown) => void;
  /** The child exited (before it is restarted). */
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
  /** How long a stop waits for the child before killing it. */
  stopTimeoutMs?: number;
}

export interface SupervisedChild {
  /** The running child's pid (undefined between an exit and its restart). */
  pid(): number | undefined;
  restarts(): number;
  /** Sends a message to the running child, if any. */
  send(message: unknown): void;
  stop(): Promise<void>;
}

/** The Node flags of an npm script (e.g. the heap bounds of `worker`), from package.json. */
export function scriptNodeFlags(script: string): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  return (pkg.scripts[script] ?? '').split(/\s+/).filter((part) => part.startsWith('--'));
}

/** Restart delay after `failuresInARow` exits of short-lived children: 1 s, 2 s, 4 s, … 30 s. */
export const restartDelayMs = (failuresInARow: number): number => Math.min(1000 * 2 ** (failuresInARow - 1), 30_000);

export function superviseChild(options: ChildOptions): SupervisedChild {
  const log = options.log.child({ component: 'supervisor', part: options.name });
  const stopTimeoutMs = options.stopTimeoutMs ?? 30_000;
  let child: ChildProcess | undefined;
  let stopping = false;
  let restarts = 0;
  let restartTimer: NodeJS.Timeout | undefined;
  let failuresInARow = 0;

  const launch = () => {
    const startedAt = Date.now();
    const proc = spawn(process.execPath, [...options.nodeFlags, path.join(ROOT, 'src', 'cli.ts'), ...options.args], {
      cwd: process.cwd(),
      env: options.env(),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      detached: true,
    });
    child = proc;
    // A child that exits while we write to it: the exit handler below deals with it.
    proc.on('error', (error) => log.warn({ error: error.message }, `the ${options.name} process: IPC error`));
    proc.on('message', (message) => options.onMessage?.(message));
    proc.once('exit', (code, signal) => {
      if (child === proc) child = undefined;
      options.onExit?.(code, signal);
      if (stopping) return;
      failuresInARow = Date.now() - startedAt > 60_000 ? 1 : failuresInARow + 1;
      const delay = restartDelayMs(failuresInARow);
      log.error({ code, signal, restartInMs: delay }, `the ${options.name} process exited; restarting it`);
      restartTimer = setTimeout(() => {
        restartTimer = undefined;
        if (stopping) return;
        restarts++;
        launch();
      }, delay);
    });
    log.info({ pid: proc.pid }, `${options.name} process started`);
  };
  launch();

  let stopped: Promise<void> | undefined;
  return {
    pid: () => child?.pid,
    restarts: () => restarts,
    send(message) {
      if (child?.connected) child.send(message as never, (error) => error && log.debug({ error: error.message }, 'message not delivered'));
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
          log.error(`the ${options.name} process did not stop within ${stopTimeoutMs / 1000} s; killing it`);
          proc.kill('SIGKILL');
        }, stopTimeoutMs);
        await exited;
        clearTimeout(timer);
      })()),
  };
}

/** In a child: stop (and exit) when the parent is gone, its IPC channel closed; within 30 s at most. */
export function stopWithParent(stop: () => Promise<void>): void {
  if (!process.send) return;
  process.once('disconnect', () => {
    setTimeout(() => process.exit(1), 30_000).unref();
    void stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
