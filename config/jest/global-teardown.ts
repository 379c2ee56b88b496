import { readFileSync, rmSync } from 'node:fs';
import { Client } from 'pg';
import type { RunningDatabase } from '../../libs/database/src/embedded-postgres';
import { STATE_FILE } from './global-setup';

export default async function globalTeardown(): Promise<void> {
  const state = JSON.parse(readFileSync(STATE_FILE, 'utf8')) as { adminUrl: string; template: string; embeddedDir?: string };
  const admin = new Client({ connectionString: state.adminUrl });
  await admin.connect();
  const leftovers = await admin.query<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE datname = $1 OR datname LIKE $2`,
    [state.template, `${state.template}_f%`],
  );
  for (const { datname } of leftovers.rows) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  await admin.end();
  const embedded = (globalThis as { __EMBEDDED_PG__?: RunningDatabase }).__EMBEDDED_PG__;
  if (embedded) await embedded.stop();
  if (state.embeddedDir) rmSync(state.embeddedDir, { recursive: true, force: true });
  rmSync(STATE_FILE, { force: true });
}
