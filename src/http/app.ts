// The Express app, assembled from small pieces: health, CORS, token authentication, GraphQL
// (grafserv), and JSON errors for everything else.
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { PostGraphileInstance } from 'postgraphile';
import { grafserv } from 'postgraphile/grafserv/express/v4';
import type { Config } from '../config.ts';
import type { TokenService } from '../auth/tokens.ts';
import type { Logger } from '../log.ts';
import { authenticate, sendJsonError } from './auth.ts';
import { concurrencyGate } from './concurrency.ts';
import { installHealth, type ReadinessChecks } from './health.ts';
import { GRAPHQL_PATH } from './postgraphile.ts';
import { installRateLimits } from './rate-limit-requests.ts';
import type { RateLimits } from './rate-limits.ts';
import type { FileStorage } from '../storage/index.ts';
import { LOCAL_FILES_PATH, type LocalStorage } from '../storage/local.ts';

function cors(origins: string[]) {
  return (req: Request, res: Response, next: NextFunction) => {
    const origin = req.headers.origin;
    if (origin && (origins.includes('*') || origins.includes(origin))) {
      res.setHeader('Access-Control-Allow-Origin', origins.includes('*') ? '*' : origin);
      res.setHeader('Vary', 'Origin');
      res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type');
      // PUT: uploads to the local file store (src/storage/local.ts).
      res.setHeader('Access-Control-Allow-Methods', 'GET, POST, PUT, OPTIONS');
      res.setHeader('Access-Control-Max-Age', '600');
    }
    if (req.method === 'OPTIONS') {
      res.status(204).end();
      return;
    }
    next();
  };
}

export async function createApp(options: {
  config: Config;
  pgl: PostGraphileInstance;
  tokens: TokenService;
  readiness: ReadinessChecks;
  server: Server;
  log: Logger;
  /** Request rate limits (src/http/rate-limits.ts); none when RATE_LIMITS=false. */
  rateLimits?: RateLimits;
  /** The file store; the local driver's signed URLs are served here. */
  storage?: FileStorage;
}): Promise<express.Express> {
  const { config, pgl, tokens, readiness, server, log, rateLimits, storage } = options;
  const app = express();
  app.disable('x-powered-by');
  // req.ip: the socket's address, or what the trusted proxies say (TRUST_PROXY, src/http/client-address.ts).
  app.set('trust proxy', config.rateLimits.trustProxy);
  installHealth(app, readiness);
  app.use(cors(config.corsOrigins));
  app.use(GRAPHQL_PATH, authenticate(tokens));
  // After health and CORS preflights (never limited) and the token check (its claims are keys).
  if (rateLimits) installRateLimits(app, rateLimits);
  // The signature in the URL is the authorization (no token): src/storage/local.ts.
  if (storage?.driver === 'local') {
    const local = storage as LocalStorage;
    app.use(LOCAL_FILES_PATH, (req: Request, res: Response, next: NextFunction) => void local.handle(req, res).catch(next));
  }
  const { maxConcurrent, maxQueued, queueTimeoutMs } = config.graphql;
  app.use(GRAPHQL_PATH, concurrencyGate({ maxConcurrent, maxQueued, queueTimeoutMs }).middleware);
  const serv = pgl.createServ(grafserv);
  await serv.addTo(app, server);
  app.use((_req: Request, res: Response) => sendJsonError(res, 404, 'NOT_FOUND', `Nothing here; the GraphQL endpoint is ${GRAPHQL_PATH}.`));
  app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    log.error({ err: error }, 'unhandled HTTP error');
    if (!res.headersSent) sendJsonError(res, 500, 'INTERNAL', 'Unexpected error; it has been logged.');
  });
  return app;
}
