// The job catalogue: one task per file in this folder, listed here by name.
import type { TaskList } from 'graphile-worker';
import type { DeliveryOptions } from '../../webhooks/deliver.ts';
import { daily_maintenance } from './daily_maintenance.ts';
import { deliverWebhook } from './deliver_webhook.ts';
import { dispatch_activity } from './dispatch_activity.ts';
import { echo } from './echo.ts';
import { tenant_daily } from './tenant_daily.ts';

export interface TaskOptions {
  webhooks: DeliveryOptions;
}

export function createTaskList(options: TaskOptions): TaskList {
  return {
    daily_maintenance,
    deliver_webhook: deliverWebhook(options.webhooks),
    dispatch_activity,
    echo,
    tenant_daily,
  };
}
