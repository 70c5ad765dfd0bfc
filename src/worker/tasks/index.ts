// The job catalogue: one task per file in this folder, listed here by name.
import type { TaskList } from 'graphile-worker';
import type { DeliveryOptions } from '../../webhooks/deliver.ts';
import { dailyMaintenance, type DailyMaintenanceOptions } from './daily_maintenance.ts';
import { dataExport } from './data_export.ts';
import { dataExportDeleteObject, dataExportExpire } from './data_export_expire.ts';
import { deliverWebhook } from './deliver_webhook.ts';
import { dispatch_activity } from './dispatch_activity.ts';
import { echo } from './echo.ts';
import { erase_account } from './erase_account.ts';
import { erase_personal_data } from './erase_personal_data.ts';
import { fileDeleteObject, fileUploaded, fileUploadExpire, type FileTaskOptions } from './files.ts';
import { organization_purge } from './organization_purge.ts';
import { password_reset_request } from './password_reset_request.ts';
import { send_email } from './send_email.ts';
import { tenant_daily } from './tenant_daily.ts';
import { scheduled_invoicing } from './scheduled_invoicing.ts';
import { tenant_invoicing } from './tenant_invoicing.ts';
import { retention_purge } from './retention_purge.ts';
import { tenant_retention_purge } from './tenant_retention_purge.ts';

export interface TaskOptions {
  webhooks: DeliveryOptions;
  /** Without it, no file tasks and no data exports (src/worker/index.ts). */
  files?: FileTaskOptions;
  /** The daily run's settings (refresh-token TTL for the retention of used refresh tokens). */
  maintenance?: DailyMaintenanceOptions;
}

export function createTaskList(options: TaskOptions): TaskList {
  return {
    daily_maintenance: dailyMaintenance(options.maintenance),
    // Exports are stored in the file store too.
    ...(options.files ? { data_export: dataExport(options.files), data_export_delete_object: dataExportDeleteObject(options.files), data_export_expire: dataExportExpire(options.files) } : {}),
    deliver_webhook: deliverWebhook(options.webhooks),
    dispatch_activity,
    echo,
    erase_account,
    erase_personal_data,
    ...(options.files ? { file_delete_object: fileDeleteObject(options.files), file_upload_expire: fileUploadExpire(options.files), file_uploaded: fileUploaded(options.files) } : {}),
    organization_purge,
    password_reset_request,
    retention_purge,
    scheduled_invoicing,
    send_email,
    tenant_daily,
    tenant_invoicing,
    tenant_retention_purge,
  };
}
