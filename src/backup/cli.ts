// `npm run backup:setup` and `npm run backup:drill` (docs/BACKUPS_AND_RECOVERY.md).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { findBackupTools, pgbackrestConf, postgresqlConf, STANZA, type BackupSettings } from './pgbackrest.ts';

function option(args: string[], name: string): string | undefined {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : undefined;
}

/**
 * backup:setup [--data-dir <PGDATA>] [--repo <folder> | --s3] [--retention-full <n>] [--write <folder>]
 * Prints (or writes) pgbackrest.conf and the postgresql.conf lines for the user's server, and the
 * commands that start the backups. --s3 takes the bucket from S3_BUCKET, S3_ENDPOINT, S3_REGION.
 * --write also generates the repository's passphrase into pgbackrest.conf (mode 600).
 */
export async function backupSetup(config: Config, args: string[], out: NodeJS.WritableStream): Promise<number> {
  const s3 = args.includes('--s3');
  if (s3 && config.files.driver !== 's3') {
    process.stderr.write('--s3 needs the bucket settings (S3_BUCKET, S3_ENDPOINT, S3_REGION; .env.example)\n');
    return 2;
  }
  const write = option(args, 'write');
  const endpoint = config.files.s3.endpoint ? new URL(config.files.s3.endpoint) : undefined;
  const settings: BackupSettings = {
    dataDir: option(args, 'data-dir') ?? '/var/lib/postgresql/data',
    repository: s3
      ? {
          kind: 's3',
          bucket: config.files.s3.bucket,
          endpoint: endpoint?.host ?? `s3.${config.files.s3.region}.amazonaws.com`,
          region: config.files.s3.region,
          path: '/pgbackrest',
          pathStyle: config.files.s3.forcePathStyle,
          verifyTls: endpoint?.protocol !== 'http:',
        }
      : { kind: 'local', path: option(args, 'repo') ?? '/var/lib/pgbackrest' },
    retentionFull: Number(option(args, 'retention-full') ?? 2),
    cipherPass: write ? randomBytes(36).toString('base64url') : undefined,
  };
  if (!Number.isInteger(settings.retentionFull) || settings.retentionFull < 1) {
    process.stderr.write('--retention-full must be a whole number of full backups, 1 or more\n');
    return 2;
  }
  const conf = pgbackrestConf(settings);
  const pgconf = postgresqlConf(settings);
  const steps = [
    'Then, as the postgres OS user:',
    `  pgbackrest --stanza=${STANZA} stanza-create     # once: the repository for this server`,
    `  pgbackrest --stanza=${STANZA} check             # archiving works (WAL reaches the repository)`,
    `  pgbackrest --stanza=${STANZA} --type=full backup`,
    'and schedule backups (cron of the postgres user), e.g.:',
    `  30 1 * * 0    pgbackrest --stanza=${STANZA} --type=full backup`,
    `  30 1 * * 1-6  pgbackrest --stanza=${STANZA} --type=diff backup`,
    'A restore to a moment: docs/BACKUPS_AND_RECOVERY.md. Rehearse it: npm run backup:drill',
  ].join('\n');
  if (write) {
    fs.mkdirSync(write, { recursive: true });
    fs.writeFileSync(path.join(write, 'pgbackrest.conf'), conf, { mode: 0o600 });
    fs.writeFileSync(path.join(write, 'postgresql.backup.conf'), pgconf);
    out.write(
      `Wrote ${path.join(write, 'pgbackrest.conf')} (mode 600: it holds the repository's passphrase; keep a copy apart from the backups,\n` +
        'without it they cannot be read) and postgresql.backup.conf.\n' +
        `Install pgbackrest.conf as /etc/pgbackrest/pgbackrest.conf (owned by postgres), add postgresql.backup.conf to\n` +
        'postgresql.conf (include_if_exists) and restart PostgreSQL (archive_mode needs a restart).\n' +
        `${steps}\n`,
    );
  } else {
    out.write(`# /etc/pgbackrest/pgbackrest.conf\n${conf}\n# postgresql.conf (restart PostgreSQL afterwards: archive_mode needs it)\n${pgconf}\n# ${steps.replace(/\n/g, '\n# ')}\n`);
  }
  return 0;
}

/** backup:drill [--orgs n] [--rows n] [--write-seconds s] [--writers n] [--out file.json] [--keep] */
export async function backupDrill(args: string[], log: Logger, out: NodeJS.WritableStream): Promise<number> {
  const { runDrill } = await import('./drill.ts');
  const tools = findBackupTools();
  if ('missing' in tools) {
    process.stderr.write(`The restore drill needs pgBackRest and PostgreSQL server binaries: ${tools.missing}\n`);
    return 2;
  }
  const num = (name: string, fallback: number) => {
    const value = Number(option(args, name) ?? fallback);
    if (!Number.isFinite(value) || value < 1) throw new Error(`--${name} must be a number, 1 or more`);
    return value;
  };
  const command = `npm run backup:drill -- ${args.join(' ')}`.trim();
  const result = await runDrill({ tools, orgs: num('orgs', 20), rows: num('rows', 500), writeSeconds: num('write-seconds', 60), writers: num('writers', 4), log, keep: args.includes('--keep') });
  const file = option(args, 'out');
  if (file) fs.writeFileSync(file, `${JSON.stringify({ command, at: new Date().toISOString(), ...result }, null, 2)}\n`);
  const ok = result.checks.figuresEqual && result.checks.rlsForced.notForced.length === 0 && result.checks.apiStarted && result.checks.apiInvoiceCounts;
  out.write(
    [
      `Restore drill: PostgreSQL ${result.postgres}, ${result.pgbackrest}`,
      `  dataset            ${result.dataset.orgs} organizations, ${(result.dataset.databaseBytes / 1024 / 1024).toFixed(0)} MB database`,
      `  full backup        ${result.backup.seconds.toFixed(1)} s, repository ${(result.backup.repositoryBytes / 1024 / 1024).toFixed(1)} MB (compressed, encrypted)`,
      `  writes via the API ${result.writes.before} before T, ${result.writes.after} after (client + invoice + 2 lines each)`,
      `  RPO                archive lag p50 ${result.rpo.p50Seconds.toFixed(1)} s, max ${result.rpo.maxSeconds.toFixed(1)} s over ${result.rpo.samples} samples (archive_timeout ${result.rpo.archiveTimeoutSeconds} s; target ≤ 60 s)`,
      `  RTO                ${result.rto.totalSeconds.toFixed(1)} s: restore ${result.rto.restoreSeconds.toFixed(1)} s, start and replay to T ${result.rto.startAndReplaySeconds.toFixed(1)} s`,
      `  at T (${result.target}): ${result.checks.figuresEqual ? 'every organization\'s rows, invoice totals and activity events equal' : `${result.checks.differences.length} differences:\n    ${result.checks.differences.join('\n    ')}`}`,
      `  row-level security forced on ${result.checks.rlsForced.tables - result.checks.rlsForced.notForced.length} of ${result.checks.rlsForced.tables} tables of app_public and app_private`,
      `  Atrium on the restored database: ${result.checks.apiStarted ? 'ready' : `NOT ready (/readyz: ${result.checks.readiness})`}, invoice counts through the API ${result.checks.apiInvoiceCounts ? 'equal' : 'DIFFER'}`,
      ok ? 'Drill passed.' : 'Drill FAILED.',
      '',
    ].join('\n'),
  );
  return ok && result.rpo.maxSeconds <= 60 ? 0 : 1;
}
