// The job catalogue: one task per file in this folder, listed here by name.
import type { TaskList } from 'graphile-worker';
import { dispatch_activity } from './dispatch_activity.ts';

export const taskList: TaskList = {
  dispatch_activity,
};
