// At most GRAPHQL_MAX_CONCURRENT GraphQL requests in progress at once; the next ones wait their
// turn in a queue of at most GRAPHQL_MAX_QUEUED, for at most GRAPHQL_QUEUE_TIMEOUT_MS, and are
// then answered 503 SERVICE_UNAVAILABLE with Retry-After (so is any request beyond the queue).
//
// Why: a request's memory peaks while its result is built and sent (docs/SECURITY.md, "Memory":
// about 5 KB of heap per row of the answer at its peak), so the number of requests in progress,
// times the rows one may return (GRAPHQL_MAX_ROWS), is what the heap must hold besides its
// caches. A request counts from the moment it is let in until its answer is sent or its
// connection closes; waiting requests hold only their socket (the body is read once let in).
import type { NextFunction, Request, Response } from 'express';
import { sendJsonError } from './auth.ts';

export interface ConcurrencyLimits {
  maxConcurrent: number;
  maxQueued: number;
  queueTimeoutMs: number;
}

export interface ConcurrencyGate {
  middleware(req: Request, res: Response, next: NextFunction): void;
  /** Requests in progress and waiting (for tests and health). */
  stats(): { active: number; queued: number; refused: number };
}

export function concurrencyGate(limits: ConcurrencyLimits): ConcurrencyGate {
  let active = 0;
  let refused = 0;
  const queue: Array<{ admit: () => void; timer: NodeJS.Timeout }> = [];

  const release = () => {
    active--;
    const next = queue.shift();
    if (next) {
      clearTimeout(next.timer);
      next.admit();
    }
  };

  const refuse = (res: Response, why: string) => {
    refused++;
    res.setHeader('Retry-After', '1');
    sendJsonError(res, 503, 'SERVICE_UNAVAILABLE', `The server is busy (${why}); retry in a moment.`);
  };

  return {
    stats: () => ({ active, queued: queue.length, refused }),
    middleware(req, res, next) {
      const admit = () => {
        active++;
        let done = false;
        const finish = () => {
          if (done) return;
          done = true;
          release();
        };
        res.once('finish', finish);
        res.once('close', finish);
        next();
      };
      if (active < limits.maxConcurrent) return admit();
      if (queue.length >= limits.maxQueued) return refuse(res, 'too many requests waiting');
      const entry = {
        admit: () => {
          req.socket.off('close', onClose);
          if (res.writableEnded || req.socket.destroyed) {
            // The client gave up while waiting: pass the turn on.
            active++;
            release();
            return;
          }
          admit();
        },
        timer: setTimeout(() => {
          const index = queue.indexOf(entry);
          if (index >= 0) queue.splice(index, 1);
          req.socket.off('close', onClose);
          refuse(res, `no turn within ${limits.queueTimeoutMs} ms`);
        }, limits.queueTimeoutMs),
      };
      const onClose = () => {
        const index = queue.indexOf(entry);
        if (index >= 0) queue.splice(index, 1);
        clearTimeout(entry.timer);
      };
      req.socket.once('close', onClose);
      queue.push(entry);
    },
  };
}
