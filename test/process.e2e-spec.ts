import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApiProcess } from '@app/testing';

/** `npm start` as a user runs it: the compiled app, its own embedded PostgreSQL, real signals. */
describe('Running the API as a process (CONTRACT §1)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'um-process-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('starts on an embedded database with no DATABASE_URL, drains in-flight requests on SIGTERM and exits 0, and reuses its data on restart', async () => {
    const env = { DATABASE_URL: undefined, REDIS_URL: undefined, DATA_DIR: dataDir };
    const first = await startApiProcess(env);
    expect(existsSync(join(dataDir, 'postgres', 'pgdata', 'PG_VERSION'))).toBe(true);

    const inFlight = Array.from({ length: 40 }, () => fetch(`${first.baseUrl}/health`).then((r) => r.status));
    await new Promise((r) => setTimeout(r, 5));
    const exitCode = first.stop('SIGTERM');
    const statuses = await Promise.allSettled(inFlight);
    expect(await exitCode).toBe(0);
    const answered = statuses.filter((s) => s.status === 'fulfilled').map((s) => (s as PromiseFulfilledResult<number>).value);
    // Every request the server accepted was answered in full; none got a 5xx.
    expect(answered.filter((s) => s !== 200)).toEqual([]);
    expect(answered.length).toBeGreaterThan(0);

    const second = await startApiProcess(env);
    const health = (await (await fetch(`${second.baseUrl}/health`)).json()) as { status: string };
    expect(health.status).toBe('healthy');
    expect(await second.stop('SIGTERM')).toBe(0);
  }, 120_000);

  it('refuses to start with invalid configuration and says why', async () => {
    const start = startApiProcess(
      { LOG_LEVEL: 'loud', PASSWORD_HASH_MEMORY_KIB: '4096', BOOTSTRAP_API_KEY: `sk_test_${'a'.repeat(129)}`, SEARCH_STATS_REFRESH_SECONDS: '-1', SEARCH_INDEX_CLEANUP_INTERVAL_MS: 'soon', DATA_DIR: dataDir },
      15_000,
    );
    await expect(start).rejects.toThrow(/exited with 1/);
    // Every problem is named, with what is allowed.
    await expect(start).rejects.toThrow(/LOG_LEVEL must be one of/);
    await expect(start).rejects.toThrow(/PASSWORD_HASH_MEMORY_KIB must be one of 47104, 19456, 12288, 9216, 7168 \(got "4096"\)/);
    await expect(start).rejects.toThrow(/SEARCH_STATS_REFRESH_SECONDS must be an integer between 0 and 86400 \(got "-1"\)/);
    await expect(start).rejects.toThrow(/SEARCH_INDEX_CLEANUP_INTERVAL_MS must be an integer between 0 and 600000 \(got "soon"\)/);
    // A bootstrap key that authentication would never accept is refused at start, not at first use.
    await expect(start).rejects.toThrow(/BOOTSTRAP_API_KEY must match sk_\(live\|test\)_\[A-Za-z0-9\]\{24,128\}/);
  });
});
