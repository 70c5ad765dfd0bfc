// Placeholder replaced by the S3 driver.
import type { FilesConfig } from '../config.ts';
import type { FileStorage } from './types.ts';
export async function createS3Storage(_config: FilesConfig['s3']): Promise<FileStorage> {
  throw new Error('the s3 driver is not built yet');
}
