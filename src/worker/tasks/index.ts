// The job catalogue: one task per file in this folder, listed here by name.
import type { TaskList } from 'graphile-worker';
import { daily_maintenance } from './daily_maintenance.ts';
import { dispatch_activity } from './dispatch_activity.ts';
import { tenant_daily } from './tenant_daily.ts';
import { scheduled_invoicing } from './scheduled_invoicing.ts';
import { tenant_invoicing } from './tenant_invoicing.ts';
import { retention_purge } from './retention_purge.ts';
import { tenant_retention_purge } from './tenant_retention_purge.ts';

export const taskList: TaskList = {
  daily_maintenance,
  dispatch_activity,
  tenant_daily,
  scheduled_invoicing,
  tenant_invoicing,
  retention_purge,
  tenant_retention_purge,
};
