// Backups with pgBackRest (docs/BACKUPS_AND_RECOVERY.md): the settings `npm run backup:setup`
// prints or writes for a server, the same ones the restore drill (src/backup/drill.ts) runs with,
// and where the tools are on this machine.
//
// pgBackRest takes full, differential and incremental backups of the data directory and archives
// every WAL segment (archive_command = archive-push), so a restore can stop at any moment after
// the oldest backup kept (point-in-time recovery). Its repository is a local folder or an
// S3-compatible bucket, encrypted (aes-256-cbc) with a passphrase that never enters this repo:
// pgBackRest reads it from PGBACKREST_REPO1_CIPHER_PASS or from a configuration file only the
// postgres OS user can read.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const STANZA = 'atrium';

/**
 * archive_timeout: a segment is archived at the latest this long after its first write, even
 * when it is not full. The recovery point objective is this plus the time archive-push takes.
 */
export const ARCHIVE_TIMEOUT_SECONDS = 30;

export interface RepositoryLocal {
  kind: 'local';
  path: string;
}

export interface RepositoryS3 {
  kind: 's3';
  bucket: string;
  /** Host of the S3 API, e.g. s3.eu-west-1.amazonaws.com or minio:9000. */
  endpoint: string;
  region: string;
  /** Folder inside the bucket. */
  path: string;
  /** Path-style URLs (MinIO and most self-hosted stores). */
  pathStyle: boolean;
  /** Accept a self-signed certificate (a development store only). */
  verifyTls: boolean;
}

export interface BackupSettings {
  /** The server's data directory (pg1-path). */
  dataDir: string;
  /** Where the server's socket is (pg1-socket-path), and its port. */
  socketDir?: string;
  port?: number;
  repository: RepositoryLocal | RepositoryS3;
  /** Full backups kept; older ones, and the WAL only they need, are expired. */
  retentionFull: number;
  /** The passphrase in the file (mode 600); undefined: left to PGBACKREST_REPO1_CIPHER_PASS. */
  cipherPass?: string;
  /** The pgbackrest binary archive_command calls. */
  pgbackrest?: string;
  /** Where this configuration file will be (archive_command names it when not the default). */
  configPath?: string;
  /** Folders for logs, locks and the asynchronous archive spool (defaults: pgBackRest's own). */
  logPath?: string;
  lockPath?: string;
  spoolPath?: string;
}

/** The settings of docker-compose.yml's db-pitr service (docker/postgres-pgbackrest/pgbackrest.conf). */
export const COMPOSE_SETTINGS: BackupSettings = { dataDir: '/var/lib/postgresql/data', repository: { kind: 'local', path: '/var/lib/pgbackrest' }, retentionFull: 2 };

/** pgbackrest.conf for one stanza. */
export function pgbackrestConf(s: BackupSettings): string {
  const repo = s.repository;
  const lines = [
    '# pgBackRest configuration for Atrium (npm run backup:setup; docs/BACKUPS_AND_RECOVERY.md).',
    '[global]',
    ...(repo.kind === 'local'
      ? [`repo1-path=${repo.path}`]
      : [
          'repo1-type=s3',
          `repo1-path=${repo.path}`,
          `repo1-s3-bucket=${repo.bucket}`,
          `repo1-s3-endpoint=${repo.endpoint}`,
          `repo1-s3-region=${repo.region}`,
          `repo1-s3-uri-style=${repo.pathStyle ? 'path' : 'host'}`,
          ...(repo.verifyTls ? [] : ['repo1-storage-verify-tls=n']),
          '# repo1-s3-key and repo1-s3-key-secret: PGBACKREST_REPO1_S3_KEY and PGBACKREST_REPO1_S3_KEY_SECRET',
          '# in the environment of the postgres OS user, or here in a file only it can read.',
        ]),
    `repo1-retention-full=${s.retentionFull}`,
    'repo1-cipher-type=aes-256-cbc',
    s.cipherPass !== undefined ? `repo1-cipher-pass=${s.cipherPass}` : '# repo1-cipher-pass: PGBACKREST_REPO1_CIPHER_PASS in the environment (openssl rand -base64 48)',
    '# Compression: lz4 is fast on both ends; a restore is the time that counts.',
    'compress-type=lz4',
    '# A backup starts with an immediate checkpoint instead of waiting for the next one.',
    'start-fast=y',
    '# archive-push hands segments to a background process that sends several at a time.',
    'archive-async=y',
    'process-max=2',
    ...(s.logPath ? [`log-path=${s.logPath}`] : []),
    ...(s.lockPath ? [`lock-path=${s.lockPath}`] : []),
    ...(s.spoolPath ? [`spool-path=${s.spoolPath}`] : []),
    'log-level-console=warn',
    'log-level-file=info',
    '',
    `[${STANZA}]`,
    `pg1-path=${s.dataDir}`,
    ...(s.socketDir ? [`pg1-socket-path=${s.socketDir}`] : []),
    ...(s.port ? [`pg1-port=${s.port}`] : []),
    '',
  ];
  return lines.join('\n');
}

/** The command PostgreSQL runs for every finished WAL segment. */
export function archiveCommand(s: Pick<BackupSettings, 'pgbackrest' | 'configPath'>): string {
  const config = s.configPath ? ` --config=${s.configPath}` : '';
  return `${s.pgbackrest ?? 'pgbackrest'}${config} --stanza=${STANZA} archive-push %p`;
}

/** The server settings archiving needs (postgresql.conf; changing archive_mode needs a restart). */
export function postgresqlSettings(s: Pick<BackupSettings, 'pgbackrest' | 'configPath'>): Record<string, string> {
  return {
    wal_level: 'replica',
    archive_mode: 'on',
    archive_command: archiveCommand(s),
    archive_timeout: `${ARCHIVE_TIMEOUT_SECONDS}s`,
    max_wal_senders: '3',
  };
}

export function postgresqlConf(s: Pick<BackupSettings, 'pgbackrest' | 'configPath'>): string {
  return [
    '# WAL archiving to pgBackRest (npm run backup:setup; docs/BACKUPS_AND_RECOVERY.md).',
    ...Object.entries(postgresqlSettings(s)).map(([k, v]) => `${k} = '${v.replace(/'/g, "''")}'`),
    '',
  ].join('\n');
}

export interface BackupTools {
  pgbackrest: string;
  /** Folder of initdb, pg_ctl and postgres for a server version pgBackRest supports. */
  pgBin: string;
  pgVersion: number;
}

/**
 * pgBackRest and a PostgreSQL server, or why there are none: BACKUP_PG_BIN names the server's bin
 * folder (a version the installed pgBackRest supports); otherwise /usr/lib/postgresql/<v>/bin,
 * the newest there.
 */
export function findBackupTools(env: NodeJS.ProcessEnv = process.env): BackupTools | { missing: string } {
  let pgbackrest: string;
  try {
    pgbackrest = execFileSync('sh', ['-c', 'command -v pgbackrest'], { encoding: 'utf8' }).trim();
    execFileSync(pgbackrest, ['version'], { encoding: 'utf8' });
  } catch {
    return { missing: 'pgbackrest is not installed (Debian: apt-get install pgbackrest)' };
  }
  const candidates = env.BACKUP_PG_BIN
    ? [env.BACKUP_PG_BIN]
    : fs.existsSync('/usr/lib/postgresql')
      ? fs.readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)).map((v) => `/usr/lib/postgresql/${v}/bin`)
      : [];
  const pgBin = candidates.find((dir) => ['initdb', 'pg_ctl', 'postgres'].every((b) => fs.existsSync(path.join(dir, b))));
  if (!pgBin) return { missing: 'no PostgreSQL server binaries (initdb, pg_ctl, postgres) in /usr/lib/postgresql/<version>/bin: install postgresql-<version> or set BACKUP_PG_BIN' };
  const pgVersion = Number(/(\d+)/.exec(execFileSync(path.join(pgBin, 'postgres'), ['--version'], { encoding: 'utf8' }))![1]);
  return { pgbackrest, pgBin, pgVersion };
}
