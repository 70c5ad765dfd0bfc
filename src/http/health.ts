// Liveness and readiness:
//   GET /healthz  200 while the process is up (no dependencies checked)
//   GET /readyz   200 when the database answers, migrations are current and (if this process
//                 runs one) the job worker is running; 503 with the failing checks otherwise.
//                 It also says where the rate limits are counted (redis, or memory), without
//                 failing when Redis is down: the API works on without it (src/http/rate-limits.ts).
import type { Express } from 'express';

export interface ReadinessChecks {
  database(): Promise<void>;
  pendingMigrations(): Promise<string[]>;
  /** 'running' when healthy; otherwise what is wrong. */
  worker?(): string;
  /** Where the rate limits are counted; informative only: a Redis outage does not make the API unready. */
  rateLimits?(): string;
}

const withTimeout = <T>(promise: Promise<T>, ms: number): Promise<T> =>
  Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref())]);

export function installHealth(app: Express, checks: ReadinessChecks): void {
  const started = Date.now();
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', uptimeSeconds: Math.round((Date.now() - started) / 1000) });
  });
  app.get('/readyz', async (_req, res) => {
    const result: Record<string, string> = {};
    let ready = true;
    try {
      await withTimeout(checks.database(), 2000);
      result.database = 'ok';
    } catch (error) {
      ready = false;
      result.database = `unreachable: ${(error as Error).message}`;
    }
    try {
      const pending = await withTimeout(checks.pendingMigrations(), 5000);
      result.migrations = pending.length === 0 ? 'current' : `pending: ${pending.join(', ')}`;
      ready &&= pending.length === 0;
    } catch (error) {
      ready = false;
      result.migrations = `unknown: ${(error as Error).message}`;
    }
    if (checks.worker) {
      result.worker = checks.worker();
      ready &&= result.worker === 'running';
    } else {
      result.worker = 'not in this process';
    }
    if (checks.rateLimits) result.rateLimits = checks.rateLimits();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks: result });
  });
}
