import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ApiProcess, createTestApp, createTestDatabase, startApiProcess, TEST_BOOTSTRAP_KEY, TestApp, untilWaitingForLock, whileHeld } from '@app/testing';

describe('Access control: roles, plans, rate limits (CONTRACT §4, §5)', () => {
  let t: TestApp;
  let admin: string;

  const token = async (apiKey: string) =>
    (await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: apiKey }).expect(200)).body.access_token as string;
  const org = async (plan: string, limits?: Record<string, number>) => {
    const res = await t.http().post('/v2/admin/organizations').set('Authorization', `Bearer ${admin}`).send({ name: `org-${plan}`, plan, ...(limits ? { limits } : {}) }).expect(201);
    return { id: res.body.organization.id as string, token: await token(res.body.api_key.key) };
  };
  const as = (tok: string) => ({ Authorization: `Bearer ${tok}` });
  const email = () => `u${randomBytes(6).toString('hex')}@example.com`;

  beforeAll(async () => {
    t = await createTestApp();
    admin = await token(TEST_BOOTSTRAP_KEY);
  });
  afterAll(async () => {
    await t.close();
  });

  it('every organization has the protected built-in roles admin, moderator and user', async () => {
    const basic = await org('basic');
    const roles = (await t.http().get('/v2/roles').set(as(basic.token)).expect(200)).body.data;
    expect(roles.map((r: { name: string }) => r.name).sort()).toEqual(['admin', 'moderator', 'user']);
    expect(roles.every((r: { system: boolean }) => r.system)).toBe(true);
    expect(roles.find((r: { name: string }) => r.name === 'user').permissions).toEqual(['read:own_profile', 'update:own_profile']);
    const pro = await org('professional');
    const proRoles = (await t.http().get('/v2/roles').set(as(pro.token)).expect(200)).body.data;
    const userRole = proRoles.find((r: { name: string }) => r.name === 'user');
    const rename = await t.http().put(`/v2/roles/${userRole.id}`).set(as(pro.token)).send({ name: 'member' }).expect(422);
    expect(rename.body.error.details[0].code).toBe('SYSTEM_ROLE');
    await t.http().delete(`/v2/roles/${userRole.id}`).set(as(pro.token)).expect(422);
    // Another organization's role is a 404.
    await t.http().get(`/v2/roles/${userRole.id}`).set(as(basic.token)).expect(404);
  });

  it('null for a role field is 422 VALIDATION_ERROR, never a 500, and changes nothing', async () => {
    const pro = await org('professional');
    const role = (await t.http().post('/v2/roles').set(as(pro.token)).send({ name: 'nullable', permissions: ['user:read'] }).expect(201)).body;
    for (const body of [{ name: null }, { display_name: null }, { description: null }, { permissions: null }]) {
      const res = await t.http().put(`/v2/roles/${role.id}`).set(as(pro.token)).send(body);
      expect([body, res.status, res.body.error?.code]).toEqual([body, 422, 'VALIDATION_ERROR']);
    }
    const created = await t.http().post('/v2/roles').set(as(pro.token)).send({ name: 'nullable2', permissions: [], description: null });
    expect(created.status).toBe(422);
    const [row] = await t.sql<{ name: string; description: string; version: number }>('SELECT name, description, version FROM roles WHERE id = $1', [role.id]);
    expect(row).toEqual({ name: 'nullable', description: '', version: 1 });
  });

  it('custom roles: CRUD on professional, 403 PLAN_FEATURE_UNAVAILABLE on basic, 409 on a taken name', async () => {
    const basic = await org('basic');
    const refused = await t.http().post('/v2/roles').set(as(basic.token)).send({ name: 'auditor', permissions: ['user:read'] }).expect(403);
    expect(refused.body.error.code).toBe('PLAN_FEATURE_UNAVAILABLE');
    expect(refused.body.error.details).toEqual({ feature: 'advanced_rbac', current_plan: 'basic', available_on: ['professional', 'enterprise'] });

    const pro = await org('professional');
    const created = await t.http().post('/v2/roles').set(as(pro.token)).send({ name: 'reporter', display_name: 'Reporter', permissions: ['reports:view', 'user:read'] }).expect(201);
    expect(created.body).toMatchObject({ id: expect.stringMatching(/^role_/), name: 'reporter', display_name: 'Reporter', permissions: ['reports:view', 'user:read'], system: false });
    const dup = await t.http().post('/v2/roles').set(as(pro.token)).send({ name: 'reporter', permissions: [] }).expect(409);
    expect(dup.body.error.code).toBe('ROLE_ALREADY_EXISTS');
    const changed = await t.http().put(`/v2/roles/${created.body.id}`).set(as(pro.token)).send({ description: 'Reads reports' }).expect(200);
    expect(changed.body.description).toBe('Reads reports');
    const catalog = await t.http().get('/v2/permissions').set(as(pro.token)).expect(200);
    expect(catalog.body.custom).toEqual(['reports:view']);
    expect(catalog.body.all).toEqual(expect.arrayContaining(['user:read', 'read:own_profile', 'reports:view']));
    expect(catalog.body.all).not.toContain('platform:admin');
    await t.http().delete(`/v2/roles/${created.body.id}`).set(as(pro.token)).expect(204);
    const missing = await t.http().get(`/v2/roles/${created.body.id}`).set(as(pro.token)).expect(404);
    expect(missing.body.error.code).toBe('ROLE_NOT_FOUND');
    // Basic organizations may still assign built-in roles.
    const user = (await t.http().post('/v2/users').set(as(basic.token)).send({ email: email(), first_name: 'B', last_name: 'C' }).expect(201)).body;
    await t.http().post(`/v2/users/${user.id}/roles`).set(as(basic.token)).send({ roles: ['moderator'] }).expect(200);
  });

  it('a plan change takes effect on the next request', async () => {
    const basic = await org('basic');
    await t.http().post('/v2/roles').set(as(basic.token)).send({ name: 'x', permissions: [] }).expect(403);
    await t.http().patch(`/v2/admin/organizations/${basic.id}`).set(as(admin)).send({ plan: 'professional' }).expect(200);
    await t.http().post('/v2/roles').set(as(basic.token)).send({ name: 'x', permissions: [] }).expect(201);
  });

  it("role assignment shows in the user's roles and permissions; a permission change reaches the next token; end-user scopes gate the API", async () => {
    const pro = await org('professional');
    const role = (await t.http().post('/v2/roles').set(as(pro.token)).send({ name: 'viewer', permissions: ['reports:view'] }).expect(201)).body;
    const password = 'a long enough password';
    const user = (await t.http().post('/v2/users').set(as(pro.token)).send({ email: email(), first_name: 'V', last_name: 'W', password }).expect(201)).body;
    const assigned = await t.http().post(`/v2/users/${user.id}/roles`).set(as(pro.token)).send({ roles: ['viewer'] }).expect(200);
    expect(assigned.body.roles.map((r: { name: string }) => r.name)).toEqual(['user', 'viewer']);
    expect(assigned.body.permissions).toEqual(['read:own_profile', 'reports:view', 'update:own_profile']);
    const read = await t.http().get(`/v2/users/${user.id}`).set(as(pro.token)).expect(200);
    expect(read.body.permissions).toContain('reports:view');

    const login = async () =>
      (await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: pro.id, email: user.email, password }).expect(200)).body;
    const before = await login();
    expect(before.scope.split(' ')).toEqual(['read:own_profile', 'reports:view', 'update:own_profile']);
    await t.http().get('/v2/users').set(as(before.access_token)).expect(403);

    await t.http().put(`/v2/roles/${role.id}`).set(as(pro.token)).send({ permissions: ['reports:view', 'user:read'] }).expect(200);
    const after = await login();
    expect(after.scope.split(' ')).toContain('user:read');
    const list = await t.http().get('/v2/users').set(as(after.access_token)).expect(200);
    expect(list.body.data.length).toBeGreaterThan(0);
    await t.http().post('/v2/users').set(as(after.access_token)).send({ email: email(), first_name: 'x', last_name: 'y' }).expect(403);

    await t.drainEvents();
    const changes = await t.sql(`SELECT 1 FROM outbox_events WHERE type = 'user.role_changed' AND data->'user'->>'id' = $1`, [user.id]);
    expect(changes).toHaveLength(1);
  });

  it('deleting a role while one of its holders is deleted for good: 204, and the other holders get user.role_changed', async () => {
    const pro = await org('professional');
    const role = (await t.http().post('/v2/roles').set(as(pro.token)).send({ name: 'doomed', permissions: ['user:read'] }).expect(201)).body;
    const [gone, kept] = [
      (await t.http().post('/v2/users').set(as(pro.token)).send({ email: email(), first_name: 'Gone', last_name: 'Holder', role: 'doomed' }).expect(201)).body,
      (await t.http().post('/v2/users').set(as(pro.token)).send({ email: email(), first_name: 'Kept', last_name: 'Holder', role: 'doomed' }).expect(201)).body,
    ];
    // Another transaction holds one holder's row, so the deletion waits for it while locking the
    // holders; meanwhile that user is deleted for good.
    await whileHeld(t, 'SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [gone.id], async (blocker) => {
      const deletion = t.http().delete(`/v2/roles/${role.id}`).set(as(pro.token)).then((r) => r);
      await untilWaitingForLock(t, 'SELECT id FROM users%', 'the role deletion');
      await blocker.query('DELETE FROM users WHERE id = $1', [gone.id]);
      await blocker.commitTransaction();
      const res = await deletion;
      expect({ status: res.status, body: res.body }).toEqual({ status: 204, body: {} });
    });
    await t.drainEvents();
    const changes = await t.sql<{ id: string; roles: string[] }>(
      `SELECT data->'user'->>'id' AS id, data->'roles' AS roles FROM outbox_events WHERE type = 'user.role_changed' AND data->'user'->>'id' = ANY($1)`,
      [[gone.id, kept.id]],
    );
    expect(changes).toEqual([{ id: kept.id, roles: [] }]);
    const [row] = await t.sql<{ role_id: string | null; version: number }>('SELECT role_id, version FROM users WHERE id = $1', [kept.id]);
    expect(row).toEqual({ role_id: null, version: 2 });
  });

  it('a role assigned while it is being deleted waits for the deletion, then is 422 INVALID_ROLE: no user is left holding a deleted role', async () => {
    const pro = await org('professional');
    const user = (await t.http().post('/v2/users').set(as(pro.token)).send({ email: email(), first_name: 'Late', last_name: 'Assignee' }).expect(201)).body;
    for (const assign of [
      (roleId: string) => t.http().post(`/v2/users/${user.id}/roles`).set(as(pro.token)).send({ roles: [roleId] }),
      (roleId: string) => t.http().patch(`/v2/users/${user.id}`).set(as(pro.token)).send({ role: roleId }),
    ]) {
      const role = (await t.http().post('/v2/roles').set(as(pro.token)).send({ name: `fleeting-${Math.random().toString(36).slice(2, 8)}`, permissions: ['user:read'] }).expect(201)).body;
      // Another transaction holds the role as a deletion does (FOR UPDATE), then deletes it.
      await whileHeld(t, 'SELECT 1 FROM roles WHERE id = $1 FOR UPDATE', [role.id], async (deleter) => {
        const assignment = assign(role.id).then((r) => r);
        await untilWaitingForLock(t, '%FOR KEY SHARE%', 'the assignment');
        await deleter.query('DELETE FROM roles WHERE id = $1', [role.id]);
        await deleter.commitTransaction();
        const res = await assignment;
        expect([res.status, res.body.error?.code]).toEqual([422, 'INVALID_ROLE']);
      });
      expect(await t.sql('SELECT 1 FROM user_roles WHERE user_id = $1', [user.id])).toEqual([]);
      const [row] = await t.sql<{ role_id: string | null; version: number }>('SELECT role_id, version FROM users WHERE id = $1', [user.id]);
      expect(row!.role_id).not.toBe(role.id);
      expect(row!.version).toBe(1);
    }
  });

  it('a user created with a role while that role is being deleted waits for the deletion, then is 422 INVALID_ROLE (POST /users and bulk)', async () => {
    const pro = await org('professional');
    const fleeting = async () =>
      (await t.http().post('/v2/roles').set(as(pro.token)).send({ name: `fleeting-${Math.random().toString(36).slice(2, 8)}`, permissions: ['user:read'] }).expect(201)).body as { id: string; name: string };
    // While the deletion holds the role (FOR UPDATE), the create waits for it; once the role is
    // gone, the create finds no such role.
    const duringDeletion = async <T>(roleId: string, create: () => Promise<T>): Promise<T> =>
      whileHeld(t, 'SELECT 1 FROM roles WHERE id = $1 FOR UPDATE', [roleId], async (deleter) => {
        const pending = create();
        await untilWaitingForLock(t, '%FOR KEY SHARE%', 'the create');
        await deleter.query('DELETE FROM roles WHERE id = $1', [roleId]);
        await deleter.commitTransaction();
        return pending;
      });
    const usersWithEmail = (emails: string[]) => t.sql<{ email: string; role_id: string | null }>('SELECT email, role_id FROM users WHERE email = ANY($1) ORDER BY email', [emails]);

    for (const ref of ['id', 'name'] as const) {
      const role = await fleeting();
      const address = email();
      const res = await duringDeletion(role.id, () => t.http().post('/v2/users').set(as(pro.token)).send({ email: address, first_name: 'Late', last_name: 'Joiner', role: role[ref] }).then((r) => r));
      expect([res.status, res.body.error?.code]).toEqual([422, 'INVALID_ROLE']);
      expect(await usersWithEmail([address])).toEqual([]);
    }

    // Bulk without fail_on_error: the item naming the deleted role fails, the others are created.
    const role = await fleeting();
    const [a, b] = [email(), email()];
    const bulk = await duringDeletion(role.id, () =>
      t.http().post('/v2/users/bulk').set(as(pro.token)).send({ users: [{ email: a, first_name: 'A', last_name: 'A', role: role.name }, { email: b, first_name: 'B', last_name: 'B' }] }).then((r) => r),
    );
    expect(bulk.status).toBe(200);
    expect(bulk.body.results.map((r: { success: boolean; error?: { code: string } }) => r.error?.code ?? 'created')).toEqual(['INVALID_ROLE', 'created']);
    expect(bulk.body.summary).toEqual({ total: 2, successful: 1, failed: 1 });
    expect((await usersWithEmail([a, b])).map((u) => u.email)).toEqual([b]);

    // With fail_on_error: nothing is created.
    const other = await fleeting();
    const [c, d] = [email(), email()];
    const strict = await duringDeletion(other.id, () =>
      t.http().post('/v2/users/bulk').set(as(pro.token))
        .send({ users: [{ email: c, first_name: 'C', last_name: 'C' }, { email: d, first_name: 'D', last_name: 'D', role: other.id }], options: { fail_on_error: true } })
        .then((r) => r),
    );
    expect(strict.status).toBe(422);
    expect(strict.body.results.map((r: { error?: { code: string } }) => r.error?.code)).toEqual(['ROLLED_BACK', 'INVALID_ROLE']);
    expect(await usersWithEmail([c, d])).toEqual([]);
    await t.drainEvents();
    expect(await t.sql(`SELECT 1 FROM outbox_events WHERE type = 'user.created' AND data->'user'->>'email' = ANY($1)`, [[a, c, d]])).toEqual([]);
  });

  it('creating users does not lock the built-in roles (every create names one): a create goes through while another transaction holds the default role', async () => {
    const pro = await org('professional');
    const [builtIn] = await t.sql<{ id: string }>(`SELECT id FROM roles WHERE organization_id = $1 AND name = 'user'`, [pro.id]);
    await whileHeld(t, 'SELECT 1 FROM roles WHERE id = $1 FOR UPDATE', [builtIn!.id], async () => {
      const one = await t.http().post('/v2/users').set(as(pro.token)).send({ email: email(), first_name: 'Free', last_name: 'Flow' });
      expect([one.status, one.body.role]).toEqual([201, 'user']);
      const many = await t.http().post('/v2/users/bulk').set(as(pro.token)).send({ users: [{ email: email(), first_name: 'Free', last_name: 'Flow' }] });
      expect([many.status, many.body.summary.successful]).toEqual([200, 1]);
    });
  });

  describe('nobody grants what they do not hold', () => {
    let ent: { id: string; token: string };
    const narrowKey = async (scopes: string[]) =>
      token((await t.http().post('/v2/api-keys').set(as(ent.token)).send({ name: `narrow ${scopes.join(' ')}`, scopes }).expect(201)).body.key);
    beforeAll(async () => {
      ent = await org('enterprise');
    });

    it('a request refused for a missing scope is counted and carries the X-RateLimit-* headers too', async () => {
      const reader = await narrowKey(['user:read']);
      const before = await t.http().get('/v2/users').set(as(reader)).expect(200);
      const refused = await t.http().get('/v2/webhooks').set(as(reader)).expect(403);
      expect(refused.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
      expect(refused.headers['x-ratelimit-limit']).toBe(before.headers['x-ratelimit-limit']);
      expect(Number(refused.headers['x-ratelimit-remaining'])).toBe(Number(before.headers['x-ratelimit-remaining']) - 1);
    });

    it('roles never carry platform:admin (422 RESERVED_PERMISSION), on create or update', async () => {
      const res = await t.http().post('/v2/roles').set(as(ent.token)).send({ name: 'operator', permissions: ['platform:admin'] }).expect(422);
      expect(res.body.error.details[0]).toMatchObject({ field: 'permissions', code: 'RESERVED_PERMISSION' });
      const role = (await t.http().post('/v2/roles').set(as(ent.token)).send({ name: 'plain', permissions: ['user:read'] }).expect(201)).body;
      const upd = await t.http().put(`/v2/roles/${role.id}`).set(as(ent.token)).send({ permissions: ['user:read', 'platform:admin'] }).expect(422);
      expect(upd.body.error.details[0].code).toBe('RESERVED_PERMISSION');
      expect((await t.sql<{ permissions: string[] }>('SELECT permissions FROM roles WHERE id = $1', [role.id]))[0]!.permissions).toEqual(['user:read']);
    });

    it('a role:manage key cannot write API scopes it lacks into a role; its own permission strings are fine', async () => {
      const roleKey = await narrowKey(['role:manage']);
      const res = await t.http().post('/v2/roles').set(as(roleKey)).send({ name: 'wider', permissions: ['apikey:manage', 'reports:view'] }).expect(403);
      expect(res.body.error).toMatchObject({ code: 'AUTH_INSUFFICIENT_SCOPE', details: { scopes: ['apikey:manage'] } });
      const ok = await t.http().post('/v2/roles').set(as(roleKey)).send({ name: 'reports-only', permissions: ['reports:view', 'role:manage'] }).expect(201);
      const widen = await t.http().put(`/v2/roles/${ok.body.id}`).set(as(roleKey)).send({ permissions: ['user:delete'] }).expect(403);
      expect(widen.body.error.details).toEqual({ scopes: ['user:delete'] });
    });

    it('a user:write key cannot assign a role wider than itself: create, update, bulk and role assignment are 403 and change nothing', async () => {
      const writer = await narrowKey(['user:read', 'user:write']);
      const denied = (res: { status: number; body: { error: { code: string; details: { scopes: string[] } } } }) => {
        expect(res.status).toBe(403);
        expect(res.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
        expect(res.body.error.details.scopes).toEqual(expect.arrayContaining(['apikey:manage', 'role:manage']));
      };
      const adminEmail = email();
      denied(await t.http().post('/v2/users').set(as(writer)).send({ email: adminEmail, first_name: 'a', last_name: 'b', role: 'admin' }));
      const bulk = await t.http().post('/v2/users/bulk').set(as(writer)).send({ users: [{ email: email(), first_name: 'a', last_name: 'b' }, { email: adminEmail, first_name: 'a', last_name: 'b', role: 'admin' }] });
      denied(bulk);
      // Roles without API scopes (the built-in user role) are fine.
      const user = (await t.http().post('/v2/users').set(as(writer)).send({ email: email(), first_name: 'a', last_name: 'b', role: 'user' }).expect(201)).body;
      denied(await t.http().put(`/v2/users/${user.id}`).set(as(writer)).send({ role: 'admin' }));
      denied(await t.http().post(`/v2/users/${user.id}/roles`).set(as(writer)).send({ roles: ['moderator', 'admin'] }));
      await t.http().post(`/v2/users/${user.id}/roles`).set(as(writer)).send({ roles: ['user'] }).expect(200);
      const rows = await t.sql<{ name: string }>('SELECT r.name FROM users u JOIN roles r ON r.id = u.role_id WHERE u.organization_id = $1', [ent.id]);
      expect(rows.map((r) => r.name)).toEqual(['user']);
      const held = await t.sql<{ name: string }>('SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = $1', [user.id]);
      expect(held.map((r) => r.name)).not.toContain('admin');
    });

    it('the default role is checked too: a create without a role is refused when the default role carries a scope the caller lacks', async () => {
      const org2 = await org('enterprise');
      const userRole = (await t.http().get('/v2/roles').set(as(org2.token)).expect(200)).body.data.find((r: { name: string }) => r.name === 'user');
      await t.http().put(`/v2/roles/${userRole.id}`).set(as(org2.token)).send({ permissions: [...userRole.permissions, 'webhook:manage'] }).expect(200);
      const writer = token((await t.http().post('/v2/api-keys').set(as(org2.token)).send({ name: 'writer', scopes: ['user:read', 'user:write', 'role:manage'] }).expect(201)).body.key);
      const res = await t.http().post('/v2/users').set(as(await writer)).send({ email: email(), first_name: 'd', last_name: 'r', password: 'a long enough password' }).expect(403);
      expect(res.body.error.details).toEqual({ scopes: ['webhook:manage'] });
      const bulk = await t.http().post('/v2/users/bulk').set(as(await writer)).send({ users: [{ email: email(), first_name: 'd', last_name: 'r' }] }).expect(403);
      expect(bulk.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
      expect(await t.sql('SELECT id FROM users WHERE organization_id = $1', [org2.id])).toHaveLength(0);
    });

    it('a demoted user loses the old scopes at once, and POST /auth/refresh renews only what the roles give now', async () => {
      const password = 'a long enough password';
      const u = (await t.http().post('/v2/users').set(as(ent.token)).send({ email: email(), first_name: 'd', last_name: 'm', password, role: 'admin' }).expect(201)).body;
      const signIn = async () => (await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: ent.id, email: u.email, password }).expect(200)).body;
      const before = await signIn();
      expect(before.scope.split(' ')).toContain('apikey:manage');
      // Promotion does not revoke; demotion does.
      await t.http().put(`/v2/users/${u.id}`).set(as(ent.token)).send({ role: 'user' }).expect(200);
      const refused = await t.http().post('/v2/auth/refresh').set(as(before.access_token)).expect(401);
      expect(refused.body.error.code).toBe('AUTH_TOKEN_INVALID');
      await t.http().post('/v2/api-keys').set(as(before.access_token)).send({ name: 'sneaky' }).expect(401);
      // A new sign-in, or the refresh token, gives the new scopes; /auth/refresh re-reads the roles.
      const after = (await t.http().post('/v2/auth/token').send({ grant_type: 'refresh_token', refresh_token: before.refresh_token }).expect(200)).body;
      expect(after.scope.split(' ')).not.toContain('apikey:manage');
      await t.http().post(`/v2/users/${u.id}/roles`).set(as(ent.token)).send({ roles: ['moderator'] }).expect(200);
      const renewed = await t.http().post('/v2/auth/refresh').set(as(after.access_token)).expect(200);
      expect(renewed.body.scope.split(' ')).toContain('user:write');
      // Removing the role again revokes; deleting a role revokes its holders.
      await t.http().delete(`/v2/users/${u.id}/roles/moderator`).set(as(ent.token)).expect(200);
      await t.http().get('/v2/users').set(as(renewed.body.access_token)).expect(401);
      const custom = (await t.http().post('/v2/roles').set(as(ent.token)).send({ name: 'readers', permissions: ['user:read'] }).expect(201)).body;
      await t.http().post(`/v2/users/${u.id}/roles`).set(as(ent.token)).send({ roles: ['readers'] }).expect(200);
      const reader = await signIn();
      await t.http().get('/v2/users').set(as(reader.access_token)).expect(200);
      await t.http().delete(`/v2/roles/${custom.id}`).set(as(ent.token)).expect(204);
      await t.http().get('/v2/users').set(as(reader.access_token)).expect(401);
    });

    it('POST /auth/refresh ends with the session: after logout (refresh token revoked) or suspension it is 401', async () => {
      const password = 'a long enough password';
      const u = (await t.http().post('/v2/users').set(as(ent.token)).send({ email: email(), first_name: 's', last_name: 'e', password }).expect(201)).body;
      const s1 = (await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: ent.id, email: u.email, password }).expect(200)).body;
      const s2 = (await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: ent.id, email: u.email, password }).expect(200)).body;
      await t.http().post('/v2/auth/revoke').set(as(ent.token)).send({ token: s1.refresh_token }).expect(200);
      await t.http().post('/v2/auth/refresh').set(as(s1.access_token)).expect(401);
      const ok = await t.http().post('/v2/auth/refresh').set(as(s2.access_token)).expect(200);
      await t.sql("UPDATE users SET status = 'suspended' WHERE id = $1", [u.id]);
      const res = await t.http().post('/v2/auth/refresh').set(as(ok.body.access_token)).expect(401);
      expect(res.body.error.code).toBe('AUTH_TOKEN_INVALID');
    });

    it('a key manager cannot revoke a key wider than itself (403), only keys within its own scopes', async () => {
      const manager = await narrowKey(['apikey:manage', 'user:read']);
      const wide = (await t.http().post('/v2/api-keys').set(as(ent.token)).send({ name: 'wide' }).expect(201)).body;
      const narrow = (await t.http().post('/v2/api-keys').set(as(ent.token)).send({ name: 'narrow', scopes: ['user:read'] }).expect(201)).body;
      const res = await t.http().delete(`/v2/api-keys/${wide.id}`).set(as(manager)).expect(403);
      expect(res.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
      await token(wide.key);
      await t.http().delete(`/v2/api-keys/${narrow.id}`).set(as(manager)).expect(204);
      const gone = await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: narrow.key }).expect(401);
      expect(gone.body.error.code).toBe('AUTH_INVALID_CREDENTIALS');
    });

    it('a moderator signed in as an end user cannot make themselves admin', async () => {
      const password = 'a long enough password';
      const mod = (await t.http().post('/v2/users').set(as(ent.token)).send({ email: email(), first_name: 'm', last_name: 'o', password, role: 'moderator' }).expect(201)).body;
      const login = await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: ent.id, email: mod.email, password }).expect(200);
      expect(login.body.scope.split(' ')).toEqual(expect.arrayContaining(['user:write']));
      const res = await t.http().put(`/v2/users/${mod.id}`).set(as(login.body.access_token)).send({ role: 'admin' }).expect(403);
      expect(res.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
      expect((await t.http().get(`/v2/users/${mod.id}`).set(as(ent.token)).expect(200)).body.role).toBe('moderator');
    });

    it('an end user never receives platform:admin, even from a role that holds it in old data', async () => {
      const password = 'a long enough password';
      const role = (await t.http().post('/v2/roles').set(as(ent.token)).send({ name: 'legacy-op', permissions: ['user:read'] }).expect(201)).body;
      await t.sql(`UPDATE roles SET permissions = array_append(permissions, 'platform:admin') WHERE id = $1`, [role.id]);
      const u = (await t.http().post('/v2/users').set(as(ent.token)).send({ email: email(), first_name: 'l', last_name: 'o', password, role: 'legacy-op' }).expect(201)).body;
      const login = await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: ent.id, email: u.email, password }).expect(200);
      expect(login.body.scope.split(' ')).not.toContain('platform:admin');
      const res = await t.http().get('/v2/admin/organizations').set(as(login.body.access_token)).expect(403);
      expect(res.body.error.code).toBe('AUTH_INSUFFICIENT_SCOPE');
    });
  });

  it('the monthly-active-users limit refuses creation and login of new users with 403 QUOTA_EXCEEDED', async () => {
    const ent = await org('enterprise', { monthly_active_users: 3 });
    const password = 'a long enough password';
    const first = (await t.http().post('/v2/users').set(as(ent.token)).send({ email: email(), first_name: 'a', last_name: 'b', password }).expect(201)).body;
    const bulk = await t.http().post('/v2/users/bulk').set(as(ent.token)).send({ users: [1, 2, 3].map(() => ({ email: email(), first_name: 'a', last_name: 'b' })) }).expect(200);
    expect(bulk.body.summary).toEqual({ total: 3, successful: 2, failed: 1 });
    expect(bulk.body.results[2].error.code).toBe('QUOTA_EXCEEDED');
    const refused = await t.http().post('/v2/users').set(as(ent.token)).send({ email: email(), first_name: 'a', last_name: 'b' }).expect(403);
    expect(refused.body.error.code).toBe('QUOTA_EXCEEDED');
    // A user already active this month may still log in.
    await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: ent.id, email: first.email, password }).expect(200);
    // Deleting a user for good does not give their place back this month.
    await t.http().delete(`/v2/users/${first.id}`).set(as(ent.token)).expect(200);
    const still = await t.http().post('/v2/users').set(as(ent.token)).send({ email: email(), first_name: 'a', last_name: 'b' }).expect(403);
    expect(still.body.error.code).toBe('QUOTA_EXCEEDED');
  });

  it('the monthly-active-users limit holds under concurrency: creates, bulk items and fail_on_error bulks at once never pass it', async () => {
    const ent = await org('enterprise', { monthly_active_users: 7, burst_per_second: 1000, concurrent_requests: 100 });
    const create = () => t.http().post('/v2/users').set(as(ent.token)).send({ email: email(), first_name: 'c', last_name: 'c' });
    const bulk = (failOnError: boolean) =>
      t.http().post('/v2/users/bulk').set(as(ent.token)).send({ users: [1, 2, 3].map(() => ({ email: email(), first_name: 'b', last_name: 'b' })), options: { fail_on_error: failOnError } });
    const responses = await Promise.all([...Array.from({ length: 8 }, create), bulk(false), bulk(false), bulk(true), bulk(true)]);
    for (const r of responses) expect([200, 201, 403, 422]).toContain(r.status);
    const created =
      responses.filter((r) => r.status === 201).length +
      responses.filter((r) => r.status === 200).reduce((n, r) => n + (r.body.summary.successful as number), 0);
    const [row] = await t.sql<{ users: number; active: number }>(
      `SELECT (SELECT count(*)::int FROM users WHERE organization_id = $1) AS users,
              (SELECT count(*)::int FROM user_activity_months WHERE organization_id = $1) AS active`,
      [ent.id],
    );
    expect(row).toEqual({ users: 7, active: 7 });
    expect(created).toBe(7);
    // A refused create says why; a rolled-back all-or-nothing bulk created nothing.
    for (const r of responses.filter((x) => x.status === 403)) expect(r.body.error.code).toBe('QUOTA_EXCEEDED');
    for (const r of responses.filter((x) => x.status === 422)) expect(r.body.summary.successful).toBe(0);
  });

  it('requests_per_hour: 15 gives exactly 15 successes, headers counting down, then 429 with Retry-After', async () => {
    const ent = await org('enterprise', { requests_per_hour: 15 });
    const remaining: number[] = [];
    for (let i = 0; i < 15; i++) {
      const res = await t.http().get('/v2/roles').set(as(ent.token)).expect(200);
      expect(res.headers['x-ratelimit-limit']).toBe('15');
      expect(res.headers['x-ratelimit-window']).toBe('3600');
      expect(Number(res.headers['x-ratelimit-reset'])).toBeGreaterThan(Date.now() / 1000);
      remaining.push(Number(res.headers['x-ratelimit-remaining']));
    }
    expect(remaining).toEqual([14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    const over = await t.http().get('/v2/roles').set(as(ent.token)).expect(429);
    expect(over.body.error.code).toBe('RATE_LIMIT_EXCEEDED');
    expect(over.body.error.retry_after).toBeGreaterThan(0);
    expect(Number(over.headers['retry-after'])).toBe(over.body.error.retry_after);
    expect(over.headers['x-ratelimit-remaining']).toBe('0');
    // Another organization's counter is independent.
    const other = await org('enterprise', { requests_per_hour: 15 });
    const fine = await t.http().get('/v2/roles').set(as(other.token)).expect(200);
    expect(fine.headers['x-ratelimit-remaining']).toBe('14');
  });

  it('a 60-request concurrent spike against burst_per_second: 10 gets 429s and no 5xx', async () => {
    const ent = await org('enterprise', { burst_per_second: 10 });
    const statuses = (await Promise.all(Array.from({ length: 60 }, () => t.http().get('/v2/roles').set(as(ent.token))))).map((r) => r.status);
    expect(statuses.filter((s) => s >= 500)).toEqual([]);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(10);
  });

  describe('two API processes sharing one PostgreSQL and one Redis', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'um-two-'));
    let db: { url: string; drop: () => Promise<void> };
    let a: ApiProcess;
    let b: ApiProcess;
    beforeAll(async () => {
      db = await createTestDatabase();
      const env = {
        DATABASE_URL: db.url,
        DATA_DIR: dataDir,
        BOOTSTRAP_API_KEY: TEST_BOOTSTRAP_KEY,
        REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
        REDIS_KEY_PREFIX: `test:${randomBytes(6).toString('hex')}:`,
      };
      a = await startApiProcess(env);
      b = await startApiProcess(env);
    }, 90_000);
    afterAll(async () => {
      await Promise.all([a?.stop(), b?.stop()]);
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('enforce one hourly limit together', async () => {
      const post = async (base: string, path: string, body: unknown, tok?: string) => {
        const res = await fetch(`${base}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(tok ? { authorization: `Bearer ${tok}` } : {}) },
          body: JSON.stringify(body),
        });
        return (await res.json()) as Record<string, never>;
      };
      const adminToken = (await post(a.baseUrl, '/v2/auth/token', { grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY })).access_token;
      const created = await post(a.baseUrl, '/v2/admin/organizations', { name: 'Shared', plan: 'enterprise', limits: { requests_per_hour: 15 } }, adminToken);
      const orgToken = (await post(b.baseUrl, '/v2/auth/token', { grant_type: 'client_credentials', api_key: (created.api_key as { key: string }).key })).access_token;
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) {
        const base = i % 2 === 0 ? a.baseUrl : b.baseUrl;
        statuses.push((await fetch(`${base}/v2/roles`, { headers: { authorization: `Bearer ${orgToken}` } })).status);
      }
      expect(statuses).toEqual([...Array(15).fill(200), ...Array(15).fill(429)]);
    });
  });
});
