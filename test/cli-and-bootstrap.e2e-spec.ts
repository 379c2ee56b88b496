import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader } from 'jose';
import { Client } from 'pg';
import { ApiProcess, createTestDatabase, runCli, startApiProcess, TEST_BOOTSTRAP_KEY } from '@app/testing';

interface CreatedOrg {
  organization: { id: string; plan: string; limits: Record<string, unknown> };
  api_key: { id: string; key: string; scopes: string[] };
}

async function token(api: ApiProcess, apiKey: string, scope?: string) {
  const res = await fetch(`${api.baseUrl}/v2/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ grant_type: 'client_credentials', api_key: apiKey, ...(scope ? { scope } : {}) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, string> & { error?: { code: string } } };
}

async function get(api: ApiProcess, path: string, accessToken: string) {
  const res = await fetch(`${api.baseUrl}${path}`, { headers: { authorization: `Bearer ${accessToken}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { error?: { code: string } } };
}

async function eventually<T>(probe: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await probe();
  while (!ok(value) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    value = await probe();
  }
  return value;
}

describe('Bootstrap (CONTRACT §1) and the operator CLI (CONTRACT §4)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'um-cli-'));
  let db: { url: string; drop: () => Promise<void> };
  let env: Record<string, string | undefined>;

  beforeAll(async () => {
    db = await createTestDatabase();
    env = { DATABASE_URL: db.url, DATA_DIR: dataDir, BOOTSTRAP_API_KEY: undefined };
  });
  afterAll(async () => {
    await db.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const count = async (sql: string) => {
    const client = new Client({ connectionString: db.url });
    await client.connect();
    try {
      return Number((await client.query<{ n: string }>(sql)).rows[0]!.n);
    } finally {
      await client.end();
    }
  };

  it('first start prints a random key with every scope once; a restart prints nothing and changes nothing', async () => {
    // The template database is already migrated but has no organization: this is a first start.
    const first = await startApiProcess(env);
    const printed = /API key \(shown once, store it now\): (sk_live_[A-Za-z0-9]{32})/.exec(first.output());
    expect(printed).not.toBeNull();
    const key = printed![1]!;
    const issued = await token(first, key);
    expect(issued.status).toBe(200);
    expect(issued.body.scope!.split(' ')).toEqual(expect.arrayContaining(['platform:admin', 'user:read', 'apikey:manage']));
    expect(await first.stop()).toBe(0);

    const second = await startApiProcess(env);
    expect(second.output()).not.toMatch(/sk_live_/);
    expect((await token(second, key)).status).toBe(200);
    expect(await count('SELECT count(*) AS n FROM organizations')).toBe(1);
    expect(await count('SELECT count(*) AS n FROM api_keys')).toBe(1);
    expect(await second.stop()).toBe(0);
  }, 90_000);

  it('with BOOTSTRAP_API_KEY the first key is that value, and starting again with it changes nothing', async () => {
    const fresh = await createTestDatabase();
    const fixedEnv = { DATABASE_URL: fresh.url, DATA_DIR: dataDir, BOOTSTRAP_API_KEY: TEST_BOOTSTRAP_KEY };
    try {
      for (let i = 0; i < 2; i++) {
        const api = await startApiProcess(fixedEnv);
        expect(api.output()).not.toContain(TEST_BOOTSTRAP_KEY);
        expect((await token(api, TEST_BOOTSTRAP_KEY)).status).toBe(200);
        expect(await api.stop()).toBe(0);
      }
      const client = new Client({ connectionString: fresh.url });
      await client.connect();
      const orgs = await client.query('SELECT name, plan FROM organizations');
      const keys = await client.query('SELECT count(*)::int AS n FROM api_keys');
      await client.end();
      expect(orgs.rows).toEqual([{ name: 'Default', plan: 'enterprise' }]);
      expect(keys.rows[0].n).toBe(1);
    } finally {
      await fresh.drop();
    }
  }, 90_000);

  describe('against a running API', () => {
    let api: ApiProcess;
    beforeAll(async () => {
      api = await startApiProcess(env);
    }, 60_000);
    afterAll(async () => {
      await api.stop();
    });

    it('org:create makes an organization whose printed key works', async () => {
      const created = await runCli<CreatedOrg>(['org:create', '--name', 'Acme', '--plan', 'professional'], env);
      expect(created.organization.id).toMatch(/^org_/);
      expect(created.organization.plan).toBe('professional');
      expect(created.api_key.key).toMatch(/^sk_live_[A-Za-z0-9]{32}$/);
      expect(created.api_key.scopes).not.toContain('platform:admin');
      const issued = await token(api, created.api_key.key);
      expect(issued.status).toBe(200);
    });

    it('apikey:create and apikey:revoke: a revoked key and its tokens stop working', async () => {
      const org = await runCli<CreatedOrg>(['org:create', '--name', 'Beta', '--plan', 'basic'], env);
      const key = await runCli<{ id: string; key: string; scopes: string[] }>(
        ['apikey:create', '--org', org.organization.id, '--name', 'ci', '--scopes', 'user:read,apikey:manage'],
        env,
      );
      expect(key.scopes).toEqual(['user:read', 'apikey:manage']);
      const issued = await token(api, key.key);
      expect(issued.status).toBe(200);
      expect(issued.body.scope).toBe('user:read apikey:manage');
      expect((await get(api, '/v2/api-keys', issued.body.access_token!)).status).toBe(200);

      await runCli(['apikey:revoke', '--id', key.id], env);
      expect((await token(api, key.key)).status).toBe(401);
      // Another process revoked it: seen at once through Redis, within a second from the database otherwise.
      const after = await eventually(
        () => get(api, '/v2/api-keys', issued.body.access_token!),
        (r) => r.status === 401,
        3000,
      );
      expect(after.status).toBe(401);
      expect(after.body.error!.code).toBe('AUTH_TOKEN_INVALID');
    });

    it('keys:rotate: new tokens carry the new kid, tokens signed with the old key keep working', async () => {
      const org = await runCli<CreatedOrg>(['org:create', '--name', 'Gamma', '--plan', 'enterprise'], env);
      const before = await token(api, org.api_key.key);
      const oldKid = decodeProtectedHeader(before.body.access_token!).kid;
      const { kid: newKid } = await runCli<{ kid: string }>(['keys:rotate'], env);
      expect(newKid).not.toBe(oldKid);

      const rotated = await eventually(
        () => token(api, org.api_key.key),
        (r) => decodeProtectedHeader(r.body.access_token!).kid === newKid,
      );
      expect(decodeProtectedHeader(rotated.body.access_token!).kid).toBe(newKid);
      expect((await get(api, '/v2/api-keys', before.body.access_token!)).status).toBe(200);
      expect((await get(api, '/v2/api-keys', rotated.body.access_token!)).status).toBe(200);
      const jwks = (await (await fetch(`${api.baseUrl}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
      expect(jwks.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([oldKid, newKid]));
    });

    it('rejects bad input with a message and exit code 1', async () => {
      await expect(runCli(['org:create', '--name', 'X', '--plan', 'gold'], env)).rejects.toThrow(/--plan/);
      await expect(runCli(['apikey:revoke', '--id', 'key_nope'], env)).rejects.toThrow(/not found/);
    });
  });
});
