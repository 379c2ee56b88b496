import { bootstrapToken, createTestApp, TEST_BOOTSTRAP_KEY, TestApp } from '@app/testing';
import { createHash } from 'node:crypto';
import { IdempotencyPruner } from '../apps/api/src/modules/idempotency/idempotency-pruner';
import { IdempotencyRepository } from '../apps/api/src/modules/idempotency/idempotency.repository';

/**
 * CONTRACT §2: every authenticated POST honours Idempotency-Key (users and bulk are covered in the
 * users suites); secrets shown once are never stored and are left out of a replay; a replay repeats
 * the headers that describe the result; bodies are compared as parsed JSON.
 */
describe('Idempotency-Key on every authenticated POST (CONTRACT §2)', () => {
  let t: TestApp;
  let token: string;
  const auth = (bearer = token) => ({ Authorization: `Bearer ${bearer}` });
  const post = (path: string, body: Record<string, unknown>, key: string, bearer = token) =>
    t.http().post(`/v2${path}`).set(auth(bearer)).set('Idempotency-Key', key).send(body);
  const stored = async (key: string) =>
    (await t.sql<{ organization_id: string; response_body: unknown }>('SELECT organization_id, response_body FROM idempotency_keys WHERE key = $1', [key]));

  beforeAll(async () => {
    t = await createTestApp();
    token = await bootstrapToken(t);
  });
  afterAll(async () => {
    await t.close();
  });

  it('POST /webhooks: a retry registers nothing new and answers the first endpoint again, without its secret', async () => {
    const body = { url: 'https://hooks.example.com/idem', events: ['user.created'] };
    const first = await post('/webhooks', body, 'hook-1').expect(201);
    expect(first.body.secret).toMatch(/^whsec_/);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    const again = await post('/webhooks', body, 'hook-1').expect(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body.id).toBe(first.body.id);
    expect(again.body).not.toHaveProperty('secret');
    const { secret, ...withoutSecret } = first.body as Record<string, unknown>;
    expect(again.body).toEqual(withoutSecret);
    expect(await t.sql('SELECT id FROM webhooks WHERE url = $1', [body.url])).toHaveLength(1);
    const [record] = await stored('hook-1');
    expect(JSON.stringify(record!.response_body)).not.toContain(String(secret));
  });

  it('POST /api-keys: one key is made; the replay and the stored record carry no secret; the first answer\'s key works', async () => {
    const first = await post('/api-keys', { name: 'idempotent key' }, 'key-1').expect(201);
    expect(first.body.key).toMatch(/^sk_/);
    const again = await post('/api-keys', { name: 'idempotent key' }, 'key-1').expect(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toMatchObject({ id: first.body.id, name: 'idempotent key' });
    expect(again.body).not.toHaveProperty('key');
    expect(await t.sql("SELECT id FROM api_keys WHERE name = 'idempotent key'")).toHaveLength(1);
    expect(JSON.stringify((await stored('key-1'))[0]!.response_body)).not.toContain(first.body.key);
    await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: first.body.key }).expect(200);
  });

  it('POST /admin/organizations: one organization; the replay leaves out its first API key\'s secret', async () => {
    const body = { name: 'Idempotent Inc', plan: 'professional' };
    const first = await post('/admin/organizations', body, 'org-1').expect(201);
    expect(first.body.api_key.key).toMatch(/^sk_/);
    const again = await post('/admin/organizations', body, 'org-1').expect(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body.organization).toEqual(first.body.organization);
    expect(again.body.api_key.id).toBe(first.body.api_key.id);
    expect(again.body.api_key).not.toHaveProperty('key');
    expect(await t.sql("SELECT id FROM organizations WHERE name = 'Idempotent Inc'")).toHaveLength(1);
  });

  it('POST /roles and POST /users/{id}/roles: done once; the same key on another path or body is 422 IDEMPOTENCY_KEY_REUSED', async () => {
    const role = { name: 'idem-auditor', permissions: ['user:read'] };
    const first = await post('/roles', role, 'role-1').expect(201);
    const again = await post('/roles', role, 'role-1').expect(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toEqual(first.body);
    expect(await t.sql("SELECT id FROM roles WHERE name = 'idem-auditor'")).toHaveLength(1);

    const reused = await post('/roles', { ...role, name: 'idem-other' }, 'role-1').expect(422);
    expect(reused.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    const otherPath = await post('/webhooks', { url: 'https://hooks.example.com/x', events: ['user.created'] }, 'role-1').expect(422);
    expect(otherPath.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(await t.sql("SELECT id FROM roles WHERE name = 'idem-other'")).toHaveLength(0);

    const user = (await t.http().post('/v2/users').set(auth()).send({ email: 'idem-roles@example.com', first_name: 'I', last_name: 'R' }).expect(201)).body;
    const assigned = await post(`/users/${user.id}/roles`, { roles: ['idem-auditor'] }, 'assign-1');
    expect(assigned.status).toBeLessThan(300);
    const replay = await post(`/users/${user.id}/roles`, { roles: ['idem-auditor'] }, 'assign-1');
    expect(replay.status).toBe(assigned.status);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toEqual(assigned.body);
  });

  it('a request that failed is not remembered: the same key with a corrected body goes through', async () => {
    const bad = await post('/roles', { name: 'idem-fixed', permissions: 'not-a-list' }, 'fix-1').expect(422);
    expect(bad.body.error.code).toBe('VALIDATION_ERROR');
    expect(await stored('fix-1')).toHaveLength(0);
    const good = await post('/roles', { name: 'idem-fixed', permissions: [] }, 'fix-1').expect(201);
    expect(good.headers['idempotent-replayed']).toBeUndefined();
  });

  it('a fail_on_error bulk answered 422 is a failure too: not remembered, so the corrected batch may reuse the key', async () => {
    const bad = { users: [{ email: 'idem-bulk-1@example.com', first_name: 'A', last_name: 'B' }, { email: 'not-an-email', first_name: 'A', last_name: 'B' }], options: { fail_on_error: true } };
    const rolledBack = await post('/users/bulk', bad, 'bulk-fix').expect(422);
    expect(rolledBack.body.summary.successful).toBe(0);
    expect(await stored('bulk-fix')).toHaveLength(0);
    const good = { ...bad, users: [bad.users[0], { email: 'idem-bulk-2@example.com', first_name: 'A', last_name: 'B' }] };
    const done = await post('/users/bulk', good, 'bulk-fix').expect(200);
    expect(done.body.summary).toEqual({ total: 2, successful: 2, failed: 0 });
    const replay = await post('/users/bulk', good, 'bulk-fix').expect(200);
    expect(replay.headers['idempotent-replayed']).toBe('true');
  });

  it('POST /users: a replay has the first response\'s status, body, ETag, Location and Content-Type, but its own X-Request-Id', async () => {
    const body = { email: 'idem-headers@example.com', first_name: 'H', last_name: 'R' };
    const first = await post('/users', body, 'user-headers').expect(201);
    expect(first.headers.etag).toMatch(/^"user_.+\.v\d+"$/);
    expect(first.headers.location).toBe(`/v2/users/${first.body.id}`);
    const again = await post('/users', body, 'user-headers').expect(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toEqual(first.body);
    expect(again.headers.etag).toBe(first.headers.etag);
    expect(again.headers.location).toBe(first.headers.location);
    expect(again.headers['content-type']).toBe(first.headers['content-type']);
    expect(again.headers['x-request-id']).not.toBe(first.headers['x-request-id']);
    expect(await t.sql('SELECT id FROM users WHERE email = $1', [body.email])).toHaveLength(1);
  });

  it('bodies are compared as parsed JSON: reordered keys or other whitespace replay; another value or array order is 422', async () => {
    const raw = (path: string, json: string, key: string) =>
      t.http().post(`/v2${path}`).set(auth()).set('Idempotency-Key', key).set('Content-Type', 'application/json').send(json);
    const first = await raw('/users', '{"email":"idem-order@example.com","first_name":"A","last_name":"B"}', 'user-order').expect(201);
    for (const json of ['{"last_name":"B","first_name":"A","email":"idem-order@example.com"}', '{ "first_name": "A",\n  "email": "idem-order@example.com", "last_name": "B" }']) {
      const again = await raw('/users', json, 'user-order').expect(201);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.body).toEqual(first.body);
      expect(again.headers.etag).toBe(first.headers.etag);
    }
    const other = await raw('/users', '{"last_name":"C","first_name":"A","email":"idem-order@example.com"}', 'user-order').expect(422);
    expect(other.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(await t.sql("SELECT id FROM users WHERE email = 'idem-order@example.com'")).toHaveLength(1);

    // Nested objects are sorted too; arrays keep their order.
    const a = { email: 'idem-order-1@example.com', first_name: 'A', last_name: 'B' };
    const b = { email: 'idem-order-2@example.com', first_name: 'C', last_name: 'D' };
    const batch = await post('/users/bulk', { users: [a, b], options: { fail_on_error: true } }, 'bulk-order').expect(200);
    const reordered = await post('/users/bulk', { options: { fail_on_error: true }, users: [{ last_name: 'B', first_name: 'A', email: a.email }, { last_name: 'D', email: b.email, first_name: 'C' }] }, 'bulk-order').expect(200);
    expect(reordered.headers['idempotent-replayed']).toBe('true');
    expect(reordered.body).toEqual(batch.body);
    const swapped = await post('/users/bulk', { users: [b, a], options: { fail_on_error: true } }, 'bulk-order').expect(422);
    expect(swapped.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(await t.sql('SELECT id FROM users WHERE email = ANY($1)', [[a.email, b.email]])).toHaveLength(2);
  });

  it('a record stored before headers and canonical hashing were kept (bare body, hash of the body as sent) still replays', async () => {
    const org = (await t.sql<{ organization_id: string }>('SELECT organization_id FROM roles LIMIT 1'))[0]!.organization_id;
    const body = { permissions: ['user:read'], name: 'idem-legacy' };
    const hash = createHash('sha256').update(`POST /v2/roles\n${JSON.stringify(body)}`).digest('hex');
    await t.sql(
      "INSERT INTO idempotency_keys (organization_id, key, request_hash, response_status, response_body) VALUES ($1, 'legacy-1', $2, 201, $3::jsonb)",
      [org, hash, JSON.stringify({ id: 'role_legacy', name: 'idem-legacy' })],
    );
    const again = await post('/roles', body, 'legacy-1').expect(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.body).toEqual({ id: 'role_legacy', name: 'idem-legacy' });
    expect(again.headers.etag).toBeUndefined();
    expect((await post('/roles', { ...body, name: 'idem-legacy-2' }, 'legacy-1').expect(422)).body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(await t.sql("SELECT id FROM roles WHERE name LIKE 'idem-legacy%'")).toHaveLength(0);
  });

  it('keys are per organization: another organization with the same key and body gets its own result', async () => {
    const org = (await post('/admin/organizations', { name: 'Second Idem', plan: 'professional' }, 'org-2').expect(201)).body;
    const other = (await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: org.api_key.key }).expect(200)).body.access_token;
    const role = { name: 'idem-auditor', permissions: ['user:read'] };
    const mine = await post('/roles', role, 'role-1').expect(201);
    const theirs = await post('/roles', role, 'role-1', other).expect(201);
    expect(theirs.headers['idempotent-replayed']).toBeUndefined();
    expect(theirs.body.id).not.toBe(mine.body.id);
    const rows = await t.sql<{ organization_id: string }>("SELECT organization_id FROM roles WHERE name = 'idem-auditor' ORDER BY organization_id");
    expect(rows.map((r) => r.organization_id)).toContain(org.organization.id);
    expect(rows).toHaveLength(2);
  });

  it('an Idempotency-Key that is too long or not printable is 400; /auth endpoints ignore the header', async () => {
    for (const key of ['x'.repeat(256), 'tab\tkey']) {
      const res = await post('/roles', { name: 'idem-bad-key', permissions: [] }, key).expect(400);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
    }
    const old = (await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY }).expect(200)).body.access_token;
    const refreshed = await t.http().post('/v2/auth/refresh').set(auth(old)).set('Idempotency-Key', 'refresh-1').send({}).expect(200);
    expect(refreshed.body.access_token).not.toBe(old);
    // Not replayed: the old token was revoked by the first refresh.
    const again = await t.http().post('/v2/auth/refresh').set(auth(old)).set('Idempotency-Key', 'refresh-1').send({}).expect(401);
    expect(again.body.error.code).toBe('AUTH_TOKEN_INVALID');
    expect(await stored('refresh-1')).toHaveLength(0);
  });

  it('after 24 hours a key is free again, and a claim left by a request that never finished (its process died) does not block a retry', async () => {
    const role = { name: 'idem-expired', permissions: [] };
    await post('/roles', role, 'expire-1').expect(201);
    await t.sql("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'expire-1'");
    // The record no longer counts: the request runs again and meets the role it made the first time.
    const again = await post('/roles', role, 'expire-1').expect(409);
    expect(again.headers['idempotent-replayed']).toBeUndefined();
    expect(again.body.error.code).not.toBe('CONCURRENT_UPDATE');

    // A claim still "in progress" is 409 CONCURRENT_UPDATE while young...
    const inFlight = { name: 'idem-inflight', permissions: [] };
    await post('/roles', inFlight, 'inflight-1').expect(201);
    await t.sql("UPDATE idempotency_keys SET response_status = NULL, response_body = NULL WHERE key = 'inflight-1'");
    const busy = await post('/roles', inFlight, 'inflight-1').expect(409);
    expect(busy.body.error.code).toBe('CONCURRENT_UPDATE');
    // ...and taken as abandoned after two minutes: the retry runs (and meets the role).
    await t.sql("UPDATE idempotency_keys SET created_at = now() - interval '3 minutes' WHERE key = 'inflight-1'");
    const retried = await post('/roles', inFlight, 'inflight-1').expect(409);
    expect(retried.body.error.code).not.toBe('CONCURRENT_UPDATE');
  });

  it('a request whose claim was taken over as abandoned can no longer complete or release its successor\'s record', async () => {
    const records = t.app.get(IdempotencyRepository);
    const org = (await t.sql<{ organization_id: string }>('SELECT organization_id FROM roles LIMIT 1'))[0]!.organization_id;
    const first = await records.claim(org, 'takeover-1', 'h', 24, 120);
    expect(first).toBeDefined();
    await t.sql("UPDATE idempotency_keys SET created_at = created_at - interval '3 minutes' WHERE key = 'takeover-1'");
    const second = await records.claim(org, 'takeover-1', 'h', 24, 120);
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    // The first request finishes late: neither its answer nor its failure touches the new claim.
    await records.complete(org, 'takeover-1', first!, 201, { from: 'first' });
    await records.release(org, 'takeover-1', first!);
    expect(await records.find(org, 'takeover-1')).toEqual({ request_hash: 'h', response_status: null, response_body: null, response_headers: {} });
    await records.complete(org, 'takeover-1', second!, 201, { from: 'second' });
    expect(await records.find(org, 'takeover-1')).toEqual({ request_hash: 'h', response_status: 201, response_body: { from: 'second' }, response_headers: {} });
  });

  it('expired records are pruned in the background (oldest first, young ones kept)', async () => {
    const org = (await t.sql<{ organization_id: string }>('SELECT organization_id FROM roles LIMIT 1'))[0]!.organization_id;
    await t.sql(
      `INSERT INTO idempotency_keys (organization_id, key, request_hash, response_status, response_body, created_at)
       SELECT $1, 'old-' || g, 'h', 201, '{}'::jsonb, now() - interval '25 hours' - g * interval '1 second' FROM generate_series(1, 1500) g`,
      [org],
    );
    await post('/roles', { name: 'idem-young', permissions: [] }, 'young-1').expect(201);
    const before = (await t.sql<{ n: number }>("SELECT count(*)::int AS n FROM idempotency_keys WHERE key LIKE 'old-%'"))[0]!.n;
    expect(before).toBe(1500);
    expect(await t.app.get(IdempotencyPruner).prune()).toBeGreaterThanOrEqual(1500);
    expect((await t.sql<{ n: number }>("SELECT count(*)::int AS n FROM idempotency_keys WHERE key LIKE 'old-%'"))[0]!.n).toBe(0);
    expect(await stored('young-1')).toHaveLength(1);
  });

  it('every authenticated POST outside /auth offers Idempotency-Key in the OpenAPI description (the decorator that documents it applies it)', async () => {
    type Op = { parameters?: Array<{ name: string; in: string }>; security?: unknown[] };
    const doc = (await t.http().get('/openapi.json').expect(200)).body as { paths: Record<string, Record<string, Op>> };
    const has = (op: Op | undefined) => (op?.parameters ?? []).some((p) => p.name === 'Idempotency-Key' && p.in === 'header');
    const posts = Object.entries(doc.paths).filter(([path, item]) => item.post?.security?.length && !path.startsWith('/v2/auth/'));
    expect(posts.length).toBeGreaterThanOrEqual(11);
    for (const [path, item] of posts) expect([path, has(item.post)]).toEqual([path, true]);
    expect(has(doc.paths['/v2/auth/token']?.post)).toBe(false);
    expect(has(doc.paths['/v2/auth/refresh']?.post)).toBe(false);
  });
});
