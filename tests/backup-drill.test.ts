// The restore drill (src/backup/drill.ts) on a small dataset, where pgBackRest and PostgreSQL
// server binaries are installed (.ci/run installs pgBackRest when the machine allows, and says
// when it cannot): a point-in-time restore gives back every organization's rows, invoice totals
// and activity events as they were at T (and none of the writes after T), with row-level
// security still forced, and Atrium starts on it. The figures of docs/BACKUPS_AND_RECOVERY.md
// come from `npm run backup:drill` on the bench dataset.
import { describe, expect, test } from '@jest/globals';
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
});
