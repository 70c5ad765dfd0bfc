// Access tokens: short-lived HS256 JWTs naming the user, their session and the organization
// the session is scoped to. Signed and verified here with `jose`; what they may do is decided
// by the database (app_public.current_user_id() re-checks the session on every query).
import { errors, jwtVerify, SignJWT } from 'jose';

export const ISSUER = 'atrium';
export const AUDIENCE = 'atrium-api';

export interface AccessClaims {
  userId: string;
  sessionId: string;
  organizationId: string | null;
}

export class TokenError extends Error {
  readonly code: 'TOKEN_EXPIRED' | 'INVALID_TOKEN';
  constructor(code: 'TOKEN_EXPIRED' | 'INVALID_TOKEN', message: string) {
    super(message);
    this.name = 'TokenError';
    this.code = code;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface TokenService {
  sign(claims: AccessClaims): Promise<{ token: string; expiresAt: Date }>;
  verify(token: string): Promise<AccessClaims>;
}

export function createTokenService(secret: string, ttlSeconds: number): TokenService {
  const key = new TextEncoder().encode(secret);
  return {
    async sign({ userId, sessionId, organizationId }) {
      const now = Math.floor(Date.now() / 1000);
      const exp = now + ttlSeconds;
      const token = await new SignJWT({ sid: sessionId, org: organizationId })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(userId)
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt(now)
        .setExpirationTime(exp)
        .sign(key);
      return { token, expiresAt: new Date(exp * 1000) };
    },
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, key, { issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'] });
        const { sub, sid, org } = payload;
        if (typeof sub !== 'string' || !UUID.test(sub) || typeof sid !== 'string' || !UUID.test(sid) || (org !== null && (typeof org !== 'string' || !UUID.test(org)))) {
          throw new TokenError('INVALID_TOKEN', 'The access token is missing required claims.');
        }
        return { userId: sub, sessionId: sid, organizationId: org };
      } catch (error) {
        if (error instanceof TokenError) throw error;
        if (error instanceof errors.JWTExpired) throw new TokenError('TOKEN_EXPIRED', 'The access token has expired; get a new one with the refresh mutation.');
        throw new TokenError('INVALID_TOKEN', 'The access token is invalid (malformed, tampered with, or not issued by this server).');
      }
    },
  };
}
