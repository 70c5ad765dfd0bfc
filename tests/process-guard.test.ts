// The last line of defence of every process (src/process-guard.ts): an error nothing handled is
// logged at fatal level and ends the process with code 70, so that its supervisor starts a fresh
// one — never silently; the one rejection graphile-worker 0.18 leaves unhandled when it loses the
// database while its local queue holds jobs (src/worker/shutdown-errors.ts) is recognised and
// logged at warn level, and the process goes on. (tests/fault-injection.test.ts meets it for real
// when it stops PostgreSQL under load; its timing decides whether it comes.)
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, test } from '@jest/globals';
import { ROOT } from '../src/paths.ts';

/** Runs `body` in a fresh Node process with the guard installed (and graphile-worker's rejection registered). */
function run(body: string): { code: number | null; lines: Array<Record<string, any>> } {
  const script = `
    import { createLogger } from ${JSON.stringify(path.join(ROOT, 'src/log.ts'))};
    import { installProcessGuard } from ${JSON.stringify(path.join(ROOT, 'src/process-guard.ts'))};
    import { shutdownErrorsPlugin } from ${JSON.stringify(path.join(ROOT, 'src/worker/shutdown-errors.ts'))};
    const log = createLogger('info');
    installProcessGuard(log);
    shutdownErrorsPlugin(log);
    ${body}
  `;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, env: { ...process.env, LOG_FORMAT: 'json' }, encoding: 'utf8', timeout: 30_000 });
  const lines = result.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, any>);
  return { code: result.status, lines };
}

test('an unhandled rejection is logged at fatal level (message, no other fields) and ends the process with code 70', () => {
  const { code, lines } = run(`Promise.reject(Object.assign(new Error('disk on fire'), { client: { password: 'hunter2' } })); setTimeout(() => console.log('{"msg":"still running"}'), 500);`);
  expect(code).toBe(70);
  expect(lines.map((l) => ({ level: l.level, kind: l.kind, message: l.error?.message }))).toEqual([{ level: 60, kind: 'unhandled promise rejection', message: 'disk on fire' }]);
  expect(JSON.stringify(lines)).not.toContain('hunter2');
});

test('an uncaught exception too', () => {
  const { code, lines } = run(`setTimeout(() => { throw new TypeError('boom'); }, 10);`);
  expect(code).toBe(70);
  expect(lines.map((l) => ({ level: l.level, kind: l.kind, message: l.error?.message }))).toEqual([{ level: 60, kind: 'uncaught exception', message: 'boom' }]);
});

test("graphile-worker's unhandled return of its local queue's jobs is logged at warn level, and the process goes on", () => {
  const { code, lines } = run(
    `Promise.reject(new Error('Error occurred whilst returning jobs from local queue to database queue: the database system is shutting down'));
     setTimeout(() => { console.log('{"msg":"still running"}'); process.exit(0); }, 300);`,
  );
  expect(code).toBe(0);
  expect(lines.map((l) => ({ level: l.level, msg: l.msg }))).toEqual([
    { level: 40, msg: "graphile-worker could not return its local queue's jobs (database lost); they are freed when the worker restarts" },
    { level: undefined, msg: 'still running' },
  ]);
});

describe("graphile-worker's local queue, released while returning jobs to a database that is gone", () => {
  const localQueueSource = path.join(ROOT, 'node_modules/graphile-worker/dist/localQueue.js');

  test('the return it refuses to track gets a handler where it is made: logged at warn level, no unhandled rejection', async () => {
    const { EventEmitter } = await import('node:events');
    const pino = (await import('pino')).default;
    const { guardLocalQueueReturns } = await import('../src/worker/shutdown-errors.ts');
    const lines: Array<Record<string, any>> = [];
    const log = pino({ level: 'info' }, { write: (text: string) => void lines.push(JSON.parse(text)) });
    const events = new EventEmitter();
    guardLocalQueueReturns(events as never, log as never);
    // What graphile-worker 0.18's LocalQueue does in returnJobs once released (checked below):
    // emit localQueue:returnJobs, then hand the return to background(), which refuses it.
    const queue = {
      background(_promise: Promise<unknown>) {
        throw new Error('Cannot background something when the queue is already released');
      },
    };
    events.emit('localQueue:returnJobs', { localQueue: queue, jobs: [] });
    const failing = Promise.reject(new Error('Error occurred whilst returning jobs from local queue to database queue: the database system is shutting down'));
    expect(() => queue.background(failing)).toThrow(/Cannot background something/);
    await new Promise((resolve) => setTimeout(resolve, 50)); // (jest fails the test on an unhandled rejection)
    expect(lines.map((l) => ({ level: l.level, msg: l.msg, error: l.error }))).toEqual([
      { level: 40, msg: "graphile-worker could not return its local queue's jobs (database lost); they are freed when the worker restarts", error: 'Error occurred whilst returning jobs from local queue to database queue: the database system is shutting down' },
    ]);
    // Guarded once: a second return goes through the same wrapper, not a wrapper of it.
    const wrapped = queue.background;
    events.emit('localQueue:returnJobs', { localQueue: queue, jobs: [] });
    expect(queue.background).toBe(wrapped);
  });

  test('the installed graphile-worker still does it that way: the event first, then background() (else the guard above is moot)', async () => {
    const fs = await import('node:fs');
    const source = fs.readFileSync(localQueueSource, 'utf8');
    const returnJobs = source.slice(source.indexOf('    returnJobs() {'), source.indexOf('    receivedJobs(jobs) {'));
    expect(returnJobs.indexOf('"localQueue:returnJobs"')).toBeGreaterThan(0);
    expect(returnJobs.indexOf('this.background(returnJobs(')).toBeGreaterThan(returnJobs.indexOf('"localQueue:returnJobs"'));
    expect(source).toContain('throw new Error(`Cannot background something when the queue is already released`)');
  });
});
