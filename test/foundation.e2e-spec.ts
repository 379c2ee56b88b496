import { OutboxDispatcher } from '@app/events';
import { createTestApp, TestApp } from '@app/testing';

describe('Foundation: the request pipeline (CONTRACT §1–§3)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  const expectEnvelope = (body: { error: Record<string, unknown> }, code: string, requestId?: string) => {
    expect(body.error.code).toBe(code);
    expect(typeof body.error.message).toBe('string');
    expect(body.error.timestamp).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    if (requestId) expect(body.error.request_id).toBe(requestId);
  };

  it('GET /health answers 200 healthy with a check per dependency', async () => {
    const res = await t.http().get('/health').expect(200);
    expect(res.body).toMatchObject({
      status: 'healthy',
      checks: { database: { healthy: true }, cache: { healthy: true } },
    });
    expect(res.body.timestamp).toMatch(/Z$/);
    expect(res.body.checks.cache.backend).toBe(process.env.REDIS_URL ? 'redis' : 'memory');
  });

  it('generates a req_ request id on every response, and echoes a well-formed client one', async () => {
    const generated = await t.http().get('/health');
    expect(generated.headers['x-request-id']).toMatch(/^req_[A-Za-z0-9_-]+$/);
    const echoed = await t.http().get('/health').set('X-Request-Id', 'client.trace-42_A');
    expect(echoed.headers['x-request-id']).toBe('client.trace-42_A');
    const refused = await t.http().get('/health').set('X-Request-Id', 'has spaces and ; semicolons');
    expect(refused.headers['x-request-id']).toMatch(/^req_/);
    const tooLong = await t.http().get('/health').set('X-Request-Id', 'a'.repeat(129));
    expect(tooLong.headers['x-request-id']).toMatch(/^req_/);
  });

  it('answers an unknown route with 404 NOT_FOUND in the envelope, carrying the request id', async () => {
    const res = await t.http().get('/v2/no-such-thing').set('X-Request-Id', 'trace-404').expect(404);
    expectEnvelope(res.body, 'NOT_FOUND', 'trace-404');
    expect(res.headers['x-request-id']).toBe('trace-404');
    expect(res.headers['content-type']).toMatch(/application\/json/);
  });

  it('answers a known path with another method with 405 and an Allow header', async () => {
    const res = await t.http().delete('/health').expect(405);
    expectEnvelope(res.body, 'METHOD_NOT_ALLOWED');
    expect(res.headers.allow).toContain('GET');
  });

  it('answers every /v1 path with 410 API_VERSION_SUNSET and a Link to the v2 docs', async () => {
    for (const path of ['/v1', '/v1/users', '/v1/users/user_1/roles']) {
      const res = await t.http().get(path).expect(410);
      expectEnvelope(res.body, 'API_VERSION_SUNSET');
      expect(res.headers.link).toMatch(/\/docs>; rel="successor-version"/);
    }
    const post = await t.http().post('/v1/users').send({ email: 'a@b.co' }).expect(410);
    expectEnvelope(post.body, 'API_VERSION_SUNSET');
  });

  it('serves the OpenAPI 3.1 description as JSON and YAML, and renders it at /docs', async () => {
    const json = await t.http().get('/openapi.json').expect(200);
    expect(json.body.openapi).toBe('3.1.0');
    expect(json.body.info.version).toBe('2.1.0');
    expect(Object.keys(json.body.paths)).toContain('/health');
    const yaml = await t.http().get('/openapi/v2.1.yaml').expect(200);
    expect(yaml.text).toMatch(/^openapi: 3\.1\.0/m);
    const docs = await t.http().get('/docs').expect(200);
    expect(docs.text).toContain('swagger-ui');
  });

  it('sets security headers and compresses large responses', async () => {
    const res = await t.http().get('/openapi.json').set('Accept-Encoding', 'gzip').expect(200);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['content-encoding']).toBe('gzip');
    // helmet's set, on every answer: API routes, errors and the docs page.
    for (const path of ['/health', '/v2/no-such-route', '/docs']) {
      const page = await t.http().get(path);
      expect(page.headers).toMatchObject({
        'content-security-policy': expect.stringContaining("default-src 'self'"),
        'strict-transport-security': 'max-age=31536000; includeSubDomains',
        'x-frame-options': 'SAMEORIGIN',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'cross-origin-opener-policy': 'same-origin',
      });
    }
  });

  it('never answers a malformed request with a 5xx', async () => {
    const res = await t.http().post('/v2/no-such-thing').set('Content-Type', 'application/json').send('{"a":');
    expect(res.status).toBeLessThan(500);
    expect(res.body.error).toBeDefined();
  });

  it('deletes dispatched outbox events past OUTBOX_RETENTION_HOURS (168 by default), never pending ones', async () => {
    const idAt = (msAgo: number, tag: string) => `evt_${(Date.now() - msAgo).toString(36).padStart(9, '0')}${tag}`;
    const day = 86_400_000;
    const rows: [string, boolean][] = [
      [idAt(10 * day, 'olddispatched'), true],
      [idAt(8 * day, 'olddispatched2'), true],
      [idAt(10 * day, 'oldpending'), false],
      [idAt(6 * day, 'recentdispatched'), true],
      [idAt(0, 'newdispatched'), true],
    ];
    for (const [id, dispatched] of rows) {
      await t.sql(
        `INSERT INTO outbox_events (id, organization_id, type, data, dispatched_at, next_attempt_at)
         VALUES ($1, 'org_retention', 'user.deleted', '{}', $2, now() + interval '1 day')`,
        [id, dispatched ? new Date() : null],
      );
    }
    expect(await t.app.get(OutboxDispatcher).pruneDispatched()).toBe(2);
    const left = await t.sql<{ id: string }>(`SELECT id FROM outbox_events WHERE organization_id = 'org_retention' ORDER BY id`);
    // Ordered by id, that is by creation time: the pending one from 10 days ago stays.
    expect(left.map((r) => r.id.replace(/^evt_\w{9}/, ''))).toEqual(['oldpending', 'recentdispatched', 'newdispatched']);
  });
});
