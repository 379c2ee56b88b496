import { createTestApp, slowUserWrites, TEST_BOOTSTRAP_KEY, TestApp, whileHeld } from '@app/testing';
import type { Response } from 'supertest';
import { UserUpdateBatcher } from '../apps/api/src/modules/users/user-update-batcher';
import { FieldsUpdate, UsersRepository } from '../apps/api/src/modules/users/users.repository';

/**
 * Concurrent PUT/PATCH /users/{id} share statements (UserUpdateBatcher, UsersRepository.
 * updateFieldsBatch). With one shared statement in flight (USERS_UPDATE_BATCH_IN_FLIGHT=1), the
 * requests that arrive while it runs are gathered into the next. To make that happen on cue, a
 * trigger of this test's own database makes an update to a first name starting with "Slow" take
 * 0.7 s, and one to "Explode" outlast the 1.5 s statement timeout.
 *
 * These tests prove that a shared statement gives each request exactly the answer it would have
 * had alone (its user, its version, its If-Match, its 404, its event), across organizations; that a
 * row held by another transaction delays only its own request; that a user's updates are made one
 * at a time; and that a shared statement that fails wrote nothing and costs no other request its
 * update.
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
  let shared: jest.SpyInstance<ReturnType<UsersRepository['updateFieldsBatch']>, [readonly FieldsUpdate[]]>;
  let slowUser: UserBody;
  let slowCount = 0;
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
  const orgOf = async (userId: string) => (await t.sql<{ organization_id: string }>('SELECT organization_id FROM users WHERE id = $1', [userId]))[0]!.organization_id;
  const updatedEvents = async (ids: string[]) => {
    await t.drainEvents();
    return t.sql<{ organization_id: string; user_id: string; data: { user: Record<string, unknown>; changes: string[] } }>(
      `SELECT organization_id, data->'user'->>'id' AS user_id, data FROM outbox_events
        WHERE type = 'user.updated' AND data->'user'->>'id' = ANY($1) ORDER BY seq`,
      [ids],
    );
  };
  const until = async (what: string, condition: () => boolean) => {
    for (const deadline = Date.now() + 5000; !condition(); ) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  /** The users of each shared statement run since `from` (an index into the spy's calls). */
  const statementsSince = (from: number) => shared.mock.calls.slice(from).map(([updates]) => updates.map((u) => u.id));
  /**
   * Sends the requests while a slow update holds the only slot, waits until all of them are
   * queued, then lets them go: they are gathered as the batcher gathers them under load.
   */
  const gathered = async (requests: (() => PromiseLike<Response>)[], expectQueued = requests.length) => {
    const calls = shared.mock.calls.length;
    const holder = t.http().patch(`/v2/users/${slowUser.id}`).set(auth()).send({ first_name: `Slow ${++slowCount}` }).then((r) => r);
    await until('the slow update to take the slot', () => shared.mock.calls.length > calls);
    const sent = requests.map((send) => send().then((r) => r));
    await until(`${expectQueued} queued updates`, () => batcher.queued === expectQueued);
    expect((await holder).status).toBe(200);
    return { responses: await Promise.all(sent), statements: () => statementsSince(calls + 1) };
  };

  beforeAll(async () => {
    t = await createTestApp({ USERS_UPDATE_BATCH_IN_FLIGHT: '1', DATABASE_STATEMENT_TIMEOUT_MS: '1500' });
    token = await tokenFor(TEST_BOOTSTRAP_KEY);
    batcher = t.app.get(UserUpdateBatcher);
    shared = jest.spyOn(t.app.get(UsersRepository), 'updateFieldsBatch');
    await slowUserWrites(t, 'UPDATE');
    [slowUser] = await createUsers('slow', 1);
  });
  afterAll(async () => {
    shared?.mockRestore();
    await t?.close();
  });

  it('30 concurrent PATCHes of 30 users: shared statements, each answer is its own user, each user gets one user.updated', async () => {
    const users = await createUsers('many', 30);
    const calls = shared.mock.calls.length;
    const responses = await Promise.all(users.map((u, i) => t.http().patch(`/v2/users/${u.id}`).set(auth()).send({ first_name: `Renamed ${i} Ünïcødé` })));
    const statements = statementsSince(calls);
    expect(statements.length).toBeLessThan(30);
    expect(Math.max(...statements.map((s) => s.length))).toBeGreaterThan(1);
    expect(statements.flat().sort()).toEqual(users.map((u) => u.id).sort());
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

  it('one shared statement with every kind of answer: 404s, a stale and a current If-Match, no change, metadata, preferences, extra roles', async () => {
    const [plain, stale, current, unchanged, meta, deleted, extra] = await createUsers('mix', 7);
    await t.http().delete(`/v2/users/${deleted!.id}?soft_delete=true`).set(auth()).expect(200);
    await t.http().post(`/v2/users/${extra!.id}/roles`).set(auth()).send({ roles: ['moderator'] }).expect(200);
    // One user updates their own preferences (PUT /users/me) in the same statement.
    const prefs = (await t.http().post('/v2/users').set(auth()).send({ email: 'prefs@batch.example', first_name: 'Pref', last_name: 'Batch', password: 'Correct-Horse-42' }).expect(201)).body as UserBody;
    const login = await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: await orgOf(prefs.id), email: 'prefs@batch.example', password: 'Correct-Horse-42' }).expect(200);
    const own = { Authorization: `Bearer ${login.body.access_token as string}` };
    const madeAlone = batcher.stats.madeAlone;

    const { responses, statements } = await gathered([
      () => t.http().patch(`/v2/users/${plain!.id}`).set(auth()).send({ last_name: "O'Brien; DROP TABLE users--" }),
      () => t.http().patch(`/v2/users/${stale!.id}`).set(auth()).set('If-Match', `"${stale!.id}.v7"`).send({ first_name: 'Never' }),
      () => t.http().put(`/v2/users/${current!.id}`).set(auth()).set('If-Match', `"${current!.id}.v1"`).send({ first_name: 'Current' }),
      () => t.http().patch(`/v2/users/${unchanged!.id}`).set(auth()).send({ first_name: unchanged!.first_name, last_name: 'Batch' }),
      () => t.http().patch(`/v2/users/${meta!.id}`).set(auth()).send({ metadata: { n: 4, team: 'blue' } }),
      () => t.http().put('/v2/users/me').set(own).send({ preferences: { theme: 'dark' } }),
      () => t.http().patch(`/v2/users/${deleted!.id}`).set(auth()).send({ first_name: 'Ghost' }),
      () => t.http().patch('/v2/users/user_nosuchuser000').set(auth()).send({ first_name: 'Nobody' }),
      () => t.http().patch(`/v2/users/${extra!.id}`).set(auth()).send({ first_name: 'Extra' }),
    ]);
    // All nine went in one statement; the two that found no user were then tried alone (404).
    expect(statements()[0]!.sort()).toEqual([plain, stale, current, unchanged, meta, prefs, deleted, extra].map((u) => u!.id).concat('user_nosuchuser000').sort());
    expect(batcher.stats.madeAlone - madeAlone).toBe(2);
    const [a, b, c, d, e, f, h, missing, x] = responses;

    expect([a!.status, a!.body.last_name, a!.headers.etag]).toEqual([200, "O'Brien; DROP TABLE users--", `"${plain!.id}.v2"`]);
    expect([b!.status, b!.body.error?.code]).toEqual([409, 'CONCURRENT_UPDATE']);
    expect([c!.status, c!.body.first_name, c!.headers.etag]).toEqual([200, 'Current', `"${current!.id}.v2"`]);
    expect([d!.status, d!.headers.etag, d!.body.first_name]).toEqual([200, `"${unchanged!.id}.v1"`, unchanged!.first_name]);
    expect([e!.status, e!.body.metadata]).toEqual([200, { n: 4, team: 'blue' }]);
    expect([f!.status, f!.body.preferences]).toEqual([200, { theme: 'dark' }]);
    expect([h!.status, h!.body.error?.code]).toEqual([404, 'USER_NOT_FOUND']);
    expect([missing!.status, missing!.body.error?.code]).toEqual([404, 'USER_NOT_FOUND']);
    expect([x!.status, x!.body.first_name, x!.body.role, x!.body.roles.map((r: { name: string }) => r.name)]).toEqual([200, 'Extra', 'user', ['user', 'moderator']]);

    const rows = await t.sql<{ id: string; first_name: string; version: number; preferences: unknown; deleted_at: Date | null }>(
      'SELECT id, first_name, version, preferences, deleted_at FROM users WHERE id = ANY($1)',
      [[stale!.id, deleted!.id, prefs.id, unchanged!.id]],
    );
    const row = (id: string) => rows.find((r) => r.id === id)!;
    expect(row(stale!.id)).toMatchObject({ first_name: 'mix1', version: 1 });
    expect(row(deleted!.id)).toMatchObject({ first_name: 'mix5' });
    expect(row(deleted!.id).deleted_at).not.toBeNull();
    expect(row(prefs.id)).toMatchObject({ preferences: { theme: 'dark' }, version: 2 });
    expect(row(unchanged!.id)).toMatchObject({ version: 1 });

    const events = await updatedEvents([plain, stale, current, unchanged, meta, prefs, deleted, extra].map((u) => u!.id));
    const changes = (id: string) => events.filter((ev) => ev.user_id === id).map((ev) => ev.data.changes);
    expect(changes(plain!.id)).toEqual([['last_name']]);
    expect(changes(stale!.id)).toEqual([]);
    expect(changes(current!.id)).toEqual([['first_name']]);
    expect(changes(unchanged!.id)).toEqual([]);
    expect(changes(meta!.id)).toEqual([['metadata.team']]);
    expect(changes(prefs.id)).toEqual([['preferences']]);
    expect(changes(deleted!.id)).toEqual([]);
    expect(changes(extra!.id)).toEqual([['first_name']]);
  });

  it('updates of two organizations share a statement, and neither can reach the other\'s users', async () => {
    const org = await t.http().post('/v2/admin/organizations').set(auth()).send({ name: 'Batch Other Org', plan: 'professional' }).expect(201);
    const otherToken = await tokenFor(org.body.api_key.key);
    const mine = await createUsers('home', 2);
    const theirs = await createUsers('away', 2, otherToken);
    const { responses, statements } = await gathered([
      ...mine.map((u) => () => t.http().patch(`/v2/users/${u.id}`).set(auth()).send({ first_name: 'Home' })),
      ...theirs.map((u) => () => t.http().patch(`/v2/users/${u.id}`).set(auth(otherToken)).send({ first_name: 'Away' })),
    ]);
    expect(statements()[0]!.sort()).toEqual([...mine, ...theirs].map((u) => u.id).sort());
    expect(responses.map((r) => [r.status, r.body.id, r.body.first_name])).toEqual([
      ...mine.map((u) => [200, u.id, 'Home']),
      ...theirs.map((u) => [200, u.id, 'Away']),
    ]);
    // Each organization aims at the other's users, in one statement: 404, and nothing written.
    const intrusions = await gathered([
      ...theirs.map((u) => () => t.http().patch(`/v2/users/${u.id}`).set(auth()).send({ first_name: 'Intruder' })),
      ...mine.map((u) => () => t.http().patch(`/v2/users/${u.id}`).set(auth(otherToken)).send({ first_name: 'Intruder' })),
    ]);
    expect(intrusions.statements()[0]!.sort()).toEqual([...mine, ...theirs].map((u) => u.id).sort());
    expect(intrusions.responses.map((r) => [r.status, r.body.error?.code])).toEqual(Array(4).fill([404, 'USER_NOT_FOUND']));
    const rows = await t.sql<{ first_name: string; version: number }>('SELECT first_name, version FROM users WHERE id = ANY($1)', [[...mine, ...theirs].map((u) => u.id)]);
    expect(rows.map((r) => `${r.first_name} v${r.version}`).sort()).toEqual(['Away v2', 'Away v2', 'Home v2', 'Home v2']);
    const events = await updatedEvents([...mine, ...theirs].map((u) => u.id));
    const [home, away] = [await orgOf(mine[0]!.id), await orgOf(theirs[0]!.id)];
    expect(home).not.toBe(away);
    expect(events.map((ev) => [ev.user_id, ev.organization_id]).sort()).toEqual([...mine.map((u) => [u.id, home]), ...theirs.map((u) => [u.id, away])].sort());
  });

  it('a row held by another transaction delays only its own update: its shared statement answers the others, and it is made alone once the row is free', async () => {
    const [held, b, c] = await createUsers('held', 3);
    await whileHeld(t, 'SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [held!.id], async (blocker) => {
      const madeAlone = batcher.stats.madeAlone;
      const calls = shared.mock.calls.length;
      const holder = t.http().patch(`/v2/users/${slowUser.id}`).set(auth()).send({ first_name: `Slow ${++slowCount}` }).then((r) => r);
      await until('the slow update to take the slot', () => shared.mock.calls.length > calls);
      let heldAnswered = false;
      const heldRequest = t.http().patch(`/v2/users/${held!.id}`).set(auth()).send({ first_name: 'Held' }).then((r) => {
        heldAnswered = true;
        return r;
      });
      const others = [
        t.http().patch(`/v2/users/${b!.id}`).set(auth()).send({ first_name: 'Made B' }).then((r) => r),
        t.http().patch(`/v2/users/${c!.id}`).set(auth()).send({ first_name: 'Made C' }).then((r) => r),
      ];
      await until('3 queued updates', () => batcher.queued === 3);
      expect((await holder).status).toBe(200);
      const answered = await Promise.all(others);
      expect(answered.map((r) => [r.status, r.body.first_name])).toEqual([[200, 'Made B'], [200, 'Made C']]);
      // One statement carried all three; the held row was skipped, and its update now waits alone.
      expect(statementsSince(calls + 1)[0]!.sort()).toEqual([held!.id, b!.id, c!.id].sort());
      expect(batcher.stats.madeAlone - madeAlone).toBe(1);
      expect(heldAnswered).toBe(false);
      await blocker.commitTransaction();
      const heldResponse = await heldRequest;
      expect([heldResponse.status, heldResponse.body.first_name, heldResponse.headers.etag]).toEqual([200, 'Held', `"${held!.id}.v2"`]);
    });
    expect((await updatedEvents([held!.id, b!.id, c!.id])).map((e) => e.user_id).sort()).toEqual([held!.id, b!.id, c!.id].sort());
  });

  it('a user\'s next update waits in the queue while one is being made, even alone on a held row, and they are made in the order they came', async () => {
    const [one, other] = await createUsers('serial', 2);
    await whileHeld(t, 'SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [one!.id], async (blocker) => {
      const madeAlone = batcher.stats.madeAlone;
      const calls = shared.mock.calls.length;
      const first = t.http().patch(`/v2/users/${one!.id}`).set(auth()).send({ last_name: 'First' }).then((r) => r);
      await until('the first update to be made alone', () => batcher.stats.madeAlone > madeAlone);
      const second = t.http().patch(`/v2/users/${one!.id}`).set(auth()).send({ last_name: 'Second' }).then((r) => r);
      await until('the second update to be queued', () => batcher.queued === 1);
      // The slot is free, yet the second update stays queued: its user's first one is being made.
      const otherResponse = await t.http().patch(`/v2/users/${other!.id}`).set(auth()).send({ first_name: 'Other' });
      expect(otherResponse.status).toBe(200);
      expect(batcher.queued).toBe(1);
      expect(statementsSince(calls).flat().filter((id) => id === one!.id)).toHaveLength(1);
      await blocker.commitTransaction();
      const [r1, r2] = await Promise.all([first, second]);
      expect([r1.status, r1.body.last_name, r1.headers.etag]).toEqual([200, 'First', `"${one!.id}.v2"`]);
      expect([r2.status, r2.body.last_name, r2.headers.etag]).toEqual([200, 'Second', `"${one!.id}.v3"`]);
    });
    const [row] = await t.sql<{ version: number; last_name: string }>('SELECT version, last_name FROM users WHERE id = $1', [one!.id]);
    expect(row).toEqual({ version: 3, last_name: 'Second' });
    const events = await updatedEvents([one!.id]);
    expect(events.map((e) => e.data.user.last_name)).toEqual(['First', 'Second']);
  });

  it('several updates of one user sent at once are made one at a time, never two in one statement, none lost', async () => {
    const [one, other] = await createUsers('burst', 2);
    const { responses, statements } = await gathered([
      ...[1, 2, 3, 4].map((n) => () => t.http().patch(`/v2/users/${one!.id}`).set(auth()).send({ last_name: `Last ${n}` })),
      () => t.http().patch(`/v2/users/${other!.id}`).set(auth()).send({ first_name: 'Other' }),
    ]);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    for (const ids of statements()) expect(new Set(ids).size).toBe(ids.length);
    expect(statements().flat().filter((id) => id === one!.id)).toHaveLength(4);
    // Each answer is its own update, at its own version; the last one made is what the user holds.
    responses.slice(0, 4).forEach((r, i) => expect(r.body.last_name).toBe(`Last ${i + 1}`));
    expect(responses.slice(0, 4).map((r) => r.headers.etag).sort()).toEqual([2, 3, 4, 5].map((v) => `"${one!.id}.v${v}"`));
    const last = responses.find((r) => r.headers.etag === `"${one!.id}.v5"`)!;
    const [row] = await t.sql<{ version: number; last_name: string }>('SELECT version, last_name FROM users WHERE id = $1', [one!.id]);
    expect(row).toEqual({ version: 5, last_name: last.body.last_name });
    const events = await updatedEvents([one!.id]);
    expect(events.map((e) => e.data.changes)).toEqual([['last_name'], ['last_name'], ['last_name'], ['last_name']]);
    expect(events.map((e) => e.data.user.last_name).sort()).toEqual(['Last 1', 'Last 2', 'Last 3', 'Last 4']);
  });

  it('a shared statement that fails is made update by update: only the update that cannot be made fails, and nothing of it is written', async () => {
    const [doomed, b, c] = await createUsers('fail', 3);
    const madeAlone = batcher.stats.madeAlone;
    const { responses, statements } = await gathered([
      () => t.http().patch(`/v2/users/${doomed!.id}`).set(auth()).send({ first_name: 'Explode' }),
      () => t.http().patch(`/v2/users/${b!.id}`).set(auth()).send({ first_name: 'Made B' }),
      () => t.http().patch(`/v2/users/${c!.id}`).set(auth()).send({ first_name: 'Made C' }),
    ]);
    expect(statements()[0]!.sort()).toEqual([doomed!.id, b!.id, c!.id].sort());
    expect(batcher.stats.madeAlone - madeAlone).toBe(3);
    const [d, rb, rc] = responses;
    expect([d!.status, d!.body.error?.code]).toEqual([503, 'SERVICE_UNAVAILABLE']);
    expect([rb!.status, rb!.body.first_name, rc!.status, rc!.body.first_name]).toEqual([200, 'Made B', 200, 'Made C']);
    const rows = await t.sql<{ first_name: string; version: number }>('SELECT first_name, version FROM users WHERE id = ANY($1)', [[doomed!.id, b!.id, c!.id]]);
    expect(rows.map((r) => `${r.first_name} v${r.version}`).sort()).toEqual(['Made B v2', 'Made C v2', 'fail0 v1']);
    expect((await updatedEvents([doomed!.id, b!.id, c!.id])).map((e) => e.user_id).sort()).toEqual([b!.id, c!.id].sort());
    // The API serves on.
    await t.http().patch(`/v2/users/${doomed!.id}`).set(auth()).send({ first_name: 'Later' }).expect(200);
  });
});
