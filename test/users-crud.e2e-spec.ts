import { bootstrapToken, createTestApp, TestApp } from '@app/testing';
import { Algorithm, hash } from '@node-rs/argon2';

describe('Users: CRUD, soft delete, roles, concurrency, events (CONTRACT §2, §6, §9)', () => {
  let t: TestApp;
  let token: string;
  const auth = () => ({ Authorization: `Bearer ${token}` });
  const newUser = (over: Record<string, unknown> = {}) => ({
    email: `u${Math.random().toString(36).slice(2)}@example.com`,
    first_name: 'Alex',
    last_name: 'Johnson',
    ...over,
  });
  const create = (body: Record<string, unknown>) => t.http().post('/v2/users').set(auth()).send(body);

  beforeAll(async () => {
    t = await createTestApp();
    token = await bootstrapToken(t);
  });
  afterAll(async () => {
    await t.close();
  });

  it('POST /users answers 201 in the seed shape; email is trimmed; the password is never returned', async () => {
    const res = await create({ ...newUser({ email: '  NewUser@Company.com ' }), password: 'SecurePass123!', metadata: { department: 'marketing', employee_id: 'EMP-001' } }).expect(201);
    expect(res.body).toMatchObject({
      id: expect.stringMatching(/^user_/),
      email: 'NewUser@Company.com',
      first_name: 'Alex',
      last_name: 'Johnson',
      role: 'user',
      status: 'active',
      email_verified: false,
      metadata: { department: 'marketing', employee_id: 'EMP-001' },
      created_at: expect.stringMatching(/Z$/),
    });
    expect(JSON.stringify(res.body)).not.toMatch(/password|SecurePass/);
    expect(res.headers.etag).toBeDefined();
    const [row] = await t.sql<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [res.body.id]);
    // OWASP's 7 MiB × 5 profile, the default (PASSWORD_HASH_MEMORY_KIB).
    expect(row!.password_hash).toMatch(/^\$argon2id\$v=19\$m=7168,t=5,p=1\$/);
  });

  it('a body that is not an object is 400 MALFORMED_REQUEST; null, out-of-range numbers and null options are refused, never stored altered', async () => {
    const user = (await create(newUser()).expect(201)).body;
    const raw = (method: 'post' | 'put' | 'patch', path: string, body: string) =>
      t.http()[method](path).set(auth()).set('Content-Type', 'application/json').send(body);
    for (const [method, path] of [['post', '/v2/users'], ['put', `/v2/users/${user.id}`], ['patch', `/v2/users/${user.id}`], ['post', '/v2/users/bulk']] as const) {
      for (const body of ['null', '[]', '"text"', '42']) {
        const res = await raw(method, path, body);
        expect({ method, path, body, status: res.status, code: res.body.error?.code }).toEqual({ method, path, body, status: 400, code: 'MALFORMED_REQUEST' });
      }
    }
    // Bytes that are not UTF-8 are refused, not stored as U+FFFD.
    const invalidUtf8 = Buffer.concat([Buffer.from(`{"email":"b${Date.now()}@example.com","first_name":"A`), Buffer.from([0xff, 0xfe]), Buffer.from('","last_name":"B"}')]);
    // (serialize: send the bytes as they are, not supertest's JSON of a Buffer)
    const sendBytes = (body: Buffer, type = 'application/json') =>
      t.http().post('/v2/users').set(auth()).set('Content-Type', type).serialize((b: unknown) => b as string).send(body);
    const bytes = await sendBytes(invalidUtf8);
    expect({ status: bytes.status, code: bytes.body.error?.code }).toEqual({ status: 400, code: 'MALFORMED_REQUEST' });
    const utf8 = await sendBytes(Buffer.from(JSON.stringify(newUser({ first_name: 'Zoë 🦊' }))), 'application/json; charset=utf-8').expect(201);
    expect(utf8.body.first_name).toBe('Zoë 🦊');
    const proto = await raw('post', '/v2/users', '{"__proto__":{"x":1},"email":"p@example.com","first_name":"A","last_name":"B"}');
    expect({ status: proto.status, code: proto.body.error?.code }).toEqual({ status: 400, code: 'MALFORMED_REQUEST' });
    const nullMetadata = await create(newUser({ metadata: null })).expect(422);
    expect(nullMetadata.body.error.details[0].field).toBe('metadata');
    const huge = await raw('post', '/v2/users', JSON.stringify(newUser()).replace(/}$/, ',"metadata":{"n":1e999}}')).expect(422);
    expect(huge.body.error.details[0]).toMatchObject({ field: 'metadata.n', code: 'NUMBER_OUT_OF_RANGE' });
    for (const options of [null, [], 'yes']) {
      const res = await t.http().post('/v2/users/bulk').set(auth()).send({ users: [newUser()], options }).expect(422);
      expect(res.body.error.details.map((d: { field: string }) => d.field)).toContain('options');
    }
    // Nothing was written by any of these.
    const [row] = await t.sql<{ version: number; first_name: string }>('SELECT version, first_name FROM users WHERE id = $1', [user.id]);
    expect(row).toEqual({ version: 1, first_name: user.first_name });
  });

  it('GET /users/{id} returns roles with permissions and their union; include=preferences adds preferences', async () => {
    const created = (await create(newUser({ role: 'moderator' })).expect(201)).body;
    const res = await t.http().get(`/v2/users/${created.id}`).set(auth()).expect(200);
    expect(res.body.roles).toEqual([
      { id: expect.stringMatching(/^role_/), name: 'moderator', display_name: 'Moderator', permissions: expect.arrayContaining(['user:read', 'user:write']) },
    ]);
    expect(res.body.permissions).toEqual(expect.arrayContaining(['read:own_profile', 'update:own_profile', 'user:read']));
    expect(res.body).not.toHaveProperty('preferences');
    const withPrefs = await t.http().get(`/v2/users/${created.id}?include=roles,permissions,preferences`).set(auth()).expect(200);
    expect(withPrefs.body.preferences).toEqual({});
  });

  it('unknown, malformed and foreign ids are 404 USER_NOT_FOUND', async () => {
    for (const id of ['user_nope', 'garbage', "user_1' OR '1'='1", '%00']) {
      const res = await t.http().get(`/v2/users/${encodeURIComponent(id)}`).set(auth());
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('USER_NOT_FOUND');
    }
  });

  it('rejects mass assignment and bad values: 422 with details; missing fields 400', async () => {
    for (const field of [{ id: 'user_mine' }, { email_verified: true }, { created_at: '2020-01-01T00:00:00Z' }, { status: 'active' }, { is_admin: true }]) {
      const res = await create({ ...newUser(), ...field }).expect(422);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
      expect(res.body.error.details[0]).toMatchObject({ field: Object.keys(field)[0], code: 'UNKNOWN_FIELD' });
    }
    const email = await create(newUser({ email: 'invalid-email' })).expect(422);
    expect(email.body.error.details[0]).toEqual({ field: 'email', issue: 'Invalid email format', provided: 'invalid-email', code: 'INVALID_EMAIL_FORMAT' });
    const long = await create(newUser({ first_name: 'x'.repeat(101) })).expect(422);
    expect(long.body.error.details[0]).toMatchObject({ field: 'first_name', code: 'TOO_LONG' });
    const meta = await create(newUser({ metadata: { blob: 'x'.repeat(17 * 1024) } })).expect(422);
    expect(meta.body.error.details[0]).toMatchObject({ field: 'metadata', code: 'TOO_LARGE' });
    const role = await create(newUser({ role: 'overlord' })).expect(422);
    expect(role.body.error.code).toBe('INVALID_ROLE');
    const wrongType = await create(newUser({ password: 12345 })).expect(422);
    // A wrong type is reported as one (not as "too long"); a password is never echoed back.
    expect(wrongType.body.error.details).toEqual([{ field: 'password', issue: 'password must be a string', code: 'INVALID_TYPE' }]);
    const missing = await create({ first_name: 'A', email: 'bad' }).expect(400);
    expect(missing.body.error.code).toBe('MISSING_REQUIRED_FIELD');
    expect(missing.body.error.details.map((d: { field: string }) => d.field).sort()).toEqual(['email', 'last_name']);
    expect(await t.sql('SELECT 1 FROM users WHERE email = $1', ['invalid-email'])).toHaveLength(0);
  });

  it('concurrent deletes without If-Match: one succeeds, the others find no user (404), none is 409; a delete racing an update still deletes', async () => {
    for (const soft of [true, false]) {
      const user = (await create(newUser()).expect(201)).body;
      const statuses = await Promise.all(
        Array.from({ length: 10 }, () => t.http().delete(`/v2/users/${user.id}${soft ? '?soft_delete=true' : ''}`).set(auth()).then((r) => `${r.status} ${r.body.error?.code ?? ''}`.trim())),
      );
      expect({ soft, statuses: statuses.sort() }).toEqual({ soft, statuses: ['200', ...Array(9).fill('404 USER_NOT_FOUND')] });
    }
    const racing = (await create(newUser()).expect(201)).body;
    const [deleted, ...updates] = await Promise.all([
      t.http().delete(`/v2/users/${racing.id}?soft_delete=true`).set(auth()),
      ...Array.from({ length: 5 }, (_, i) => t.http().put(`/v2/users/${racing.id}`).set(auth()).send({ first_name: `Racer${i}` })),
    ]);
    expect(deleted!.status).toBe(200);
    for (const u of updates) expect([200, 404]).toContain(u.status);
    const [row] = await t.sql<{ deleted_at: Date | null; status: string }>('SELECT deleted_at, status FROM users WHERE id = $1', [racing.id]);
    expect(row!.deleted_at).not.toBeNull();
    expect(row!.status).toBe('deleted');
    // With a stale If-Match it is still 409.
    const stale = (await create(newUser()).expect(201)).body;
    const etag = (await t.http().get(`/v2/users/${stale.id}`).set(auth()).expect(200)).headers.etag as string;
    await t.http().put(`/v2/users/${stale.id}`).set(auth()).send({ first_name: 'Moved' }).expect(200);
    const conflict = await t.http().delete(`/v2/users/${stale.id}?soft_delete=true`).set(auth()).set('If-Match', etag).expect(409);
    expect(conflict.body.error.code).toBe('CONCURRENT_UPDATE');
  });

  it('stores Unicode names byte-exact', async () => {
    const names = { first_name: 'Zoë 🚀 José', last_name: 'שלום عبد الله 山田' };
    const created = (await create(newUser(names)).expect(201)).body;
    const read = await t.http().get(`/v2/users/${created.id}`).set(auth()).expect(200);
    expect(read.body.first_name).toBe(names.first_name);
    expect(read.body.last_name).toBe(names.last_name);
    const [row] = await t.sql<{ first_name: string }>('SELECT first_name FROM users WHERE id = $1', [created.id]);
    expect(Buffer.from(row!.first_name)).toEqual(Buffer.from(names.first_name));
  });

  it('10 concurrent creates of one email: exactly one 201 and nine 409 USER_ALREADY_EXISTS (case-insensitive)', async () => {
    const email = `race${Date.now()}@example.com`;
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => create(newUser({ email: i % 2 ? email.toUpperCase() : email }))),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    expect(results.find((r) => r.status === 409)!.body.error.code).toBe('USER_ALREADY_EXISTS');
    expect(await t.sql('SELECT 1 FROM users WHERE email_lower = $1', [email])).toHaveLength(1);
  });

  it('PUT changes only the fields sent; metadata replaces; PATCH is the same; a role change publishes user.role_changed', async () => {
    const created = (await create(newUser({ metadata: { a: 1, b: 2 } })).expect(201)).body;
    const put = await t.http().put(`/v2/users/${created.id}`).set(auth()).send({ first_name: 'Jane', role: 'admin', metadata: { title: 'Manager' } }).expect(200);
    expect(put.body).toMatchObject({ first_name: 'Jane', last_name: 'Johnson', role: 'admin', metadata: { title: 'Manager' } });
    const patch = await t.http().patch(`/v2/users/${created.id}`).set(auth()).send({ last_name: 'Smith' }).expect(200);
    expect(patch.body).toMatchObject({ first_name: 'Jane', last_name: 'Smith', role: 'admin' });
    const bad = await t.http().put(`/v2/users/${created.id}`).set(auth()).send({ email_verified: true }).expect(422);
    expect(bad.body.error.code).toBe('VALIDATION_ERROR');
    // A field may be left out, not cleared: null is refused and changes nothing.
    for (const cleared of [{ first_name: null }, { last_name: null }, { status: null }, { metadata: null }, { role: null }]) {
      const res = await t.http().patch(`/v2/users/${created.id}`).set(auth()).send(cleared);
      expect([res.status, res.body.error?.code, res.body.error?.details?.[0]?.field]).toEqual([422, 'VALIDATION_ERROR', Object.keys(cleared)[0]]);
    }
    await t.drainEvents();
    const events = await t.sql<{ type: string; data: { changes?: string[]; roles?: string[] } }>(
      `SELECT type, data FROM outbox_events WHERE data->'user'->>'id' = $1 ORDER BY seq`,
      [created.id],
    );
    expect(events.map((e) => e.type)).toEqual(['user.created', 'user.updated', 'user.role_changed', 'user.updated']);
    expect(events[1]!.data.changes).toEqual(expect.arrayContaining(['first_name', 'role', 'metadata.a', 'metadata.b', 'metadata.title']));
    expect(events[2]!.data.roles).toEqual(['admin']);
    // Every event carries the user as GET shows them after that change, whichever path wrote it.
    const snapshot = (u: Record<string, unknown>) => ({
      id: u.id, email: u.email, first_name: u.first_name, last_name: u.last_name, role: u.role,
      status: u.status, email_verified: u.email_verified, created_at: u.created_at, updated_at: u.updated_at,
    });
    const created0 = events[0]!.data as unknown as { user: Record<string, unknown> };
    expect(created0.user).toEqual(snapshot(created));
    const lastUpdate = events[3]!.data as unknown as { user: Record<string, unknown>; changes: string[] };
    expect(lastUpdate).toEqual({ user: snapshot(patch.body), changes: ['last_name'] });
  });

  it('ETag and If-Match: a stale If-Match is 409 CONCURRENT_UPDATE and changes nothing', async () => {
    const created = await create(newUser()).expect(201);
    const etag = created.headers.etag as string;
    const first = await t.http().put(`/v2/users/${created.body.id}`).set(auth()).set('If-Match', etag).send({ first_name: 'One' }).expect(200);
    expect(first.headers.etag).not.toBe(etag);
    const stale = await t.http().put(`/v2/users/${created.body.id}`).set(auth()).set('If-Match', etag).send({ first_name: 'Two' }).expect(409);
    expect(stale.body.error.code).toBe('CONCURRENT_UPDATE');
    await t.http().delete(`/v2/users/${created.body.id}`).set(auth()).set('If-Match', etag).expect(409);
    // Versions beyond any the database holds, other users' ETags and non-ETags: 409, never 5xx; no user: 404.
    for (const other of [`"${created.body.id}.v3000000000"`, `"${created.body.id}.v${'9'.repeat(400)}"`, '"user_other.v2"', 'garbage']) {
      const res = await t.http().patch(`/v2/users/${created.body.id}`).set(auth()).set('If-Match', other).send({ first_name: 'Three' });
      expect([res.status, res.body.error?.code]).toEqual([409, 'CONCURRENT_UPDATE']);
    }
    await t.http().patch('/v2/users/user_nosuchuser').set(auth()).set('If-Match', '"user_other.v2"').send({ first_name: 'Three' }).expect(404);
    const read = await t.http().get(`/v2/users/${created.body.id}`).set(auth()).expect(200);
    expect(read.body.first_name).toBe('One');
  });

  it('an update that changes nothing writes nothing: 200 with the user as it is, same ETag, no user.updated; a stale If-Match is still 409', async () => {
    const created = await create(newUser({ metadata: { team: 'blue' } })).expect(201);
    const { id, first_name, last_name, metadata } = created.body;
    const etag = created.headers.etag as string;
    const same = await t.http().put(`/v2/users/${id}`).set(auth()).set('If-Match', etag).send({ first_name, last_name, metadata, status: 'active' }).expect(200);
    expect(same.headers.etag).toBe(etag);
    expect(same.body).toEqual(created.body);
    const changed = await t.http().patch(`/v2/users/${id}`).set(auth()).send({ last_name: 'Other' }).expect(200);
    const stale = await t.http().patch(`/v2/users/${id}`).set(auth()).set('If-Match', etag).send({ last_name: 'Other' }).expect(409);
    expect(stale.body.error.code).toBe('CONCURRENT_UPDATE');
    const current = await t.http().patch(`/v2/users/${id}`).set(auth()).set('If-Match', changed.headers.etag as string).send({ last_name: 'Other' }).expect(200);
    expect(current.headers.etag).toBe(changed.headers.etag);
    const [row] = await t.sql<{ version: number }>('SELECT version FROM users WHERE id = $1', [id]);
    expect(row!.version).toBe(2);
    await t.drainEvents();
    const updates = await t.sql<{ data: { changes: string[] } }>(
      `SELECT data FROM outbox_events WHERE type = 'user.updated' AND data->'user'->>'id' = $1 ORDER BY seq`,
      [id],
    );
    expect(updates.map((e) => e.data.changes)).toEqual([['last_name']]);
  });

  it('12 concurrent PATCHes without If-Match all succeed, none is lost, and each publishes its own user.updated', async () => {
    const created = (await create(newUser()).expect(201)).body;
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => t.http().patch(`/v2/users/${created.id}`).set(auth()).send({ metadata: { [`k${i}`]: i }, first_name: `Name${i}` })),
    );
    expect(results.map((r) => r.status)).toEqual(Array(12).fill(200));
    // Every response shows the state right after its own change: one version each, 2…13.
    expect(results.map((r) => r.headers.etag).sort()).toEqual(Array.from({ length: 12 }, (_, i) => `"${created.id}.v${i + 2}"`).sort());
    const [row] = await t.sql<{ version: number; first_name: string; metadata: Record<string, number> }>(
      'SELECT version, first_name, metadata FROM users WHERE id = $1',
      [created.id],
    );
    expect(row!.version).toBe(13);
    const last = results.find((r) => r.headers.etag === `"${created.id}.v13"`)!;
    expect(row!.first_name).toBe(last.body.first_name);
    expect(row!.metadata).toEqual(last.body.metadata);
    await t.drainEvents();
    const events = await t.sql<{ data: { user: { first_name: string; updated_at: string }; changes: string[] } }>(
      `SELECT data FROM outbox_events WHERE type = 'user.updated' AND data->'user'->>'id' = $1 ORDER BY seq`,
      [created.id],
    );
    expect(events).toHaveLength(12);
    expect(new Set(events.map((e) => e.data.user.first_name)).size).toBe(12);
    expect(events.every((e) => e.data.changes.includes('first_name'))).toBe(true);
  });
  it('soft delete hides the user, keeps the email taken, and restore brings it back; permanent delete removes the row', async () => {
    const soft = (await create(newUser()).expect(201)).body;
    const del = await t.http().delete(`/v2/users/${soft.id}?soft_delete=true`).set(auth()).expect(200);
    expect(del.body).toEqual({ message: 'User successfully deleted', deleted_at: expect.stringMatching(/Z$/), soft_delete: true });
    await t.http().get(`/v2/users/${soft.id}`).set(auth()).expect(404);
    const shown = await t.http().get(`/v2/users/${soft.id}?include_deleted=true`).set(auth()).expect(200);
    expect(shown.body.status).toBe('deleted');
    expect(shown.body.deleted_at).toBeDefined();
    const list = await t.http().get(`/v2/users?search=${encodeURIComponent(soft.email)}`).set(auth()).expect(200);
    expect(list.body.data).toHaveLength(0);
    const deletedList = await t.http().get(`/v2/users?status=deleted&search=${encodeURIComponent(soft.email)}`).set(auth()).expect(200);
    expect(deletedList.body.data.map((u: { id: string }) => u.id)).toEqual([soft.id]);
    await create(newUser({ email: soft.email })).expect(409);
    const restored = await t.http().post(`/v2/users/${soft.id}/restore`).set(auth()).expect(200);
    expect(restored.body.status).toBe('active');
    await t.http().get(`/v2/users/${soft.id}`).set(auth()).expect(200);

    const hard = (await create(newUser()).expect(201)).body;
    const gone = await t.http().delete(`/v2/users/${hard.id}`).set(auth()).expect(200);
    expect(gone.body.soft_delete).toBe(false);
    expect(await t.sql('SELECT 1 FROM users WHERE id = $1', [hard.id])).toHaveLength(0);
    await t.http().get(`/v2/users/${hard.id}?include_deleted=true`).set(auth()).expect(404);
    // Its user.deleted event names the user by id only; a soft delete's also carries the email.
    const deletions = await t.sql<{ data: { user: Record<string, unknown>; soft_delete: boolean } }>(
      `SELECT data FROM outbox_events WHERE type = 'user.deleted' AND data->'user'->>'id' = ANY($1::text[]) ORDER BY seq`,
      [[soft.id, hard.id]],
    );
    expect(deletions.map((d) => d.data.user)).toEqual([{ id: soft.id, email: soft.email }, { id: hard.id }]);
    await create(newUser({ email: hard.email })).expect(201);
  });

  it('restore brings a user back with the status it had; a soft-deleted user can be deleted for good; If-Match guards the permanent delete', async () => {
    const user = (await create(newUser()).expect(201)).body;
    await t.http().put(`/v2/users/${user.id}`).set(auth()).send({ status: 'suspended' }).expect(200);
    await t.http().delete(`/v2/users/${user.id}?soft_delete=true`).set(auth()).expect(200);
    const restored = await t.http().post(`/v2/users/${user.id}/restore`).set(auth()).expect(200);
    expect(restored.body.status).toBe('suspended');
    expect((await t.sql<{ status_before_delete: string | null }>('SELECT status_before_delete FROM users WHERE id = $1', [user.id]))[0]!.status_before_delete).toBeNull();

    await t.http().delete(`/v2/users/${user.id}?soft_delete=true`).set(auth()).expect(200);
    // Soft-deleting it again: it is already gone from view.
    await t.http().delete(`/v2/users/${user.id}?soft_delete=true`).set(auth()).expect(404);
    const shown = await t.http().get(`/v2/users/${user.id}?include_deleted=true`).set(auth()).expect(200);
    const stale = await t.http().delete(`/v2/users/${user.id}`).set(auth()).set('If-Match', `"${user.id}.v1"`).expect(409);
    expect(stale.body.error.code).toBe('CONCURRENT_UPDATE');
    await t.http().delete(`/v2/users/${user.id}`).set(auth()).set('If-Match', shown.headers.etag).expect(200);
    expect(await t.sql('SELECT 1 FROM users WHERE id = $1', [user.id])).toHaveLength(0);
    await create(newUser({ email: user.email })).expect(201);
  });

  it('assigns and removes extra roles; GET shows them and their permissions', async () => {
    const user = (await create(newUser()).expect(201)).body;
    const added = await t.http().post(`/v2/users/${user.id}/roles`).set(auth()).send({ roles: ['moderator'] }).expect(200);
    expect(added.body.roles.map((r: { name: string }) => r.name)).toEqual(['user', 'moderator']);
    expect(added.body.permissions).toContain('user:write');
    const unknown = await t.http().post(`/v2/users/${user.id}/roles`).set(auth()).send({ roles: ['nope'] }).expect(422);
    expect(unknown.body.error.code).toBe('INVALID_ROLE');
    const removed = await t.http().delete(`/v2/users/${user.id}/roles/moderator`).set(auth()).expect(200);
    expect(removed.body.roles.map((r: { name: string }) => r.name)).toEqual(['user']);
    await t.http().delete(`/v2/users/${user.id}/roles/moderator`).set(auth()).expect(404);
  });

  it('Idempotency-Key: a retry gets the first response again; another body with the key is 422', async () => {
    const body = newUser();
    const first = await create(body).set('Idempotency-Key', 'create-1').expect(201);
    const again = await create(body).set('Idempotency-Key', 'create-1').expect(201);
    expect(again.body).toEqual(first.body);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await t.sql('SELECT 1 FROM users WHERE email = $1', [body.email])).toHaveLength(1);
    const other = await create(newUser()).set('Idempotency-Key', 'create-1').expect(422);
    expect(other.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
  });

  it('Idempotency-Key: concurrent retries make one user; each gets that user or 409 while it is being made', async () => {
    const body = newUser();
    const results = await Promise.all(Array.from({ length: 6 }, () => create(body).set('Idempotency-Key', 'create-concurrent')));
    expect(results.every((r) => r.status === 201 || r.status === 409)).toBe(true);
    const created = results.filter((r) => r.status === 201);
    expect(created.length).toBeGreaterThanOrEqual(1);
    expect(new Set(created.map((r) => r.body.id)).size).toBe(1);
    for (const r of results.filter((x) => x.status === 409)) expect(r.body.error.code).toBe('CONCURRENT_UPDATE');
    expect(await t.sql('SELECT 1 FROM users WHERE email = $1', [body.email])).toHaveLength(1);
    // Once the first is done, a retry replays it.
    const later = await create(body).set('Idempotency-Key', 'create-concurrent').expect(201);
    expect([later.body.id, later.headers['idempotent-replayed']]).toEqual([created[0]!.body.id, 'true']);
    // A bulk with a key of its own is done once too.
    const bulkBody = { users: [newUser(), newUser()] };
    const bulk = await Promise.all([0, 1, 2].map(() => t.http().post('/v2/users/bulk').set(auth()).set('Idempotency-Key', 'bulk-concurrent').send(bulkBody)));
    expect(bulk.filter((r) => r.status === 200)).not.toHaveLength(0);
    expect(await t.sql('SELECT 1 FROM users WHERE email = ANY($1)', [bulkBody.users.map((u) => u.email)])).toHaveLength(2);
  });

  it('a cursor alone continues the walk it was made for (seed §8.2); contradicting it is 400 INVALID_CURSOR', async () => {
    const tag = `cur${Date.now()}`;
    await t.http().post('/v2/users/bulk').set(auth()).send({ users: [1, 2, 3, 4, 5].map((i) => newUser({ last_name: `${tag}${i}` })) }).expect(200);
    const first = await t.http().get(`/v2/users?limit=2&sort=last_name:asc&search=${tag}`).set(auth()).expect(200);
    expect(first.body.data.map((u: { last_name: string }) => u.last_name)).toEqual([`${tag}1`, `${tag}2`]);
    const second = await t.http().get(`/v2/users?limit=2&cursor=${encodeURIComponent(first.body.pagination.next_cursor)}`).set(auth()).expect(200);
    expect(second.body.data.map((u: { last_name: string }) => u.last_name)).toEqual([`${tag}3`, `${tag}4`]);
    expect(second.body.pagination).toMatchObject({ limit: 2, has_more: true, total_estimate: 5 });
    const same = await t.http().get(`/v2/users?limit=2&sort=last_name:asc&cursor=${encodeURIComponent(first.body.pagination.next_cursor)}`).set(auth()).expect(200);
    expect(same.body.data).toEqual(second.body.data);
    const search = await t.http().get('/v2/users/search').set(auth()).expect(200);
    expect(search.body.pagination.limit).toBe(25);
    await t.http().get('/v2/users/search?limit=101').set(auth()).expect(400);
    const other = await t.http().get(`/v2/users?sort=email:asc&cursor=${encodeURIComponent(first.body.pagination.next_cursor)}`).set(auth()).expect(400);
    expect(other.body.error.code).toBe('INVALID_CURSOR');
  });

  it('preferences: PUT replaces, PATCH merges (RFC 7396), __proto__ stays data', async () => {
    const user = (await create(newUser()).expect(201)).body;
    await t.http().put(`/v2/users/${user.id}/preferences`).set(auth()).send({ theme: 'dark', notifications: { email: true, sms: false } }).expect(200);
    const merged = await t.http().patch(`/v2/users/${user.id}/preferences`).set(auth()).send({ notifications: { sms: null, push: true }, language: 'fr' }).expect(200);
    expect(merged.body).toEqual({ theme: 'dark', notifications: { email: true, push: true }, language: 'fr' });
    const read = await t.http().get(`/v2/users/${user.id}/preferences`).set(auth()).expect(200);
    expect(read.body).toEqual(merged.body);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // RFC 7396's own media type is accepted, with the same JSON checks.
    const typed = await t.http()
      .patch(`/v2/users/${user.id}/preferences`)
      .set(auth())
      .set('Content-Type', 'application/merge-patch+json')
      .send(JSON.stringify({ language: null, theme: 'light' }))
      .expect(200);
    expect(typed.body).toEqual({ theme: 'light', notifications: { email: true, push: true } });
    const poisoned = await t.http()
      .patch(`/v2/users/${user.id}/preferences`)
      .set(auth())
      .set('Content-Type', 'application/merge-patch+json')
      .send('{"__proto__": {"polluted": true}}')
      .expect(400);
    expect(poisoned.body.error.code).toBe('MALFORMED_REQUEST');
    const broken = await t.http().patch(`/v2/users/${user.id}/preferences`).set(auth()).set('Content-Type', 'application/merge-patch+json').send('{nope').expect(400);
    expect(broken.body.error.code).toBe('MALFORMED_REQUEST');
  });

  describe('end users: password login, refresh rotation, lockout, /users/me', () => {
    let orgId: string;
    const password = 'correct horse battery';
    let email: string;

    beforeAll(async () => {
      const user = (await create({ ...newUser(), password }).expect(201)).body;
      email = user.email;
      const [row] = await t.sql<{ organization_id: string }>('SELECT organization_id FROM users WHERE id = $1', [user.id]);
      orgId = row!.organization_id;
    });

    const login = (pw: string, mail = email) =>
      t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: orgId, email: mail, password: pw });

    it('the password grant returns an end-user token whose scopes are the roles’ permissions, and a refresh token', async () => {
      const res = await login(password).expect(200);
      expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 86400, scope: 'read:own_profile update:own_profile' });
      expect(res.body.refresh_token).toMatch(/^rt_/);
      const me = await t.http().get('/v2/users/me').set('Authorization', `Bearer ${res.body.access_token}`).expect(200);
      expect(me.body.email).toBe(email);
      expect(me.body.login_count).toBeGreaterThanOrEqual(1);
      expect(me.body.last_login).toMatch(/Z$/);
      // An end user with only own-profile permissions cannot list users.
      const list = await t.http().get('/v2/users').set('Authorization', `Bearer ${res.body.access_token}`).expect(403);
      expect(list.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
      const updated = await t.http().put('/v2/users/me').set('Authorization', `Bearer ${res.body.access_token}`).send({ first_name: 'Me', preferences: { theme: 'light' } }).expect(200);
      expect(updated.body).toMatchObject({ first_name: 'Me', preferences: { theme: 'light' } });
      await t.http().put('/v2/users/me').set('Authorization', `Bearer ${res.body.access_token}`).send({ role: 'admin' }).expect(422);
      await t.http().put('/v2/users/me').set('Authorization', `Bearer ${res.body.access_token}`).send({ status: 'active' }).expect(422);
      // PATCH is the same as PUT: only what is sent changes.
      const patched = await t.http().patch('/v2/users/me').set('Authorization', `Bearer ${res.body.access_token}`).send({ last_name: 'Patched' }).expect(200);
      expect(patched.body).toMatchObject({ id: me.body.id, first_name: 'Me', last_name: 'Patched', preferences: { theme: 'light' } });
      await t.http().patch('/v2/users/me').set('Authorization', `Bearer ${res.body.access_token}`).send({ email_verified: true }).expect(422);
      await t.http().put('/v2/users/me').set('Authorization', `Bearer ${res.body.access_token}`).send({ last_name: me.body.last_name }).expect(200);
      await t.drainEvents();
      const logins = await t.sql<{ data: Record<string, unknown>; occurred_at: Date }>(
        `SELECT data, occurred_at FROM outbox_events WHERE type = 'user.login' AND data->'user'->>'email' = $1 ORDER BY seq`,
        [email],
      );
      expect(logins.length).toBeGreaterThanOrEqual(1);
      // The event names the user as they were when they signed in, how, and from where; it happened at last_login.
      expect(logins[0]!.data).toEqual({
        user: {
          id: me.body.id, email, first_name: me.body.first_name, last_name: me.body.last_name, role: 'user', status: 'active',
          email_verified: false, created_at: me.body.created_at, updated_at: me.body.updated_at,
        },
        method: 'password',
        ip_address: expect.stringMatching(/^[0-9a-f.:]+$/),
      });
      expect(logins[0]!.occurred_at.toISOString().replace(/\.\d{3}Z$/, 'Z')).toBe(me.body.last_login);
    });

    it('a hash made at other argon2id parameters still signs in, and is replaced at the configured ones', async () => {
      const other = (await create({ ...newUser(), password: 'older hash password' }).expect(201)).body;
      const older = await hash('older hash password', { algorithm: Algorithm.Argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 });
      await t.sql('UPDATE users SET password_hash = $2 WHERE id = $1', [other.id, older]);
      await login('older hash password', other.email).expect(200);
      const [after] = await t.sql<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [other.id]);
      expect(after!.password_hash).toMatch(/^\$argon2id\$v=19\$m=7168,t=5,p=1\$/);
      await login('older hash password', other.email).expect(200);
      await login('not the password', other.email).expect(401);
    });

    it('wrong password and unknown email give the same 401 AUTH_INVALID_CREDENTIALS', async () => {
      const wrong = await login('wrong password!').expect(401);
      const unknown = await login(password, 'nobody@example.com').expect(401);
      expect(wrong.body.error.code).toBe('AUTH_INVALID_CREDENTIALS');
      expect(unknown.body.error.code).toBe('AUTH_INVALID_CREDENTIALS');
      expect(wrong.body.error.message).toBe(unknown.body.error.message);
    });

    it('refresh tokens rotate; presenting a used one revokes the whole session', async () => {
      const first = (await login(password).expect(200)).body;
      const second = (await t.http().post('/v2/auth/token').send({ grant_type: 'refresh_token', refresh_token: first.refresh_token }).expect(200)).body;
      expect(second.refresh_token).not.toBe(first.refresh_token);
      await t.http().get('/v2/users/me').set('Authorization', `Bearer ${second.access_token}`).expect(200);
      const reuse = await t.http().post('/v2/auth/token').send({ grant_type: 'refresh_token', refresh_token: first.refresh_token }).expect(401);
      expect(reuse.body.error.code).toBe('AUTH_TOKEN_INVALID');
      await t.http().post('/v2/auth/token').send({ grant_type: 'refresh_token', refresh_token: second.refresh_token }).expect(401);
      await t.http().get('/v2/users/me').set('Authorization', `Bearer ${second.access_token}`).expect(401);
      await t.http().get('/v2/users/me').set('Authorization', `Bearer ${first.access_token}`).expect(401);
    });

    it('POST /auth/revoke with a refresh token ends its session (logout): refresh and access tokens of that session stop, others live on', async () => {
      const session = (await login(password).expect(200)).body;
      const other = (await login(password).expect(200)).body;
      const me = (bearer: string) => t.http().get('/v2/users/me').set('Authorization', `Bearer ${bearer}`);
      const res = await t.http().post('/v2/auth/revoke').set('Authorization', `Bearer ${session.access_token}`).send({ token: session.refresh_token }).expect(200);
      expect(res.body).toEqual({ revoked: true });
      const refreshed = await t.http().post('/v2/auth/token').send({ grant_type: 'refresh_token', refresh_token: session.refresh_token }).expect(401);
      expect(refreshed.body.error.code).toBe('AUTH_TOKEN_INVALID');
      await me(session.access_token).expect(401);
      await me(other.access_token).expect(200);
      await t.http().post('/v2/auth/token').send({ grant_type: 'refresh_token', refresh_token: other.refresh_token }).expect(200);
      // Another organization's caller cannot end this organization's sessions; unknown tokens are a quiet no-op.
      const third = (await login(password).expect(200)).body;
      const foreignOrg = await t.http().post('/v2/admin/organizations').set(auth()).send({ name: 'Elsewhere', plan: 'basic' }).expect(201);
      const foreign = (await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: foreignOrg.body.api_key.key }).expect(200)).body.access_token;
      await t.http().post('/v2/auth/revoke').set('Authorization', `Bearer ${foreign}`).send({ token: third.refresh_token }).expect(200);
      await t.http().post('/v2/auth/revoke').set('Authorization', `Bearer ${foreign}`).send({ token: 'rt_unknown' }).expect(200);
      await me(third.access_token).expect(200);
    });

    it('suspended users cannot log in and their tokens stop working', async () => {
      const user = (await create({ ...newUser(), password }).expect(201)).body;
      const session = (await login(password, user.email).expect(200)).body;
      await t.http().put(`/v2/users/${user.id}`).set(auth()).send({ status: 'suspended' }).expect(200);
      await t.http().get('/v2/users/me').set('Authorization', `Bearer ${session.access_token}`).expect(401);
      await login(password, user.email).expect(401);
    });

    it('suspending or soft-deleting a user ends their sessions: after reactivation or restore the old refresh token stays dead', async () => {
      const refresh = (token: string) => t.http().post('/v2/auth/token').send({ grant_type: 'refresh_token', refresh_token: token });
      for (const [end, back] of [
        [(id: string) => t.http().put(`/v2/users/${id}`).set(auth()).send({ status: 'suspended' }).expect(200), (id: string) => t.http().put(`/v2/users/${id}`).set(auth()).send({ status: 'active' }).expect(200)],
        [(id: string) => t.http().delete(`/v2/users/${id}?soft_delete=true`).set(auth()).expect(200), (id: string) => t.http().post(`/v2/users/${id}/restore`).set(auth()).expect(200)],
      ] as const) {
        const user = (await create({ ...newUser(), password }).expect(201)).body;
        const session = (await login(password, user.email).expect(200)).body;
        await end(user.id);
        await back(user.id);
        const old = await refresh(session.refresh_token).expect(401);
        expect(old.body.error.code).toBe('AUTH_TOKEN_INVALID');
        await t.http().get('/v2/users/me').set('Authorization', `Bearer ${session.access_token}`).expect(401);
        const [row] = await t.sql<{ live: number }>('SELECT count(*)::int AS live FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL AND used_at IS NULL', [user.id]);
        expect(row!.live).toBe(0);
        // Signing in again works.
        await login(password, user.email).expect(200);
      }
    });

    it('POST /auth/refresh: of concurrent refreshes with one token, exactly one gets a new token', async () => {
      const user = (await create({ ...newUser(), password }).expect(201)).body;
      const session = (await login(password, user.email).expect(200)).body;
      const answers = await Promise.all(Array.from({ length: 10 }, () => t.http().post('/v2/auth/refresh').set('Authorization', `Bearer ${session.access_token}`)));
      expect(answers.map((a) => a.status).sort()).toEqual([200, ...Array(9).fill(401)]);
      const fresh = answers.find((a) => a.status === 200)!.body.access_token as string;
      await t.http().get('/v2/users/me').set('Authorization', `Bearer ${fresh}`).expect(200);
      await t.http().get('/v2/users/me').set('Authorization', `Bearer ${session.access_token}`).expect(401);
    });

    it("POST /auth/revoke: an end user cannot revoke another user's tokens; the organization's key can", async () => {
      const bob = (await create({ ...newUser(), password }).expect(201)).body;
      const carol = (await create({ ...newUser(), password }).expect(201)).body;
      const bobSession = (await login(password, bob.email).expect(200)).body;
      const carolSession = (await login(password, carol.email).expect(200)).body;
      for (const token of [carolSession.refresh_token, carolSession.access_token]) {
        await t.http().post('/v2/auth/revoke').set('Authorization', `Bearer ${bobSession.access_token}`).send({ token }).expect(200);
      }
      await t.http().get('/v2/users/me').set('Authorization', `Bearer ${carolSession.access_token}`).expect(200);
      const rotated = (await t.http().post('/v2/auth/token').send({ grant_type: 'refresh_token', refresh_token: carolSession.refresh_token }).expect(200)).body;
      // The organization's API-key token may.
      await t.http().post('/v2/auth/revoke').set(auth()).send({ token: rotated.refresh_token }).expect(200);
      await t.http().post('/v2/auth/token').send({ grant_type: 'refresh_token', refresh_token: rotated.refresh_token }).expect(401);
      await t.http().get('/v2/users/me').set('Authorization', `Bearer ${bobSession.access_token}`).expect(200);
    });

    it('repeated failures lock the account with 429 ACCOUNT_LOCKED and retry_after', async () => {
      const user = (await create({ ...newUser(), password }).expect(201)).body;
      for (let i = 0; i < 5; i++) await login('nope nope nope', user.email).expect(401);
      const locked = await login(password, user.email).expect(429);
      expect(locked.body.error.code).toBe('ACCOUNT_LOCKED');
      expect(locked.body.error.retry_after).toBeGreaterThan(0);
      expect(locked.headers['retry-after']).toBeDefined();
    });

    it('the lock holds for every spelling of the email that finds the account (case, spaces, a dotted capital İ)', async () => {
      const address = `iris.${Math.random().toString(36).slice(2)}@example.com`;
      const user = (await create({ ...newUser(), email: address, password }).expect(201)).body;
      const spellings = [address.toUpperCase(), ` ${address} `, address.replace(/i/g, 'İ'), address.replace('i', 'İ'), address];
      // The spellings PostgreSQL lower-cases to the account's email sign in to it (İ is i under most
      // collations); each of them must then share its failures and its lock.
      const same: string[] = [];
      for (const spelling of spellings) {
        const [row] = await t.sql<{ same: boolean }>('SELECT lower(btrim($1)) = lower($2) AS same', [spelling, address]);
        if (row!.same) same.push(spelling);
      }
      expect(same).toEqual(expect.arrayContaining([address.toUpperCase(), ` ${address} `, address]));
      for (const spelling of same) await login(password, spelling).expect(200);
      for (let i = 0; i < 5; i++) await login('nope nope nope', same[i % same.length]).expect(401);
      for (const spelling of same) {
        const res = await login(password, spelling);
        expect({ spelling, status: res.status, code: res.body.error?.code }).toEqual({ spelling, status: 429, code: 'ACCOUNT_LOCKED' });
      }
      const [row] = await t.sql<{ login_count: number }>('SELECT login_count FROM users WHERE id = $1', [user.id]);
      expect(row!.login_count).toBe(same.length);
    });

    it('30 wrong passwords for one account at once: at most 5 are checked, the rest are refused unchecked, and the lock follows', async () => {
      const user = (await create({ ...newUser(), password }).expect(201)).body;
      const attempts = await Promise.all(Array.from({ length: 30 }, (_, i) => login(`wrong password ${i}`, user.email)));
      const statuses = attempts.map((r) => r.status);
      expect(statuses.filter((s) => s === 401).length).toBeGreaterThanOrEqual(1);
      expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(5);
      expect(statuses.filter((s) => s === 429).length).toBe(30 - statuses.filter((s) => s === 401).length);
      for (const r of attempts.filter((x) => x.status === 429)) expect(r.body.error.code).toBe('ACCOUNT_LOCKED');
    });

    it('after a lock runs out, one attempt is checked again (a right password signs in)', async () => {
      const user = (await create({ ...newUser(), password }).expect(201)).body;
      for (let i = 0; i < 5; i++) await login('nope nope nope', user.email).expect(401);
      await login(password, user.email).expect(429);
      await new Promise((r) => setTimeout(r, 1100)); // the first lock is 1 s
      await login(password, user.email).expect(200);
    });
  });
});
