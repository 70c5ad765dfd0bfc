// password_reset_request: the worker's half of requestPasswordReset. The API only queues this job
// with the address (app_private.request_password_reset: the same work for every address, so its
// answer and its time never tell whether an account exists); here
// app_private.start_password_reset (sql/functions/password_reset.sql) looks the account up and,
// for one, makes the token and enqueues the password_reset email. Payload: { email }.
import type { Task } from 'graphile-worker';
import { failPermanently } from '../permanent.ts';

export const password_reset_request: Task = async (payload, helpers) => {
  const email = (payload as { email?: unknown } | null)?.email;
  if (typeof email !== 'string' || email.length === 0 || email.length > 320) return failPermanently(helpers, 'password_reset_request payload must carry email (an address)');
  // One statement: its own transaction.
  await helpers.withPgClient((client) => client.query('select app_private.start_password_reset($1)', [email]));
};
