// The job catalogue: one task per file in this folder, listed here by name.
import type { TaskList } from 'graphile-worker';
import { daily_maintenance } from './daily_maintenance.ts';
import { dispatch_activity } from './dispatch_activity.ts';
import { send_email } from './send_email.ts';
import { tenant_daily } from './tenant_daily.ts';

export const taskList: TaskList = {
  daily_maintenance,
  dispatch_activity,
  send_email,
  tenant_daily,
};
