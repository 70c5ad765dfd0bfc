// erase_account: the account's part of deleteAccount (app_private.erase_account,
// sql/functions/erasure.sql): once every organization's erasure of the user is done, the account's
// email and name are replaced and what the system holds under the email is removed. While an
// organization's erasure is pending the function refuses (RETRY) and the job is retried later.
// Payload: { user_id } (an id only). Idempotent: an erased account is left alone.
import type { Task } from 'graphile-worker';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const erase_account: Task = async (payload, helpers) => {
  const userId = (payload as { user_id?: unknown } | null)?.user_id;
  if (typeof userId !== 'string' || !UUID.test(userId)) throw new Error('erase_account: the payload names no user_id');
  const erased = await helpers.withPgClient(async (client) => (await client.query<{ erased: boolean }>('select app_private.erase_account($1) as erased', [userId])).rows[0].erased);
  helpers.logger.info(erased ? 'account erased' : 'account already erased', { userId });
};
