// Secrets for a local development set-up: generated once, kept in a git-ignored JSON file
// (mode 0600) so a restart keeps working logins and tokens. Never used in production.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface DevSecrets {
  superuserPassword: string;
  ownerPassword: string;
  authenticatorPassword: string;
  workerPassword: string;
  jwtSecret: string;
}

const generate = (): string => randomBytes(32).toString('base64url');

export function loadDevSecrets(file: string): DevSecrets {
  let stored: Partial<DevSecrets> = {};
  if (fs.existsSync(file)) {
    try {
      stored = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<DevSecrets>;
    } catch (error) {
      throw new Error(`${file} is not valid JSON; delete it together with the embedded database folder to start afresh`, { cause: error });
    }
  }
  const secrets: DevSecrets = {
    superuserPassword: stored.superuserPassword ?? generate(),
    ownerPassword: stored.ownerPassword ?? generate(),
    authenticatorPassword: stored.authenticatorPassword ?? generate(),
    workerPassword: stored.workerPassword ?? generate(),
    jwtSecret: stored.jwtSecret ?? generate(),
  };
  if (Object.keys(secrets).some((key) => !(key in stored))) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    fs.writeFileSync(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  }
  return secrets;
}
