import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiProcess, createTestDatabase, startApiProcess, TEST_BOOTSTRAP_KEY, WebhookReceiver } from '@app/testing';

async function call(base: string, path: string, body?: unknown, token?: string) {
  const res = await fetch(`${base}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, never> };
}

describe('Webhook durability across processes (CONTRACT §9, §10)', () => {
  const receiver = new WebhookReceiver();
  const dataDir = mkdtempSync(join(tmpdir(), 'um-wh-'));
  let db: { url: string; drop: () => Promise<void> };
  let env: Record<string, string | undefined>;
  const running: ApiProcess[] = [];

  beforeAll(async () => {
    await receiver.start();
    db = await createTestDatabase();
    env = { DATABASE_URL: db.url, DATA_DIR: dataDir, BOOTSTRAP_API_KEY: TEST_BOOTSTRAP_KEY, OUTBOUND_ALLOWED_HOSTS: '127.0.0.1', REDIS_URL: undefined };
  });
  afterAll(async () => {
    await Promise.all(running.map((p) => p.stop()));
    await receiver.stop();
    await db.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const start = async () => {
    const p = await startApiProcess(env);
    running.push(p);
    return p;
  };
  const createdIds = (path: string) =>
    new Set(receiver.on(path).filter((r) => r.json.event === 'user.created').map((r) => (r.json.data as { user: { id: string } }).user.id));

  it('the API killed with SIGKILL right after answering 40 creates with 201 still delivers all 40 user.created after restart', async () => {
    const first = await start();
    const token = (await call(first.baseUrl, '/v2/auth/token', { grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY })).body.access_token;
    receiver.respond('/kill', 200);
    await call(first.baseUrl, '/v2/webhooks', { url: receiver.url('/kill'), events: ['user.created'] }, token);
    const created = await Promise.all(
      Array.from({ length: 40 }, (_, i) => call(first.baseUrl, '/v2/users', { email: `kill${i}@example.com`, first_name: 'K', last_name: String(i) }, token)),
    );
    expect(created.map((c) => c.status)).toEqual(Array(40).fill(201));
    first.child.kill('SIGKILL');
    await first.exited;
    const ids = new Set(created.map((c) => c.body.id as string));

    await start();
    // Deliveries the killed process had claimed are freed when their 15 s lease ends.
    await receiver.waitFor(() => [...ids].every((id) => createdIds('/kill').has(id)), 45_000);
    expect([...createdIds('/kill')].filter((id) => ids.has(id)).length).toBe(40);
  }, 90_000);

  it('two API processes on one database deliver each event once', async () => {
    const [a, b] = [running[running.length - 1]!, await start()];
    const token = (await call(a.baseUrl, '/v2/auth/token', { grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY })).body.access_token;
    await call(a.baseUrl, '/v2/webhooks', { url: receiver.url('/once'), events: ['user.created'] }, token);
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => call(i % 2 ? a.baseUrl : b.baseUrl, '/v2/users', { email: `once${i}@example.com`, first_name: 'O', last_name: String(i) }, token)),
    );
    expect(results.every((r) => r.status === 201)).toBe(true);
    await receiver.waitFor(() => createdIds('/once').size === 30, 30_000);
    await new Promise((r) => setTimeout(r, 2500));
    const got = receiver.on('/once');
    expect(got).toHaveLength(30);
    expect(new Set(got.map((r) => r.headers['webhook-id'])).size).toBe(30);
  }, 90_000);

  it('with WEBHOOK_WORKERS=0 the API sends nothing itself, and `npm run worker` delivers; the worker exits 0 on SIGTERM', async () => {
    const api = await startApiProcess({ ...env, WEBHOOK_WORKERS: '0' });
    running.push(api);
    const token = (await call(api.baseUrl, '/v2/auth/token', { grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY })).body.access_token;
    await call(api.baseUrl, '/v2/webhooks', { url: receiver.url('/worker'), events: ['user.created'] }, token);
    // Only this API runs now: the processes of the tests above are stopped first.
    await Promise.all(running.filter((p) => p !== api).map((p) => p.stop()));
    const created = await call(api.baseUrl, '/v2/users', { email: 'worker@example.com', first_name: 'W', last_name: 'K' }, token);
    expect(created.status).toBe(201);
    await new Promise((r) => setTimeout(r, 2000));
    expect(createdIds('/worker').size).toBe(0);

    const childEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, ...env, LOG_LEVEL: 'warn' })) if (v !== undefined) childEnv[k] = v;
    const worker = spawn(process.execPath, [join(__dirname, '../dist/apps/api/src/worker.js')], { env: childEnv, stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => worker.on('exit', resolve));
    try {
      await receiver.waitFor(() => createdIds('/worker').has(created.body.id as string), 30_000);
    } finally {
      worker.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 90_000);
});
