// GraphQL mutations that issue access tokens: login, refresh, switchOrganization, logout; sign-up
// by email: register, confirmRegistration (sql/functions/registration.sql); and password reset
// by email: requestPasswordReset, resetPassword (sql/functions/password_reset.sql). register and
// requestPasswordReset answer the same whether or not an account has the address. Every rule (password check, session rotation, reuse detection, membership) is in
// SQL (sql/functions/auth.sql); this plugin calls those functions on the request's own
// connection and signs the access token for the grant they return.
//
// Why not plain PostGraphile mutations? The refresh function must be able to *commit* a
// session revocation and still report failure: it returns null and we raise the error here,
// after the transaction has committed.
import { access, lambda, SafeError, type Step } from 'postgraphile/grafast';
import { sideEffectWithPgClient } from 'postgraphile/@dataplan/pg';
import { extendSchema, gql } from 'postgraphile/utils';
import type { TokenService } from '../auth/tokens.ts';
import type { ErrorCatalog } from './errors.ts';

interface GrantRow {
  user_id: string | null;
  session_id: string | null;
  organization_id: string | null;
  refresh_token: string | null;
  refresh_expires_at: Date | null;
}

interface PgClientLike {
  query<T>(opts: { text: string; values?: unknown[] }): Promise<{ rows: T[] }>;
}

export interface AuthPayload {
  accessToken: string;
  accessTokenExpiresAt: string;
  refreshToken: string | null;
  refreshTokenExpiresAt: string;
  userId: string;
  organizationId: string | null;
}

type Outcome = { payload: AuthPayload } | { failure: string; retryAfterSeconds?: number };

export function makeAuthPlugin(tokens: TokenService, errors: ErrorCatalog) {
  // Runs inside the request's transaction: turns a grant into tokens, or names the failure.
  // It must not throw for a refused grant: that would roll back what the SQL function
  // committed on purpose (a session revoked after refresh-token reuse). `settle` throws
  // afterwards, outside the transaction.
  const issue = async (grant: GrantRow | undefined, failure: string): Promise<Outcome> => {
    if (!grant || grant.user_id === null || grant.session_id === null || grant.refresh_expires_at === null) {
      return { failure };
    }
    const { token, expiresAt } = await tokens.sign({ userId: grant.user_id, sessionId: grant.session_id, organizationId: grant.organization_id });
    return {
      payload: {
        accessToken: token,
        accessTokenExpiresAt: expiresAt.toISOString(),
        refreshToken: grant.refresh_token,
        refreshTokenExpiresAt: new Date(grant.refresh_expires_at).toISOString(),
        userId: grant.user_id,
        organizationId: grant.organization_id,
      },
    };
  };
  const settle = (outcome: Outcome): AuthPayload => {
    if ('failure' in outcome) {
      if (outcome.retryAfterSeconds === undefined) throw errors.error(outcome.failure);
      const { code, httpStatus } = errors.byCode(outcome.failure);
      const seconds = outcome.retryAfterSeconds;
      throw new SafeError(
        `Too many failed sign-ins for this account from your network address; try again in ${seconds} second${seconds === 1 ? '' : 's'}, or reset the password.`,
        { code, httpStatus, retryAfterSeconds: seconds },
      );
    }
    return outcome.payload;
  };
  const grantOf = async (client: PgClientLike, fn: string, values: unknown[]): Promise<GrantRow | undefined> => {
    const placeholders = values.map((_, i) => `$${i + 1}`).join(', ');
    const { rows } = await client.query<GrantRow>({ text: `select * from app_private.${fn}(${placeholders})`, values });
    return rows[0];
  };

  return extendSchema((build) => {
    const executor = build.input.pgRegistry.pgExecutors.main;
    const run = <T>($input: Step, callback: (client: PgClientLike, input: T) => Promise<Outcome>) =>
      lambda(
        sideEffectWithPgClient(executor, $input as Step<T>, (client, input) => callback(client as unknown as PgClientLike, input)),
        settle,
      );

    return {
      typeDefs: gql`
        """
        A signed-in session. Send \`accessToken\` as \`Authorization: Bearer <accessToken>\`;
        before it expires, call \`refresh\` with \`refreshToken\` for a new pair.
        """
        type AuthPayload {
          accessToken: String!
          accessTokenExpiresAt: Datetime!
          "Returned by confirmRegistration, login, refresh and resetPassword only. Keep it secret; it is valid once."
          refreshToken: String
          refreshTokenExpiresAt: Datetime!
          userId: UUID!
          "The organization the access token is scoped to (switchOrganization changes it)."
          organizationId: UUID
        }
        input RegisterInput {
          email: String!
          "8 to 72 characters."
          password: String!
          "1 to 200 characters."
          name: String!
        }
        type RegisterPayload {
          "Always true: the answer never tells whether an account has this email."
          requested: Boolean!
        }
        input ConfirmRegistrationInput {
          "The token from the confirmation email."
          token: String!
          "The password given to register."
          password: String!
        }
        input LoginInput {
          email: String!
          password: String!
          "Sign straight into this organization (ignored unless you are a member)."
          organizationId: UUID
        }
        input RefreshInput {
          refreshToken: String!
        }
        input SwitchOrganizationInput {
          "An organization you belong to, or null for none."
          organizationId: UUID
        }
        type LogoutPayload {
          "True if a live session was signed out."
          loggedOut: Boolean!
        }
        input RequestPasswordResetInput {
          email: String!
        }
        type RequestPasswordResetPayload {
          "Always true: the answer never tells whether an account has this email."
          requested: Boolean!
        }
        input ResetPasswordInput {
          "The token from the password-reset email."
          token: String!
          "8 to 72 characters."
          newPassword: String!
        }
        extend type Mutation {
          "Sign up: emails a confirmation link to this address (to an address that already has an account, a note saying so instead). At most one email every 5 minutes. Then call confirmRegistration."
          register(input: RegisterInput!): RegisterPayload!
          "Create the account with the token from the confirmation email (valid 24 hours, once) and the password given to register; signs in."
          confirmRegistration(input: ConfirmRegistrationInput!): AuthPayload!
          "Sign in with email and password."
          login(input: LoginInput!): AuthPayload!
          "Exchange a refresh token for a new access token and refresh token."
          refresh(input: RefreshInput!): AuthPayload!
          "Scope the current session to one of your organizations; returns a new access token."
          switchOrganization(input: SwitchOrganizationInput!): AuthPayload!
          "Sign out: every access token and the refresh token of this session stop working."
          logout: LogoutPayload!
          "Email a password-reset link to this address if it has an account (at most one email every 5 minutes)."
          requestPasswordReset(input: RequestPasswordResetInput!): RequestPasswordResetPayload!
          "Set a new password with the token from the password-reset email (valid 1 hour, once). Signs out every session of the account and signs in anew."
          resetPassword(input: ResetPasswordInput!): AuthPayload!
        }
      `,
      objects: {
        Mutation: {
          plans: {
            register(_$root, fieldArgs) {
              return sideEffectWithPgClient(executor, fieldArgs.getRaw('input') as Step<{ email: string; password: string; name: string }>, async (client, input) => {
                await (client as unknown as PgClientLike).query({ text: 'select app_private.request_registration($1, $2, $3)', values: [input.email, input.password, input.name] });
                return { requested: true };
              });
            },
            confirmRegistration(_$root, fieldArgs) {
              return run<{ token: string; password: string }>(fieldArgs.getRaw('input'), async (client, input) =>
                issue(await grantOf(client, 'confirm_registration', [input.token, input.password]), 'INTERNAL'),
              );
            },
            login(_$root, fieldArgs) {
              return run<{ email: string; password: string; organizationId?: string | null }>(fieldArgs.getRaw('input'), async (client, input) => {
                // A client that must still wait (sql/functions/auth.sql, sign-in throttling) is told
                // how long; app_private.login refuses it too, this only finds the number of seconds.
                const { rows } = await client.query<{ seconds: number }>({ text: 'select app_private.login_retry_after($1) as seconds', values: [input.email] });
                const seconds = rows[0]?.seconds ?? 0;
                if (seconds > 0) return { failure: 'TOO_MANY_ATTEMPTS', retryAfterSeconds: seconds };
                return issue(await grantOf(client, 'login', [input.email, input.password, input.organizationId ?? null]), 'INVALID_CREDENTIALS');
              });
            },
            refresh(_$root, fieldArgs) {
              return run<{ refreshToken: string }>(fieldArgs.getRaw('input'), async (client, input) =>
                issue(await grantOf(client, 'refresh', [input.refreshToken]), 'INVALID_REFRESH_TOKEN'),
              );
            },
            switchOrganization(_$root, fieldArgs) {
              return run<{ organizationId?: string | null }>(fieldArgs.getRaw('input'), async (client, input) =>
                issue(await grantOf(client, 'switch_organization', [input.organizationId ?? null]), 'UNAUTHENTICATED'),
              );
            },
            logout(_$root, fieldArgs) {
              return sideEffectWithPgClient(executor, fieldArgs.getRaw() as Step<unknown>, async (client) => {
                const { rows } = await (client as unknown as PgClientLike).query<{ logged_out: boolean }>({ text: 'select app_private.logout() as logged_out' });
                return { loggedOut: rows[0]?.logged_out === true };
              });
            },
            requestPasswordReset(_$root, fieldArgs) {
              return sideEffectWithPgClient(executor, fieldArgs.getRaw('input') as Step<{ email: string }>, async (client, input) => {
                await (client as unknown as PgClientLike).query({ text: 'select app_private.request_password_reset($1)', values: [input.email] });
                return { requested: true };
              });
            },
            resetPassword(_$root, fieldArgs) {
              return run<{ token: string; newPassword: string }>(fieldArgs.getRaw('input'), async (client, input) =>
                issue(await grantOf(client, 'reset_password', [input.token, input.newPassword]), 'INTERNAL'),
              );
            },
          },
        },
        LogoutPayload: {
          plans: {
            loggedOut: ($payload: Step) => access($payload, 'loggedOut'),
          },
        },
        RequestPasswordResetPayload: {
          plans: {
            requested: ($payload: Step) => access($payload, 'requested'),
          },
        },
        RegisterPayload: {
          plans: {
            requested: ($payload: Step) => access($payload, 'requested'),
          },
        },
      },
    };
  }, 'AtriumAuthPlugin');
}
