// A job that can never succeed — a malformed payload, an unknown email template — should fail
// once, visibly, instead of being retried for days. graphile-worker has no error type for that,
// so we use up the job's attempts (max_attempts := attempts so far) and throw: the worker records
// the error on the job as usual and, with no attempts left, never runs it again. The job stays in
// the queue as a failed job (graphile_worker.jobs, with last_error) for someone to look at.
import type { JobHelpers } from 'graphile-worker';

export class PermanentJobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentJobError';
  }
}

export async function failPermanently(helpers: JobHelpers, message: string): Promise<never> {
  await helpers.withPgClient((client) =>
    client.query('update graphile_worker._private_jobs set max_attempts = greatest(attempts, 1) where id = $1', [helpers.job.id]),
  );
  helpers.logger.error(`job cannot succeed, not retried: ${message}`, { jobId: helpers.job.id, task: helpers.job.task_identifier });
  throw new PermanentJobError(message);
}
