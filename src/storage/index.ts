// Chooses the object-storage driver from the configuration (docs/FILES.md).
import type { FilesConfig } from '../config.ts';
import { createLocalStorage, localSigningKey } from './local.ts';
import type { FileStorage } from './types.ts';

export type { FileStorage } from './types.ts';
export { StorageUnavailableError } from './types.ts';

export interface StorageContext {
  /** The API's public base URL (the local driver's URLs point at it); a function if known only once it listens. */
  publicUrl: string | (() => string);
  /** The JWT secret the local driver derives its signing key from when FILES_SIGNING_SECRET is unset. */
  jwtSecret: string;
}

export async function createStorage(config: FilesConfig, context: StorageContext): Promise<FileStorage> {
  if (config.driver === 's3') {
    // Loaded only when used: the AWS SDK is large.
    const { createS3Storage } = await import('./s3.ts');
    return createS3Storage(config.s3);
  }
  return createLocalStorage({ dir: config.localDir, baseUrl: context.publicUrl, signingKey: localSigningKey(config.signingSecret, context.jwtSecret) });
}
