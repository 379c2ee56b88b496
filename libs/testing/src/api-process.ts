import { ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PROCESS_REDIS_KEY_PREFIX } from './redis-prefix';

const ENTRY = join(__dirname, '../../../dist/apps/api/src/main.js');

export interface ApiProcess {
  child: ChildProcess;
  baseUrl: string;
  output: () => string;
  exited: Promise<number | null>;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/**
 * Starts the compiled API (`npm run build` output) as its own process, as `npm start` would,
 * and waits until GET /health answers 200. The process listens on PORT=0 and the harness reads
 * the port it got from its "listening on" line: a port chosen here and handed over could be taken
 * by another process in between, and /health would then be answered by the wrong server.
 */
export async function startApiProcess(env: Record<string, string | undefined>, timeoutMs = 60_000): Promise<ApiProcess> {
  if (!existsSync(ENTRY)) throw new Error(`${ENTRY} is missing: run \`npm run build\` first (npm test does)`);
  const childEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries({ ...process.env, LOG_LEVEL: 'warn', HOST: '127.0.0.1', REDIS_KEY_PREFIX: PROCESS_REDIS_KEY_PREFIX, ...env, PORT: '0' })) {
    if (value !== undefined) childEnv[key] = value;
  }
  const child = spawn(process.execPath, [ENTRY], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  let baseUrl: string | undefined;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`API exited with ${exitCode} before it was healthy:\n${output}`);
    baseUrl ??= listeningUrl(output);
    if (baseUrl) {
      try {
        const res = await fetch(`${baseUrl}/health`);
        if (res.status === 200) break;
      } catch {
        /* not answering yet */
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (Date.now() >= deadline || !baseUrl) {
    child.kill('SIGKILL');
    throw new Error(`API was not healthy within ${timeoutMs} ms:\n${output}`);
  }
  return {
    child,
    baseUrl,
    output: () => output,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (exitCode === undefined) child.kill(signal);
      return exited;
    },
  };
}

/** The address from the API's startup line (`{"msg":"User Management API listening on …","port":N}`). */
function listeningUrl(output: string): string | undefined {
  for (const line of output.split('\n')) {
    if (!line.includes('listening on')) continue;
    try {
      const { port } = JSON.parse(line) as { port?: number };
      if (port) return `http://127.0.0.1:${port}`;
    } catch {
      /* a partial line: read again on the next turn */
    }
  }
  return undefined;
}
