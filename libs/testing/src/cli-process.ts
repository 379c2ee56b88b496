import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { PROCESS_REDIS_KEY_PREFIX } from './redis-prefix';

const CLI = join(__dirname, '../../../dist/apps/api/src/cli.js');

/** Runs `npm run cli -- <args>` as an operator would (the compiled CLI), returning its parsed JSON output. */
export function runCli<T = Record<string, unknown>>(args: string[], env: Record<string, string | undefined>): Promise<T> {
  return new Promise((resolve, reject) => {
    const childEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, LOG_LEVEL: 'error', REDIS_KEY_PREFIX: PROCESS_REDIS_KEY_PREFIX, ...env })) if (v !== undefined) childEnv[k] = v;
    execFile(process.execPath, [CLI, ...args], { env: childEnv, timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`cli ${args.join(' ')} failed: ${stderr || error.message}`));
      try {
        resolve(JSON.parse(stdout) as T);
      } catch {
        reject(new Error(`cli ${args.join(' ')} printed no JSON: ${stdout}`));
      }
    });
  });
}
