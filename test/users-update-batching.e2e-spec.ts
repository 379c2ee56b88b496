import { createTestApp, TEST_BOOTSTRAP_KEY, TestApp } from '@app/testing';
import { UserUpdateBatcher } from '../apps/api/src/modules/users/user-update-batcher';

/**
 * Concurrent PUT/PATCH /users/{id} share statements (UserUpdateBatcher, UsersRepository.
 * updateFieldsBatch). With one statement in flight (USERS_UPDATE_BATCH_IN_FLIGHT=1), requests that
 * arrive while it runs are gathered into the next. These tests prove that a shared statement gives
 * each request exactly the answer it would have had alone (its user, its version, its If-Match, its
 * 404, its event), across organizations, and that a shared statement that fails leaves nothing
 * written and costs no other request its update.
 */

interface UserBody {
  id: string;
  first_name: string;
  last_name: string;
  metadata: Record<string, unknown>;
  [key: string]: unknown;
}

describe('Users: concurrent updates share statements', () => {
  let t: TestApp;
  let token: string;
  let batcher: UserUpdateBatcher;
  const auth = (tok = token) => ({ Authorization: `Bearer ${tok}` });

  const tokenFor = async (apiKey: string) =>
    (await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: apiKey }).expect(200)).body.access_token as string;
  const createUsers = async (prefix: string, count: number, tok = token): Promise<UserBody[]> => {
    const res = await t.http().post('/v2/users/bulk').set(auth(tok)).send({
      users: Array.from({ length: count }, (_, i) => ({ email: `${prefix}${i}@batch.example`, first_name: `${prefix}${i}`, last_name: 'Batch', metadata: { n: i } })),
    });
    expect({ status: res.status, successful: res.body.summary?.successful }).toEqual({ status: 200, successful: count });
    return (res.body.results as { user: UserBody }[]).map((r) => r.user);
  };
  const updatedEvents = async (ids: string[]) => {
    await t.drainEvents();
    return t.sql<{ id: string; organization_id: string; user_id: string; data: { user: Record<string, unknown>; changes: string[] } }>(
      `SELECT id, organization_id, data->'user'->>'id' AS user_id, data FROM outbox_events
        WHERE type = 'user.updated' AND data->'user'->>'id' = ANY($1) ORDER BY seq`,
      [ids],
    );
  };
  /** Sends every request at once and waits for all the answers. */
  const together = <T>(requests: PromiseLike<T>[]) => Promise.all(requests);

  beforeAll(async () => {
    t = await createTestApp({ USERS_UPDATE_BATCH_IN_FLIGHT: '1', DATABASE_STATEMENT_TIMEOUT_MS: '1000' });
    token = await tokenFor(TEST_BOOTSTRAP_KEY);
    batcher = t.app.get(UserUpdateBatcher);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('30 concurrent PATCHes of 30 users: shared statements, each answer is its own user, each user gets one user.updated', async () => {
    const users = await createUsers('many', 30);
    const before = { ...batcher.stats };
    const responses = await together(users.map((u, i) => t.http().patch(`/v2/users/${u.id}`).set(auth()).send({ first_name: `Renamed ${i} Ünïcødé` })));
    expect(batcher.stats.largest).toBeGreaterThan(1);
    expect(batcher.stats.statements - before.statements).toBeLessThan(30);
    expect(batcher.stats.updates - before.updates).toBe(30);
    responses.forEach((res, i) => {
      expect({ status: res.status, id: res.body.id, first_name: res.body.first_name, etag: res.headers.etag }).toEqual({
        status: 200,
        id: users[i]!.id,
        first_name: `Renamed ${i} Ünïcødé`,
        etag: `"${users[i]!.id}.v2"`,
      });
      expect(res.body.last_name).toBe('Batch');
      expect(res.body.metadata).toEqual({ n: i });
      expect(res.body.role).toBe('user');
      expect(res.body.roles.map((r: { name: string }) => r.name)).toEqual(['user']);
    });
    const rows = await t.sql<{ id: string; first_name: string; version: number }>('SELECT id, first_name, version FROM users WHERE id = ANY($1)', [users.map((u) => u.id)]);
    for (const [i, u] of users.entries()) expect(rows.find((r) => r.id === u.id)).toEqual({ id: u.id, first_name: `Renamed ${i} Ünïcødé`, version: 2 });
    const events = await updatedEvents(users.map((u) => u.id));
    expect(events).toHaveLength(30);
    for (const [i, u] of users.entries()) {
      const event = events.find((e) => e.user_id === u.id)!;
      expect(event.data.changes).toEqual(['first_name']);
      expect(event.data.user).toMatchObject({ id: u.id, first_name: `Renamed ${i} Ünïcødé`, last_name: 'Batch', role: 'user' });
    }
    const active = await t.sql('SELECT user_id FROM user_activity_months WHERE user_id = ANY($1)', [users.map((u) => u.id)]);
    expect(active).toHaveLength(30);
  });

  it('one shared burst with every kind of answer: 404s, a stale and a current If-Match, no change, metadata, preferences, and two updates of one user', async () => {
    const [plain, stale, current, unchanged, meta, twice, deleted] = await createUsers('mix', 7);
    await t.http().delete(`/v2/users/${deleted!.id}?soft_delete=true`).set(auth()).expect(200);
    // One user updates their own preferences (PUT /users/me) in the same burst.
    const prefs = (await t.http().post('/v2/users').set(auth()).send({ email: 'prefs@batch.example', first_name: 'Pref', last_name: 'Batch', password: 'Correct-Horse-42' }).expect(201)).body as UserBody;
    const login = await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: await orgOf(prefs.id), email: 'prefs@batch.example', password: 'Correct-Horse-42' }).expect(200);
    const own = { Authorization: `Bearer ${login.body.access_token as string}` };
    const before = { ...batcher.stats };
    const [a, b, c, d, e, f, g1, g2, h, missing] = await together([
      t.http().patch(`/v2/users/${plain!.id}`).set(auth()).send({ last_name: "O'Brien; DROP TABLE users--" }),
      t.http().patch(`/v2/users/${stale!.id}`).set(auth()).set('If-Match', `"${stale!.id}.v7"`).send({ first_name: 'Never' }),
      t.http().put(`/v2/users/${current!.id}`).set(auth()).set('If-Match', `"${current!.id}.v1"`).send({ first_name: 'Current' }),
      t.http().patch(`/v2/users/${unchanged!.id}`).set(auth()).send({ first_name: unchanged!.first_name, last_name: 'Batch' }),
      t.http().patch(`/v2/users/${meta!.id}`).set(auth()).send({ metadata: { n: 4, team: 'blue' } }),
      t.http().put('/v2/users/me').set(own).send({ preferences: { theme: 'dark' } }),
      t.http().patch(`/v2/users/${twice!.id}`).set(auth()).send({ first_name: 'Twice' }),
      t.http().patch(`/v2/users/${twice!.id}`).set(auth()).send({ last_name: 'Again' }),
      t.http().patch(`/v2/users/${deleted!.id}`).set(auth()).send({ first_name: 'Ghost' }),
      t.http().patch('/v2/users/user_nosuchuser000').set(auth()).send({ first_name: 'Nobody' }),
    ]);
    expect(batcher.stats.updates - before.updates).toBe(10);
    expect(batcher.stats.statements - before.statements).toBeLessThan(batcher.stats.updates - before.updates);

    expect([a!.status, a!.body.last_name, a!.headers.etag]).toEqual([200, "O'Brien; DROP TABLE users--", `"${plain!.id}.v2"`]);
    expect([b!.status, b!.body.error?.code]).toEqual([409, 'CONCURRENT_UPDATE']);
    expect([c!.status, c!.body.first_name, c!.headers.etag]).toEqual([200, 'Current', `"${current!.id}.v2"`]);
    expect([d!.status, d!.headers.etag]).toEqual([200, `"${unchanged!.id}.v1"`]);
    expect([e!.status, e!.body.metadata]).toEqual([200, { n: 4, team: 'blue' }]);
    expect([f!.status, f!.body.preferences]).toEqual([200, { theme: 'dark' }]);
    expect([g1!.status, g2!.status]).toEqual([200, 200]);
    expect([h!.status, h!.body.error?.code]).toEqual([404, 'USER_NOT_FOUND']);
    expect([missing!.status, missing!.body.error?.code]).toEqual([404, 'USER_NOT_FOUND']);

    const rows = await t.sql<{ id: string; first_name: string; last_name: string; version: number; preferences: unknown; deleted_at: Date | null }>(
      'SELECT id, first_name, last_name, version, preferences, deleted_at FROM users WHERE id = ANY($1)',
      [[stale!.id, twice!.id, deleted!.id, prefs.id, unchanged!.id]],
    );
    const row = (id: string) => rows.find((r) => r.id === id)!;
    expect(row(stale!.id)).toMatchObject({ first_name: 'mix1', version: 1 });
    expect(row(twice!.id)).toMatchObject({ first_name: 'Twice', last_name: 'Again', version: 3 });
    expect(row(deleted!.id)).toMatchObject({ first_name: 'mix6' });
    expect(row(deleted!.id).deleted_at).not.toBeNull();
    expect(row(prefs.id)).toMatchObject({ preferences: { theme: 'dark' }, version: 2 });
    expect(row(unchanged!.id)).toMatchObject({ version: 1 });

    const events = await updatedEvents([plain, stale, current, unchanged, meta, prefs, twice, deleted].map((u) => u!.id));
    const changes = (id: string) => events.filter((ev) => ev.user_id === id).map((ev) => ev.data.changes);
    expect(changes(plain!.id)).toEqual([['last_name']]);
    expect(changes(stale!.id)).toEqual([]);
    expect(changes(current!.id)).toEqual([['first_name']]);
    expect(changes(unchanged!.id)).toEqual([]);
    expect(changes(meta!.id)).toEqual([['metadata.team']]);
    expect(changes(prefs.id)).toEqual([['preferences']]);
    expect(changes(twice!.id).sort()).toEqual([['first_name'], ['last_name']]);
    expect(changes(deleted!.id)).toEqual([]);
  });

  it('updates of two organizations share a statement, and neither can reach the other\'s users', async () => {
    const org = await t.http().post('/v2/admin/organizations').set(auth()).send({ name: 'Batch Other Org', plan: 'professional' }).expect(201);
    const otherToken = await tokenFor(org.body.api_key.key);
    const mine = await createUsers('home', 3);
    const theirs = await createUsers('away', 3, otherToken);
    const responses = await together([
      ...mine.map((u) => t.http().patch(`/v2/users/${u.id}`).set(auth()).send({ first_name: 'Home' })),
      ...theirs.map((u) => t.http().patch(`/v2/users/${u.id}`).set(auth(otherToken)).send({ first_name: 'Away' })),
      // Each organization aims at the other's users in the same burst.
      ...theirs.map((u) => t.http().patch(`/v2/users/${u.id}`).set(auth()).send({ first_name: 'Intruder' })),
      ...mine.map((u) => t.http().patch(`/v2/users/${u.id}`).set(auth(otherToken)).send({ first_name: 'Intruder' })),
    ]);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200, 404, 404, 404, 404, 404, 404]);
    const rows = await t.sql<{ first_name: string }>('SELECT first_name FROM users WHERE id = ANY($1) ORDER BY first_name', [[...mine, ...theirs].map((u) => u.id)]);
    expect(rows.map((r) => r.first_name)).toEqual(['Away', 'Away', 'Away', 'Home', 'Home', 'Home']);
    const events = await updatedEvents([...mine, ...theirs].map((u) => u.id));
    expect(events).toHaveLength(6);
    const [home, away] = [await orgOf(mine[0]!.id), await orgOf(theirs[0]!.id)];
    expect(home).not.toBe(away);
    for (const ev of events) expect(ev.organization_id).toBe(mine.some((u) => u.id === ev.user_id) ? home : away);
  });

  const orgOf = async (userId: string) => (await t.sql<{ organization_id: string }>('SELECT organization_id FROM users WHERE id = $1', [userId]))[0]!.organization_id;

  it('a shared statement that fails is retried update by update: only the update that cannot be made fails, and nothing of it is written', async () => {
    const [holder, locked, b, c] = await createUsers('fail', 4);
    // Another transaction holds two users' rows past the statement timeout (1 s here).
    const blocker = t.dataSource.createQueryRunner();
    await blocker.connect();
    await blocker.startTransaction();
    try {
      await blocker.query('SELECT 1 FROM users WHERE id = ANY($1) FOR UPDATE', [[holder!.id, locked!.id]]);
      const before = { ...batcher.stats };
      // The first update takes the only slot and waits on its row; the next three queue and share
      // the next statement, which waits on `locked` and is cancelled.
      const first = t.http().patch(`/v2/users/${holder!.id}`).set(auth()).send({ first_name: 'Held' }).then((r) => r);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const [h, l, rb, rc] = await together([
        first,
        t.http().patch(`/v2/users/${locked!.id}`).set(auth()).send({ first_name: 'Locked' }),
        t.http().patch(`/v2/users/${b!.id}`).set(auth()).send({ first_name: 'Made B' }),
        t.http().patch(`/v2/users/${c!.id}`).set(auth()).send({ first_name: 'Made C' }),
      ]);
      expect([h!.status, h!.body.error?.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
      expect([l!.status, l!.body.error?.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
      expect([rb!.status, rb!.body.first_name, rc!.status, rc!.body.first_name]).toEqual([200, 'Made B', 200, 'Made C']);
      expect(batcher.stats.retriedAlone - before.retriedAlone).toBe(3);
    } finally {
      await blocker.rollbackTransaction();
      await blocker.release();
    }
    const rows = await t.sql<{ id: string; first_name: string; version: number }>('SELECT id, first_name, version FROM users WHERE id = ANY($1) ORDER BY first_name', [[holder!.id, locked!.id, b!.id, c!.id]]);
    expect(rows.map((r) => [r.first_name, r.version]).sort()).toEqual([['Made B', 2], ['Made C', 2], ['fail0', 1], ['fail1', 1]]);
    const events = await updatedEvents([holder!.id, locked!.id, b!.id, c!.id]);
    expect(events.map((e) => e.user_id).sort()).toEqual([b!.id, c!.id].sort());
    // The API serves on.
    await t.http().patch(`/v2/users/${locked!.id}`).set(auth()).send({ first_name: 'Later' }).expect(200);
  });
});
