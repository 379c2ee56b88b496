import { bootstrapToken, createTestApp, TestApp } from '@app/testing';

/**
 * CONTRACT §2: single-resource responses carry an ETag, and a PUT/PATCH/DELETE with a stale
 * If-Match is 409 CONCURRENT_UPDATE and changes nothing. Users have their own suite; this one
 * covers roles, webhooks, organizations, preferences and /users/me.
 */
describe('ETags and If-Match on every single resource (CONTRACT §2)', () => {
  let t: TestApp;
  let token: string;
  const auth = (bearer = token) => ({ Authorization: `Bearer ${bearer}` });
  const stale = (res: { status: number; body: { error?: { code?: string } } }) => {
    expect(res.status).toBe(409);
    expect(res.body.error?.code).toBe('CONCURRENT_UPDATE');
  };

  beforeAll(async () => {
    t = await createTestApp();
    token = await bootstrapToken(t);
  });
  afterAll(async () => {
    await t.close();
  });

  it('roles: POST, GET and PUT answer an ETag; a stale or foreign If-Match on PUT and DELETE is 409 and changes nothing', async () => {
    const created = await t.http().post('/v2/roles').set(auth()).send({ name: 'etag-role', permissions: ['user:read'] }).expect(201);
    const id = created.body.id as string;
    const v1 = created.headers.etag as string;
    expect(v1).toBe(`"${id}.v1"`);
    expect((await t.http().get(`/v2/roles/${id}`).set(auth()).expect(200)).headers.etag).toBe(v1);

    const changed = await t.http().put(`/v2/roles/${id}`).set(auth()).set('If-Match', v1).send({ description: 'first' }).expect(200);
    const v2 = changed.headers.etag as string;
    expect(v2).toBe(`"${id}.v2"`);
    stale(await t.http().put(`/v2/roles/${id}`).set(auth()).set('If-Match', v1).send({ description: 'lost' }));
    const other = (await t.http().get('/v2/roles').set(auth()).expect(200)).body.data.find((r: { name: string }) => r.name === 'user');
    stale(await t.http().put(`/v2/roles/${id}`).set(auth()).set('If-Match', `"${other.id}.v2"`).send({ description: 'foreign' }));
    stale(await t.http().put(`/v2/roles/${id}`).set(auth()).set('If-Match', 'not-an-etag').send({ description: 'garbage' }));
    expect((await t.sql<{ description: string; version: number }>('SELECT description, version FROM roles WHERE id = $1', [id]))[0]).toEqual({ description: 'first', version: 2 });

    stale(await t.http().delete(`/v2/roles/${id}`).set(auth()).set('If-Match', v1));
    expect(await t.sql('SELECT id FROM roles WHERE id = $1', [id])).toHaveLength(1);
    await t.http().delete(`/v2/roles/${id}`).set(auth()).set('If-Match', v2).expect(204);
    expect(await t.sql('SELECT id FROM roles WHERE id = $1', [id])).toHaveLength(0);
  });

  it('roles: If-Match "*" and no If-Match write unconditionally; an unknown role is still 404', async () => {
    const id = (await t.http().post('/v2/roles').set(auth()).send({ name: 'etag-star', permissions: [] }).expect(201)).body.id as string;
    expect((await t.http().put(`/v2/roles/${id}`).set(auth()).set('If-Match', '*').send({ description: 'a' }).expect(200)).headers.etag).toBe(`"${id}.v2"`);
    expect((await t.http().put(`/v2/roles/${id}`).set(auth()).send({ description: 'b' }).expect(200)).headers.etag).toBe(`"${id}.v3"`);
    const missing = await t.http().put('/v2/roles/role_doesnotexist').set(auth()).set('If-Match', `"role_doesnotexist.v1"`).send({ description: 'x' }).expect(404);
    expect(missing.body.error.code).toBe('ROLE_NOT_FOUND');
  });

  it('webhooks: ETag on create, get and update; stale If-Match on PUT and DELETE is 409; disabling by the worker is a new version', async () => {
    const created = await t.http().post('/v2/webhooks').set(auth()).send({ url: 'https://hooks.example.com/etag', events: ['*'] }).expect(201);
    const id = created.body.id as string;
    const v1 = created.headers.etag as string;
    expect(v1).toBe(`"${id}.v1"`);
    expect((await t.http().get(`/v2/webhooks/${id}`).set(auth()).expect(200)).headers.etag).toBe(v1);
    const v2 = (await t.http().put(`/v2/webhooks/${id}`).set(auth()).set('If-Match', v1).send({ events: ['user.created'] }).expect(200)).headers.etag;
    expect(v2).toBe(`"${id}.v2"`);
    stale(await t.http().put(`/v2/webhooks/${id}`).set(auth()).set('If-Match', v1).send({ active: false }));
    stale(await t.http().delete(`/v2/webhooks/${id}`).set(auth()).set('If-Match', v1));
    const [row] = await t.sql<{ active: boolean; events: string[] }>('SELECT active, events FROM webhooks WHERE id = $1', [id]);
    expect(row).toEqual({ active: true, events: ['user.created'] });
    await t.http().delete(`/v2/webhooks/${id}`).set(auth()).set('If-Match', v2).expect(204);
    await t.http().get(`/v2/webhooks/${id}`).set(auth()).expect(404);
  });

  it('organizations: ETag on create, get and PATCH; a stale If-Match on PATCH is 409 and changes nothing', async () => {
    const created = await t.http().post('/v2/admin/organizations').set(auth()).send({ name: 'ETag Org', plan: 'basic' }).expect(201);
    const id = created.body.organization.id as string;
    const v1 = created.headers.etag as string;
    expect(v1).toBe(`"${id}.v1"`);
    expect((await t.http().get(`/v2/admin/organizations/${id}`).set(auth()).expect(200)).headers.etag).toBe(v1);
    const v2 = (await t.http().patch(`/v2/admin/organizations/${id}`).set(auth()).set('If-Match', v1).send({ plan: 'professional' }).expect(200)).headers.etag;
    expect(v2).toBe(`"${id}.v2"`);
    stale(await t.http().patch(`/v2/admin/organizations/${id}`).set(auth()).set('If-Match', v1).send({ plan: 'basic' }));
    expect((await t.sql<{ plan: string }>('SELECT plan FROM organizations WHERE id = $1', [id]))[0]!.plan).toBe('professional');
  });

  it("preferences: the user's ETag on GET, PUT and PATCH; a stale If-Match is 409; concurrent merges never lose one another", async () => {
    const user = await t.http().post('/v2/users').set(auth()).send({ email: 'etag-prefs@example.com', first_name: 'E', last_name: 'P' }).expect(201);
    const id = user.body.id as string;
    const read = await t.http().get(`/v2/users/${id}/preferences`).set(auth()).expect(200);
    expect(read.headers.etag).toBe(user.headers.etag);
    const merged = await t.http().patch(`/v2/users/${id}/preferences`).set(auth()).set('If-Match', read.headers.etag).send({ theme: 'dark' }).expect(200);
    expect(merged.body).toEqual({ theme: 'dark' });
    expect(merged.headers.etag).toBe(`"${id}.v2"`);
    stale(await t.http().patch(`/v2/users/${id}/preferences`).set(auth()).set('If-Match', read.headers.etag).send({ theme: 'light' }));
    stale(await t.http().put(`/v2/users/${id}/preferences`).set(auth()).set('If-Match', read.headers.etag).send({}));
    expect((await t.http().get(`/v2/users/${id}/preferences`).set(auth()).expect(200)).body).toEqual({ theme: 'dark' });

    const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
    const results = await Promise.all(keys.map((k) => t.http().patch(`/v2/users/${id}/preferences`).set(auth()).send({ [k]: true })));
    expect(results.map((r) => r.status)).toEqual(keys.map(() => 200));
    const after = (await t.http().get(`/v2/users/${id}/preferences`).set(auth()).expect(200)).body;
    expect(after).toEqual({ theme: 'dark', ...Object.fromEntries(keys.map((k) => [k, true])) });
  });

  it('role assignment and restore answer the user\'s ETag; adding or removing a role is a new version; DELETE of a role honours If-Match', async () => {
    const user = await t.http().post('/v2/users').set(auth()).send({ email: 'etag-roles@example.com', first_name: 'R', last_name: 'A' }).expect(201);
    const id = user.body.id as string;
    const v1 = user.headers.etag as string;
    const added = await t.http().post(`/v2/users/${id}/roles`).set(auth()).send({ roles: ['moderator'] }).expect(200);
    expect(added.headers.etag).toBe(`"${id}.v2"`);
    // Assigning a role the user already has changes nothing, so no new version.
    expect((await t.http().post(`/v2/users/${id}/roles`).set(auth()).send({ roles: ['moderator'] }).expect(200)).headers.etag).toBe(`"${id}.v2"`);
    stale(await t.http().delete(`/v2/users/${id}/roles/moderator`).set(auth()).set('If-Match', v1));
    expect((await t.http().get(`/v2/users/${id}`).set(auth()).expect(200)).body.roles.map((r: { name: string }) => r.name)).toContain('moderator');
    const removed = await t.http().delete(`/v2/users/${id}/roles/moderator`).set(auth()).set('If-Match', added.headers.etag).expect(200);
    expect(removed.headers.etag).toBe(`"${id}.v3"`);
    expect((await t.http().get(`/v2/users/${id}`).set(auth()).expect(200)).headers.etag).toBe(removed.headers.etag);

    await t.http().delete(`/v2/users/${id}?soft_delete=true`).set(auth()).expect(200);
    const restored = await t.http().post(`/v2/users/${id}/restore`).set(auth()).expect(200);
    expect(restored.headers.etag).toBe(`"${id}.v5"`);

    // Deleting a role the user holds as an extra role is a change of the user too: a new version.
    const role = (await t.http().post('/v2/roles').set(auth()).send({ name: 'etag-extra', permissions: [] }).expect(201)).body;
    const held = await t.http().post(`/v2/users/${id}/roles`).set(auth()).send({ roles: ['etag-extra'] }).expect(200);
    await t.http().delete(`/v2/roles/${role.id}`).set(auth()).expect(204);
    const after = await t.http().get(`/v2/users/${id}`).set(auth()).expect(200);
    expect(after.headers.etag).not.toBe(held.headers.etag);
    stale(await t.http().put(`/v2/users/${id}`).set(auth()).set('If-Match', held.headers.etag).send({ first_name: 'Stale' }));
  });

  it('role changes of many users at once (more than the connection pool) all complete', async () => {
    const ids = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => (await t.http().post('/v2/users').set(auth()).send({ email: `etag-pool${i}@example.com`, first_name: 'P', last_name: String(i) }).expect(201)).body.id as string),
    );
    const results = await Promise.all(ids.map((id, i) => t.http().put(`/v2/users/${id}`).set(auth()).send({ role: i % 2 ? 'moderator' : 'admin' })));
    expect(results.map((r) => r.status)).toEqual(ids.map(() => 200));
  });

  it('concurrent role changes of one user queue: each answer and each user.role_changed shows the roles the previous change left', async () => {
    const id = (await t.http().post('/v2/users').set(auth()).send({ email: 'etag-race@example.com', first_name: 'R', last_name: 'Ace', role: 'user' }).expect(201)).body.id as string;
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => t.http().put(`/v2/users/${id}`).set(auth()).send({ role: i % 2 ? 'moderator' : 'admin' })),
    );
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    for (const r of results) expect(r.body.roles.map((role: { name: string }) => role.name)).toEqual([r.body.role]);
    await t.drainEvents();
    const changes = await t.sql<{ data: { previous_roles: string[]; roles: string[] } }>(
      `SELECT data FROM outbox_events WHERE type = 'user.role_changed' AND data->'user'->>'id' = $1 ORDER BY seq`,
      [id],
    );
    expect(changes.length).toBeGreaterThan(0);
    let before = ['user'];
    for (const { data } of changes) {
      expect(data.previous_roles).toEqual(before);
      before = data.roles;
    }
    expect(before).toEqual([(await t.http().get(`/v2/users/${id}`).set(auth()).expect(200)).body.role]);
  });

  it('PUT /users/me honours If-Match', async () => {
    const email = 'etag-me@example.com';
    const password = 'Correct-Horse-9';
    const created = await t.http().post('/v2/users').set(auth()).send({ email, first_name: 'Me', last_name: 'Self', password }).expect(201);
    const [row] = await t.sql<{ organization_id: string }>('SELECT organization_id FROM users WHERE id = $1', [created.body.id]);
    const login = await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: row!.organization_id, email, password }).expect(200);
    const me = auth(login.body.access_token);
    const v = (await t.http().get('/v2/users/me').set(me).expect(200)).headers.etag as string;
    const updated = await t.http().put('/v2/users/me').set(me).set('If-Match', v).send({ first_name: 'Myself' }).expect(200);
    stale(await t.http().put('/v2/users/me').set(me).set('If-Match', v).send({ first_name: 'Lost' }));
    expect(updated.body.first_name).toBe('Myself');
    expect((await t.http().get('/v2/users/me').set(me).expect(200)).body.first_name).toBe('Myself');
  });

  it('If-Match compares strongly and takes a list: any current ETag in it matches; W/ tags, other resources and padded versions do not', async () => {
    const created = await t.http().post('/v2/users').set(auth()).send({ email: 'etag-list@example.com', first_name: 'L', last_name: 'Ist' }).expect(201);
    const id = created.body.id as string;
    const other = (await t.http().post('/v2/users').set(auth()).send({ email: 'etag-other@example.com', first_name: 'O', last_name: 'Ther' }).expect(201)).headers.etag as string;
    const v1 = created.headers.etag as string;
    const v2 = (await t.http().patch(`/v2/users/${id}`).set(auth()).set('If-Match', v1).send({ first_name: 'L2' }).expect(200)).headers.etag as string;
    expect(v2).toBe(`"${id}.v2"`);
    // A list holding the current ETag (in any place, beside stale ones or another resource's) matches.
    const v3 = (await t.http().patch(`/v2/users/${id}`).set(auth()).set('If-Match', `${v1}, ${v2}`).send({ first_name: 'L3' }).expect(200)).headers.etag as string;
    const v4 = (await t.http().put(`/v2/users/${id}`).set(auth()).set('If-Match', `${other}, ${v3}`).send({ first_name: 'L4' }).expect(200)).headers.etag as string;
    // Any listed ETag that is current matches, even beside a higher version never issued.
    const v5 = (await t.http().patch(`/v2/users/${id}`).set(auth()).set('If-Match', `${v4}, "${id}.v9"`).send({ first_name: 'L5' }).expect(200)).headers.etag as string;
    expect(v5).toBe(`"${id}.v5"`);
    const v6 = (await t.http().delete(`/v2/users/${id}/roles/user`).set(auth()).set('If-Match', `"${id}.v9", ${v5}`).expect(200)).headers.etag as string;
    // None current: 409 and nothing written.
    stale(await t.http().patch(`/v2/users/${id}`).set(auth()).set('If-Match', `${v1}, ${v2}, ${other}`).send({ first_name: 'Lost' }));
    // Weak ETags never match (RFC 9110 §13.1.1), nor does a version written with a leading zero.
    stale(await t.http().patch(`/v2/users/${id}`).set(auth()).set('If-Match', `W/${v6}`).send({ first_name: 'Lost' }));
    stale(await t.http().patch(`/v2/users/${id}`).set(auth()).set('If-Match', `"${id}.v06"`).send({ first_name: 'Lost' }));
    stale(await t.http().delete(`/v2/users/${id}`).set(auth()).set('If-Match', `W/${v6}`));
    const now = await t.http().get(`/v2/users/${id}`).set(auth()).expect(200);
    expect({ etag: now.headers.etag, first_name: now.body.first_name }).toEqual({ etag: v6, first_name: 'L5' });
  });

  it('POST /users/{id}/restore honours If-Match: a stale one is 409 and the user stays deleted', async () => {
    const created = await t.http().post('/v2/users').set(auth()).send({ email: 'etag-restore@example.com', first_name: 'Re', last_name: 'Store' }).expect(201);
    const id = created.body.id as string;
    await t.http().delete(`/v2/users/${id}?soft_delete=true`).set(auth()).expect(200);
    const deleted = await t.http().get(`/v2/users/${id}?include_deleted=true`).set(auth()).expect(200);
    expect(deleted.body.status).toBe('deleted');
    stale(await t.http().post(`/v2/users/${id}/restore`).set(auth()).set('If-Match', created.headers.etag as string));
    expect((await t.http().get(`/v2/users/${id}?include_deleted=true`).set(auth()).expect(200)).body.status).toBe('deleted');
    const restored = await t.http().post(`/v2/users/${id}/restore`).set(auth()).set('If-Match', deleted.headers.etag as string).expect(200);
    expect(restored.body.status).toBe('active');
    expect(restored.headers.etag).toBe(`"${id}.v${Number(/\.v(\d+)"$/.exec(deleted.headers.etag as string)![1]) + 1}"`);
  });

  it('a restore that meets a change of the user made meanwhile (a role deleted) still restores, on the version it then finds', async () => {
    const created = await t.http().post('/v2/users').set(auth()).send({ email: 'etag-restore-race@example.com', first_name: 'Ra', last_name: 'Ce' }).expect(201);
    const id = created.body.id as string;
    await t.http().delete(`/v2/users/${id}?soft_delete=true`).set(auth()).expect(200);
    // Another transaction holds the user's row and bumps its version (as deleting a role the user holds does).
    const other = t.dataSource.createQueryRunner();
    await other.connect();
    try {
      await other.startTransaction();
      await other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [id]);
      const restoring = t.http().post(`/v2/users/${id}/restore`).set(auth()).then((r) => r);
      await new Promise((r) => setTimeout(r, 300));
      await other.query('UPDATE users SET version = version + 1 WHERE id = $1', [id]);
      await other.commitTransaction();
      const res = await restoring;
      expect({ status: res.status, state: res.body.status }).toEqual({ status: 200, state: 'active' });
    } finally {
      await other.release();
    }
    const [row] = await t.sql<{ status: string; deleted_at: Date | null }>('SELECT status, deleted_at FROM users WHERE id = $1', [id]);
    expect(row).toEqual({ status: 'active', deleted_at: null });
  });
});
