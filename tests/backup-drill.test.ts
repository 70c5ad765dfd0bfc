// The restore drill (src/backup/drill.ts) on a small dataset, where pgBackRest and PostgreSQL
// server binaries are installed (.ci/run installs pgBackRest when the machine allows, and says
// when it cannot): a point-in-time restore gives back every organization's rows, invoice totals
// and activity events as they were at T (and none of the writes after T), with row-level
// security still forced, and Atrium starts on it. The figures of docs/BACKUPS_AND_RECOVERY.md
// come from `npm run backup:drill` on the bench dataset.
import { describe, expect, jest, test } from '@jest/globals';
import { runDrill } from '../src/backup/drill.ts';
import { findBackupTools } from '../src/backup/pgbackrest.ts';
import { createLogger } from '../src/log.ts';

const tools = findBackupTools();
const drill = 'missing' in tools ? test.skip : test;

describe('backups', () => {
  drill(`a point-in-time restore gives back the moment T exactly${'missing' in tools ? ` (skipped on this machine: ${tools.missing})` : ''}`, async () => {
    if ('missing' in tools) return;
    const result = await runDrill({ tools, orgs: 3, rows: 40, writeSeconds: 6, writers: 2, log: createLogger('silent') });
    // Writes before and after T, so a restore to the end of the WAL (or to the backup) would differ.
    expect(result.writes.before).toBeGreaterThan(0);
    expect(result.writes.after).toBeGreaterThan(0);
    expect(result.checks.differences).toEqual([]);
    expect(result.checks.figuresEqual).toBe(true);
    expect(result.checks.organizations).toBeGreaterThanOrEqual(3);
    expect(result.checks.rlsForced.tables).toBeGreaterThan(50);
    expect(result.checks.rlsForced.notForced).toEqual([]);
    expect(result.checks.apiStarted).toBe(true);
    expect(result.checks.apiInvoiceCounts).toBe(true);
    expect(result.rpo.samples).toBeGreaterThan(0);
    // The target of docs/BACKUPS_AND_RECOVERY.md: archive lag ≤ 60 s (archive_timeout is 30 s).
    expect(result.rpo.maxSeconds).toBeLessThanOrEqual(60);
    // npm run doctor on the archiving server: archiving works, nothing waiting.
    expect(result.doctorArchiving).toEqual({ status: 'ok', value: '0 segments waiting' });
  }, 600_000);
});

describe('backup settings', () => {
  test('docker-compose.yml\'s db-pitr service runs with npm run backup:setup\'s settings', async () => {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const { ROOT } = await import('../src/paths.ts');
    const { COMPOSE_SETTINGS, pgbackrestConf, postgresqlSettings } = await import('../src/backup/pgbackrest.ts');
    expect(fs.readFileSync(path.join(ROOT, 'docker/postgres-pgbackrest/pgbackrest.conf'), 'utf8')).toBe(pgbackrestConf(COMPOSE_SETTINGS));
    const compose = fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8');
    const service = compose.slice(compose.indexOf('  db-pitr:'), compose.indexOf('\n\n', compose.indexOf('  db-pitr:')));
    for (const [name, value] of Object.entries(postgresqlSettings(COMPOSE_SETTINGS))) {
      if (name === 'max_wal_senders') continue; // the image's default (10) is above it
      expect(service).toContain(`      - ${name}=${value}\n`);
    }
  });

  test('backup:setup writes the passphrase only into a file of mode 600, and prints none', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { backupSetup } = await import('../src/backup/cli.ts');
    const { testConfig } = await import('./support/db.ts');
    const chunks: string[] = [];
    const out = { write: (s: string) => chunks.push(s) } as unknown as NodeJS.WritableStream;
    expect(await backupSetup(testConfig(), [], out)).toBe(0);
    expect(chunks.join('')).not.toMatch(/^repo1-cipher-pass=/m);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atrium-backup-setup-'));
    try {
      chunks.length = 0;
      expect(await backupSetup(testConfig(), ['--write', dir, '--repo', '/srv/backups'], out)).toBe(0);
      const conf = fs.readFileSync(path.join(dir, 'pgbackrest.conf'), 'utf8');
      const pass = /^repo1-cipher-pass=(\S{40,})$/m.exec(conf)?.[1];
      expect(pass).toBeDefined();
      expect(conf).toContain('repo1-path=/srv/backups\n');
      expect(fs.statSync(path.join(dir, 'pgbackrest.conf')).mode & 0o777).toBe(0o600);
      expect(chunks.join('')).not.toContain(pass!);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('backup:setup --s3 puts the repository in the files\' bucket: encrypted, with retention, no key written', async () => {
    const { backupSetup } = await import('../src/backup/cli.ts');
    const { testConfig } = await import('./support/db.ts');
    const chunks: string[] = [];
    const out = { write: (s: string) => chunks.push(s) } as unknown as NodeJS.WritableStream;
    const config = testConfig({ FILES_DRIVER: 's3', S3_BUCKET: 'firm-files', S3_ENDPOINT: 'http://minio:9000', S3_REGION: 'eu-west-1', S3_FORCE_PATH_STYLE: 'true', S3_ACCESS_KEY_ID: 'AKIDEXAMPLE', S3_SECRET_ACCESS_KEY: 'secret-key-example-0123456789' });
    expect(await backupSetup(config, ['--s3', '--retention-full', '4'], out)).toBe(0);
    const printed = chunks.join('');
    for (const line of ['repo1-type=s3', 'repo1-path=/pgbackrest', 'repo1-s3-bucket=firm-files', 'repo1-s3-endpoint=minio:9000', 'repo1-s3-region=eu-west-1', 'repo1-s3-uri-style=path', 'repo1-storage-verify-tls=n', 'repo1-retention-full=4', 'repo1-cipher-type=aes-256-cbc', "archive_mode = 'on'"]) {
      expect(printed).toContain(`${line}\n`);
    }
    // The store's keys stay in the environment of the postgres user: never printed.
    expect(printed).not.toContain('AKIDEXAMPLE');
    expect(printed).not.toContain('secret-key-example');
    // Without the bucket's settings, --s3 is refused, and says why.
    const said: string[] = [];
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation((s) => said.push(String(s)) > 0);
    try {
      expect(await backupSetup(testConfig({ FILES_DRIVER: 'local', S3_BUCKET: '' }), ['--s3'], out)).toBe(2);
    } finally {
      stderr.mockRestore();
    }
    expect(said.join('')).toContain('S3_BUCKET');
  });

  test('the figures of docs/BACKUPS_AND_RECOVERY.md are those of the result file it names', async () => {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const { ROOT } = await import('../src/paths.ts');
    const doc = fs.readFileSync(path.join(ROOT, 'docs/BACKUPS_AND_RECOVERY.md'), 'utf8');
    const section = doc.slice(doc.indexOf('### Figures'), doc.indexOf('\n## ', doc.indexOf('### Figures')));
    const file = /\[(bench\/results\/[^\]]+-backup-drill\.json)\]/.exec(section)?.[1];
    expect(file).toBeDefined();
    const r = JSON.parse(fs.readFileSync(path.join(ROOT, file!), 'utf8'));
    const row = (measure: string): string => section.split('\n').find((line) => line.startsWith(`| ${measure}`)) ?? `(no row "${measure}")`;
    const s = (seconds: number) => `${seconds.toFixed(1)} s`;
    const mb = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MB`;
    const n = (count: number) => count.toLocaleString('en-US');
    expect(section).toContain(`From \`${r.command}\``);
    expect(r.command).toContain(`--out ${file}`);
    expect(section).toContain(`PostgreSQL ${r.postgres.split(' ')[0]} and ${r.pgbackrest}`);
    expect(section).toContain(`${r.dataset.orgs} organizations, a ${mb(r.dataset.databaseBytes)} database`);
    expect(row('RPO')).toContain(`${n(r.writes.before)} writes before T and ${n(r.writes.after)} after`);
    expect(row('RPO')).toContain(`p50 ${s(r.rpo.p50Seconds)}, worst ${s(r.rpo.maxSeconds)} over ${r.rpo.samples} samples`);
    expect(row('RPO')).toContain(r.rpo.maxSeconds <= 60 ? '≤ 60 s: met' : '≤ 60 s: missed');
    expect(row('RTO: `pgbackrest restore`')).toContain(`| ${s(r.rto.restoreSeconds)} |`);
    expect(row('RTO: the restored server')).toContain(`| ${s(r.rto.startAndReplaySeconds)} |`);
    expect(row('RTO in all')).toContain(`| ${s(r.rto.totalSeconds)} |`);
    expect(row('full backup')).toContain(`| ${s(r.backup.seconds)}; repository ${mb(r.backup.repositoryBytes)}`);
    const forced = r.checks.rlsForced.tables - r.checks.rlsForced.notForced.length;
    expect(row('at T')).toContain(`RLS forced on ${forced} of ${r.checks.rlsForced.tables} tables`);
    expect({ figuresEqual: r.checks.figuresEqual, apiStarted: r.checks.apiStarted, apiInvoiceCounts: r.checks.apiInvoiceCounts }).toEqual({ figuresEqual: true, apiStarted: true, apiInvoiceCounts: true });
  });
});
