// The job worker in a process of its own, started and supervised by `npm start`
// (src/supervisor.ts): an API flood that fills the API process's heap cannot take jobs in flight
// down with it, and each process has its own heap bound (package.json: `start` for the API,
// `worker` for this one). The child (src/cli.ts worker --supervised) reports its health every
// 2 s over the IPC channel; the parent passes it on to the API process, whose /readyz shows it.
import type { Logger } from '../log.ts';
import { scriptNodeFlags, stopWithParent, superviseChild } from '../supervisor.ts';


export interface WorkerProcessOptions {
  /** Environment of the child: the parent's, plus how to reach the database. */
  env: NodeJS.ProcessEnv;
  log: Logger;
  /** How long a stop waits for the child before killing it. */
  stopTimeoutMs?: number;
}

/** What the worker reports over IPC (and the parent passes on to the API process). */
export interface WorkerHealthMessage {
  type: 'worker-health';
  state: 'running' | 'restarting' | 'stopped' | string;
  lastHeartbeatAt: string | null;
}

export interface WorkerHealth {
  state: string;
  lastHeartbeatAt: Date | null;
}

export interface WorkerProcess {
  pid(): number | undefined;
  restarts(): number;
  /** The child's last report, or what is wrong with it. */
  health(): WorkerHealth;
  stop(): Promise<void>;
}

export const isWorkerHealthMessage = (message: unknown): message is WorkerHealthMessage => (message as WorkerHealthMessage | undefined)?.type === 'worker-health';

export function startWorkerProcess(options: WorkerProcessOptions): WorkerProcess {
  let latest: WorkerHealthMessage | undefined;
  let stopping = false;
  const child = superviseChild({
    name: 'job worker',
    nodeFlags: scriptNodeFlags('worker'),
    args: ['worker', '--supervised'],
    env: () => options.env,
    log: options.log,
    stopTimeoutMs: options.stopTimeoutMs,
    onMessage: (message) => {
      if (isWorkerHealthMessage(message)) latest = message;
    },
    onExit: () => (latest = undefined),
  });
  return {
    pid: () => child.pid(),
    restarts: () => child.restarts(),
    health() {
      if (child.pid() === undefined) return { state: stopping ? 'stopped' : 'restarting (the worker process exited)', lastHeartbeatAt: null };
      if (!latest) return { state: 'running', lastHeartbeatAt: null }; // starting: its first report is on its way
      return { state: latest.state, lastHeartbeatAt: latest.lastHeartbeatAt === null ? null : new Date(latest.lastHeartbeatAt) };
    },
    stop: () => {
      stopping = true;
      return child.stop();
    },
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
  stopWithParent(stop);
}

/** Worker health as reported from elsewhere (the API process of `npm start` gets it from the parent, every 2 s). */
export function relayedWorkerHealth(): { health(): WorkerHealth; receive(message: unknown): void } {
  let latest: WorkerHealthMessage | undefined;
  let receivedAt = Date.now();
  return {
    receive(message) {
      if (!isWorkerHealthMessage(message)) return;
      latest = message;
      receivedAt = Date.now();
    },
    health() {
      const silentMs = Date.now() - receivedAt;
      if (silentMs > 10_000) return { state: `no report of the worker for ${Math.round(silentMs / 1000)} s`, lastHeartbeatAt: null };
      if (!latest) return { state: 'running', lastHeartbeatAt: null }; // starting: the first report is on its way
      return { state: latest.state, lastHeartbeatAt: latest.lastHeartbeatAt === null ? null : new Date(latest.lastHeartbeatAt) };
    },
  };
}
