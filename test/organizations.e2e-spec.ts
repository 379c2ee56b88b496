import { createTestApp, TEST_BOOTSTRAP_KEY, TestApp } from '@app/testing';

describe('Organizations, plans and API keys (CONTRACT §4, §5)', () => {
  let t: TestApp;
  let admin: string;

  const tokenFor = async (apiKey: string) => {
    const res = await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: apiKey }).expect(200);
    return res.body.access_token as string;
  };
  const createOrg = (body: Record<string, unknown>) =>
    t.http().post('/v2/admin/organizations').set('Authorization', `Bearer ${admin}`).send(body);

  beforeAll(async () => {
    t = await createTestApp();
    admin = await tokenFor(TEST_BOOTSTRAP_KEY);
  });
  afterAll(async () => {
    await t.close();
  });

  it('POST /admin/organizations answers 201 with the organization and its first key, shown once', async () => {
    const res = await createOrg({ name: 'Acme', plan: 'professional' }).expect(201);
    expect(res.body.organization).toEqual({
      id: expect.stringMatching(/^org_/),
      name: 'Acme',
      plan: 'professional',
      limits: { monthly_active_users: 10000, requests_per_hour: 10000, burst_per_second: 200, concurrent_requests: 20 },
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      updated_at: expect.any(String),
    });
    expect(res.body.api_key).toEqual({
      id: expect.stringMatching(/^key_/),
      name: 'default',
      key: expect.stringMatching(/^sk_live_[A-Za-z0-9]{32}$/),
      scopes: expect.not.arrayContaining(['platform:admin']),
      created_at: expect.any(String),
    });
    const orgToken = await tokenFor(res.body.api_key.key);
    const keys = await t.http().get('/v2/api-keys').set('Authorization', `Bearer ${orgToken}`).expect(200);
    expect(keys.body.data).toHaveLength(1);
    expect(keys.body.data[0]).not.toHaveProperty('key');
    expect(JSON.stringify(keys.body)).not.toContain(res.body.api_key.key);
    const [row] = await t.sql<{ key_hash: string }>('SELECT key_hash FROM api_keys WHERE id = $1', [res.body.api_key.id]);
    expect(row!.key_hash).not.toContain(res.body.api_key.key.slice(8));
  });

  it('enterprise organizations take custom limits; other plans refuse them with 422', async () => {
    const res = await createOrg({ name: 'Big', plan: 'enterprise', limits: { requests_per_hour: 15, burst_per_second: 3 } }).expect(201);
    expect(res.body.organization.limits).toEqual({
      monthly_active_users: null,
      requests_per_hour: 15,
      burst_per_second: 3,
      concurrent_requests: 100,
    });
    const refused = await createOrg({ name: 'Small', plan: 'basic', limits: { requests_per_hour: 5 } }).expect(422);
    expect(refused.body.error.code).toBe('VALIDATION_ERROR');
    expect(refused.body.error.details[0].field).toBe('limits');
  });

  it('lists, reads and changes organizations; a plan change shows at once', async () => {
    const created = (await createOrg({ name: 'Mover', plan: 'basic' }).expect(201)).body.organization;
    const list = await t.http().get('/v2/admin/organizations?limit=100').set('Authorization', `Bearer ${admin}`).expect(200);
    expect(list.body.data.map((o: { id: string }) => o.id)).toContain(created.id);
    expect(list.body.pagination).toMatchObject({ limit: 100, offset: 0, has_more: false });
    expect(list.body.pagination.total).toBeGreaterThanOrEqual(2);

    const patched = await t.http()
      .patch(`/v2/admin/organizations/${created.id}`)
      .set('Authorization', `Bearer ${admin}`)
      .send({ plan: 'enterprise', limits: { requests_per_hour: 42 } })
      .expect(200);
    expect(patched.body.plan).toBe('enterprise');
    expect(patched.body.limits.requests_per_hour).toBe(42);
    const read = await t.http().get(`/v2/admin/organizations/${created.id}`).set('Authorization', `Bearer ${admin}`).expect(200);
    expect(read.body.plan).toBe('enterprise');

    for (const id of ['org_doesnotexist', 'not-an-id', "org_'; DROP TABLE organizations;--"]) {
      const missing = await t.http().get(`/v2/admin/organizations/${encodeURIComponent(id)}`).set('Authorization', `Bearer ${admin}`).expect(404);
      expect(missing.body.error.code).toBe('ORGANIZATION_NOT_FOUND');
    }
  });

  it('PATCH limits changes only the limits sent; null puts one back to the plan default; null for name or plan is 422', async () => {
    const id = (await createOrg({ name: 'Tuned', plan: 'enterprise', limits: { requests_per_hour: 500, burst_per_second: 7, monthly_active_users: 40 } }).expect(201)).body.organization.id;
    const patch = (body: Record<string, unknown>) => t.http().patch(`/v2/admin/organizations/${id}`).set('Authorization', `Bearer ${admin}`).send(body);
    const one = await patch({ limits: { burst_per_second: 9 } }).expect(200);
    expect(one.body.limits).toEqual({ monthly_active_users: 40, requests_per_hour: 500, burst_per_second: 9, concurrent_requests: 100 });
    const reset = await patch({ limits: { requests_per_hour: null, monthly_active_users: null } }).expect(200);
    expect(reset.body.limits).toEqual({ monthly_active_users: null, requests_per_hour: 100000, burst_per_second: 9, concurrent_requests: 100 });
    const [row] = await t.sql<{ limits: Record<string, unknown> }>('SELECT limits FROM organizations WHERE id = $1', [id]);
    expect(row!.limits).toEqual({ burst_per_second: 9 });
    for (const body of [{ name: null }, { plan: null }, { limits: null }]) {
      const res = await patch(body).expect(422);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
    }
    // null on create means the default too, and the rate limiter counts against it.
    const created = await createOrg({ name: 'Nulls', plan: 'enterprise', limits: { requests_per_hour: null } }).expect(201);
    expect(created.body.organization.limits.requests_per_hour).toBe(100000);
    const tok = await tokenFor(created.body.api_key.key);
    const res = await t.http().get('/v2/roles').set('Authorization', `Bearer ${tok}`).expect(200);
    expect(res.headers['x-ratelimit-limit']).toBe('100000');
  });

  it('only platform:admin may administer organizations', async () => {
    const org = (await createOrg({ name: 'Tenant', plan: 'basic' }).expect(201)).body;
    const tenant = await tokenFor(org.api_key.key);
    const res = await t.http().get('/v2/admin/organizations').set('Authorization', `Bearer ${tenant}`).expect(403);
    expect(res.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
    await t.http().post('/v2/admin/organizations').set('Authorization', `Bearer ${tenant}`).send({ name: 'x', plan: 'basic' }).expect(403);
  });

  it('keeps API keys inside their organization: another tenant’s key is a 404', async () => {
    const a = (await createOrg({ name: 'A', plan: 'basic' }).expect(201)).body;
    const b = (await createOrg({ name: 'B', plan: 'basic' }).expect(201)).body;
    const tokenB = await tokenFor(b.api_key.key);
    const res = await t.http().delete(`/v2/api-keys/${a.api_key.id}`).set('Authorization', `Bearer ${tokenB}`).expect(404);
    expect(res.body.error.code).toBe('API_KEY_NOT_FOUND');
    const listB = await t.http().get('/v2/api-keys').set('Authorization', `Bearer ${tokenB}`).expect(200);
    expect(listB.body.data.map((k: { id: string }) => k.id)).toEqual([b.api_key.id]);
    // A's key still works.
    await tokenFor(a.api_key.key);
  });

  it('a key cannot be given a scope its creator lacks', async () => {
    const org = (await createOrg({ name: 'Escalator', plan: 'basic' }).expect(201)).body;
    const tenant = await tokenFor(org.api_key.key);
    const res = await t.http()
      .post('/v2/api-keys')
      .set('Authorization', `Bearer ${tenant}`)
      .send({ name: 'sneaky', scopes: ['platform:admin'] })
      .expect(403);
    expect(res.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
    const ok = await t.http().post('/v2/api-keys').set('Authorization', `Bearer ${tenant}`).send({ name: 'reader', scopes: ['user:read'] }).expect(201);
    expect(ok.body).toEqual({ id: expect.stringMatching(/^key_/), name: 'reader', key: expect.stringMatching(/^sk_live_/), scopes: ['user:read'], created_at: expect.any(String) });
  });

  describe('request validation in the contract envelope (CONTRACT §3)', () => {
    it('missing fields: 400 MISSING_REQUIRED_FIELD, one detail per problem, also listing invalid ones', async () => {
      const res = await createOrg({ plan: 'gold' }).expect(400);
      expect(res.body.error.code).toBe('MISSING_REQUIRED_FIELD');
      expect(res.body.error.details).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ field: 'name', code: 'REQUIRED' }),
          expect.objectContaining({ field: 'plan', provided: 'gold', code: 'INVALID_VALUE' }),
        ]),
      );
      expect(res.body.error.request_id).toBe(res.headers['x-request-id']);
    });

    it('an empty body lists every required field', async () => {
      const res = await t.http().post('/v2/admin/organizations').set('Authorization', `Bearer ${admin}`).expect(400);
      expect(res.body.error.code).toBe('MISSING_REQUIRED_FIELD');
      expect(res.body.error.details.map((d: { field: string }) => d.field).sort()).toEqual(['name', 'plan']);
    });

    it('invalid values and unknown fields: 422 VALIDATION_ERROR with {field, issue, provided, code}', async () => {
      const res = await createOrg({ name: 'x', plan: 'basic', id: 'org_mine', created_at: '2020-01-01' }).expect(422);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
      expect(res.body.error.details).toEqual(
        expect.arrayContaining([
          { field: 'id', issue: 'Unknown field', provided: 'org_mine', code: 'UNKNOWN_FIELD' },
          expect.objectContaining({ field: 'created_at', code: 'UNKNOWN_FIELD' }),
        ]),
      );
      const wrongType = await createOrg({ name: 42, plan: 'basic' }).expect(422);
      expect(wrongType.body.error.details[0]).toMatchObject({ field: 'name', provided: 42 });
      const nested = await createOrg({ name: 'n', plan: 'enterprise', limits: { requests_per_hour: -1 } }).expect(422);
      expect(nested.body.error.details[0]).toMatchObject({ field: 'limits.requests_per_hour', code: 'TOO_SMALL' });
    });

    it('bad query parameters: 400 VALIDATION_ERROR', async () => {
      for (const q of ['limit=0', 'limit=101', 'limit=abc', 'offset=-1', 'unknown=1']) {
        const res = await t.http().get(`/v2/admin/organizations?${q}`).set('Authorization', `Bearer ${admin}`).expect(400);
        expect(res.body.error.code).toBe('VALIDATION_ERROR');
      }
    });

    it('bodies that are not JSON objects', async () => {
      const send = (type: string, body: string) =>
        t.http().post('/v2/admin/organizations').set('Authorization', `Bearer ${admin}`).set('Content-Type', type).send(body);
      expect((await send('application/json', '{"name": "x",')).body.error.code).toBe('MALFORMED_REQUEST');
      expect((await send('application/json', '[1,2]')).status).toBe(400);
      expect((await send('application/json', '"text"')).body.error.code).toBe('MALFORMED_REQUEST');
      const form = await send('application/x-www-form-urlencoded', 'name=x&plan=basic');
      expect(form.status).toBe(415);
      expect(form.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
      const proto = await send('application/json', '{"name":"x","plan":"basic","__proto__":{"admin":true}}');
      expect(proto.status).toBe(400);
      expect(proto.body.error.code).toBe('MALFORMED_REQUEST');
      const big = await send('application/json', JSON.stringify({ name: 'x'.repeat(1024 * 1024 + 10), plan: 'basic' }));
      expect(big.status).toBe(413);
      expect(big.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    });

    it('U+0000 in any string is 422; other Unicode is stored byte-exact', async () => {
      const nul = await createOrg({ name: 'bad\u0000name', plan: 'basic' }).expect(422);
      expect(nul.body.error.code).toBe('VALIDATION_ERROR');
      const name = 'Ünïcödé 🚀 שלום مرحبا 日本';
      const ok = await createOrg({ name, plan: 'basic' }).expect(201);
      expect(ok.body.organization.name).toBe(name);
      const [row] = await t.sql<{ name: string }>('SELECT name FROM organizations WHERE id = $1', [ok.body.organization.id]);
      expect(Buffer.from(row!.name)).toEqual(Buffer.from(name));
    });
  });
});
