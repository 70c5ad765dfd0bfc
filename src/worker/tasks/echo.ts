// echo: diagnostics. Logs that it ran, with its payload's keys (not their values: a producer's
// payload may hold anything, and logs are read by more people than the queue), and does nothing
// else. Other services may queue it (app_private.producer_tasks) to check that their jobs reach
// the worker; the fairness measurement (docs/DATA_FLOWS.md) queues thousands of them.
import type { Task } from 'graphile-worker';
import { organizationOf } from '../tenant.ts';

export const echo: Task = async (payload, helpers) => {
  helpers.logger.debug('echo', { organizationId: organizationOf(payload), keys: Object.keys(payload as Record<string, unknown>) });
};
