// Request authentication: verifies the bearer access token (if any) before GraphQL runs.
// No token: the request is anonymous (it can still register, sign in, refresh).
// A bad, expired or tampered token: 401 with a JSON error, and GraphQL never runs.
// A good token: its claims become the session settings the database checks (pgSettingsFor).
import type { NextFunction, Request, Response } from 'express';
import type { Config } from '../config.ts';
import type { AccessClaims, TokenService } from '../auth/tokens.ts';
import { TokenError } from '../auth/tokens.ts';

const claimsOf = new WeakMap<Request, AccessClaims>();

export function requestClaims(req: Request): AccessClaims | undefined {
  return claimsOf.get(req);
}

export function sendJsonError(res: Response, status: number, code: string, message: string, extensions: Record<string, unknown> = {}): void {
  res.status(status).json({ errors: [{ message, extensions: { code, httpStatus: status, ...extensions } }] });
}

export function authenticate(tokens: TokenService) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const header = req.headers.authorization;
    if (header === undefined || header === '') return next();
    const match = /^Bearer ([A-Za-z0-9_\-.=]+)$/.exec(header.trim());
    if (!match) {
      res.setHeader('WWW-Authenticate', 'Bearer error="invalid_request"');
      return sendJsonError(res, 401, 'INVALID_TOKEN', 'The Authorization header must be "Bearer <access token>".');
    }
    try {
      claimsOf.set(req, await tokens.verify(match[1]));
      next();
    } catch (error) {
      if (!(error instanceof TokenError)) return next(error);
      res.setHeader('WWW-Authenticate', `Bearer error="invalid_token", error_description="${error.message}"`);
      sendJsonError(res, 401, error.code, error.message);
    }
  };
}

/**
 * The settings every database transaction of a request runs with: the visitor role, the
 * verified claims as app.user_id / app.session_id / app.org_id (absent when anonymous), and the
 * client's address (src/http/client-address.ts) as app.client_address, which the sign-in
 * throttle keys on (app_private.login).
 */
export function pgSettingsFor(config: Config, claims: AccessClaims | undefined, clientAddress?: string): Record<string, string> {
  const settings: Record<string, string> = {
    role: config.database.roles.visitor,
    // No statement of a request runs longer (QUERY_TIMEOUT); the transaction is rolled back.
    statement_timeout: String(config.graphql.statementTimeoutMs),
    'app.refresh_token_ttl_seconds': String(config.auth.refreshTokenTtlSeconds),
    // How long a requested upload stays open (sql/functions/files.sql).
    'app.file_upload_ttl_seconds': String(config.files.uploadUrlTtlSeconds),
  };
  if (clientAddress) settings['app.client_address'] = clientAddress;
  if (claims) {
    settings['app.user_id'] = claims.userId;
    settings['app.session_id'] = claims.sessionId;
    if (claims.organizationId) settings['app.org_id'] = claims.organizationId;
  }
  return settings;
}
