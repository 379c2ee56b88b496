import { createTestApp, slowUserWrites, TEST_BOOTSTRAP_KEY, TestApp, whileHeld } from '@app/testing';
import type { Response } from 'supertest';
import { UserCreateBatcher } from '../apps/api/src/modules/users/user-create-batcher';
import { UserCreate, UsersRepository } from '../apps/api/src/modules/users/users.repository';

/**
 * Concurrent POST /users share statements (UserCreateBatcher, UsersRepository.createMany). With
 * one shared statement in flight (USERS_CREATE_BATCH_IN_FLIGHT=1), the requests that arrive while
 * it runs are gathered into the next. To make that happen on cue, a trigger of this test's own
 * database makes the insert of a first name starting with "Slow" take 0.7 s, and one of "Explode"
 * outlast the 1.5 s statement timeout.
 *
 * These tests prove that a shared statement gives each request exactly the answer it would have
 * had alone (its user, its role, its 409 or 422, its event), across organizations; that a role held
 * by another transaction delays only its own request; and that a shared statement that fails wrote
 * nothing and costs no other request its user. Creates in an organization whose plan limits monthly
 * active users are made alone, in that limit's transaction.
 */

interface UserBody {
  id: string;
  email: string;
  first_name: string;
  last_name: string;
  role: string;
  roles: { name: string; permissions: string[] }[];
  metadata: Record<string, unknown>;
  [key: string]: unknown;
}

describe('Users: concurrent creates share statements', () => {
  let t: TestApp;
  let admin: string;
  let org: { id: string; token: string };
  let batcher: UserCreateBatcher;
  let shared: jest.SpyInstance<ReturnType<UsersRepository['createMany']>, [readonly UserCreate[]]>;
  let slowCount = 0;
  const auth = (tok: string) => ({ Authorization: `Bearer ${tok}` });

  const tokenFor = async (apiKey: string) =>
    (await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: apiKey }).expect(200)).body.access_token as string;
  const newOrg = async (name: string, plan = 'enterprise') => {
    const res = await t.http().post('/v2/admin/organizations').set(auth(admin)).send({ name, plan }).expect(201);
    return { id: res.body.organization.id as string, token: await tokenFor(res.body.api_key.key) };
  };
  const create = (body: Record<string, unknown>, tok = org.token) => () => t.http().post('/v2/users').set(auth(tok)).send(body);
  const createdEvents = async (emails: string[]) => {
    await t.drainEvents();
    return t.sql<{ organization_id: string; email: string; data: { user: Record<string, unknown>; send_welcome_email: boolean } }>(
      `SELECT organization_id, data->'user'->>'email' AS email, data FROM outbox_events
        WHERE type = 'user.created' AND data->'user'->>'email' = ANY($1) ORDER BY seq`,
      [emails],
    );
  };
  const until = async (what: string, condition: () => boolean) => {
    for (const deadline = Date.now() + 5000; !condition(); ) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (queued: ${batcher?.queued})`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  /** The emails of each shared statement run since `from` (an index into the spy's calls). */
  const statementsSince = (from: number) => shared.mock.calls.slice(from).map(([creates]) => creates.map((c) => c.user.email));
  /**
   * Sends the requests while a slow create holds the only slot, waits until all of them are
   * queued, then lets them go: they are gathered as the batcher gathers them under load.
   */
  const gathered = async (requests: (() => PromiseLike<Response>)[]) => {
    const calls = shared.mock.calls.length;
    const n = ++slowCount;
    const holder = create({ email: `slow${n}@create.example`, first_name: `Slow ${n}`, last_name: 'Holder' })().then((r) => r);
    await until('the slow create to take the slot', () => shared.mock.calls.length > calls);
    const sent = requests.map((send) => send().then((r) => r));
    await until(`${requests.length} queued creates`, () => batcher.queued === requests.length);
    expect((await holder).status).toBe(201);
    return { responses: await Promise.all(sent), statements: () => statementsSince(calls + 1) };
  };

  beforeAll(async () => {
    t = await createTestApp({ USERS_CREATE_BATCH_IN_FLIGHT: '1', DATABASE_STATEMENT_TIMEOUT_MS: '1500' });
    admin = await tokenFor(TEST_BOOTSTRAP_KEY);
    org = await newOrg('Create Batch Org');
    batcher = t.app.get(UserCreateBatcher);
    shared = jest.spyOn(t.app.get(UsersRepository), 'createMany');
    await slowUserWrites(t, 'INSERT');
  });
  afterAll(async () => {
    shared?.mockRestore();
    await t?.close();
  });

  it('30 concurrent creates: shared statements, each answer is its own user, each user gets one user.created, activity and sign-in sort keys', async () => {
    const emails = Array.from({ length: 30 }, (_, i) => `many${i}@create.example`);
    const calls = shared.mock.calls.length;
    const responses = await Promise.all(emails.map((email, i) => create({ email, first_name: `Many ${i} Ünïcødé`, last_name: 'Batch', metadata: { n: i } })()));
    const statements = statementsSince(calls);
    expect(statements.length).toBeLessThan(30);
    expect(Math.max(...statements.map((s) => s.length))).toBeGreaterThan(1);
    expect(statements.flat().sort()).toEqual([...emails].sort());
    responses.forEach((res, i) => {
      const body = res.body as UserBody;
      expect({ status: res.status, email: body.email, first_name: body.first_name, metadata: body.metadata, role: body.role, etag: res.headers.etag }).toEqual({
        status: 201,
        email: emails[i],
        first_name: `Many ${i} Ünïcødé`,
        metadata: { n: i },
        role: 'user',
        etag: `"${body.id}.v1"`,
      });
      expect(body.roles.map((r) => r.name)).toEqual(['user']);
    });
    const ids = responses.map((r) => (r.body as UserBody).id);
    expect(new Set(ids).size).toBe(30);
    const rows = await t.sql<{ id: string; email: string; organization_id: string; version: number }>('SELECT id, email, organization_id, version FROM users WHERE id = ANY($1)', [ids]);
    for (const [i, id] of ids.entries()) expect(rows.find((r) => r.id === id)).toEqual({ id, email: emails[i], organization_id: org.id, version: 1 });
    const events = await createdEvents(emails);
    expect(events).toHaveLength(30);
    for (const [i, email] of emails.entries()) {
      expect(events.find((e) => e.email === email)!.data.user).toMatchObject({ id: ids[i], email, first_name: `Many ${i} Ünïcødé`, role: 'user' });
    }
    expect(await t.sql('SELECT user_id FROM user_activity_months WHERE user_id = ANY($1)', [ids])).toHaveLength(30);
    expect(await t.sql(`SELECT user_id FROM user_login_sort_keys WHERE user_id = ANY($1) AND login_count = 0 AND last_login = '-infinity'`, [ids])).toHaveLength(30);
    // Each is found by the API as any user is.
    for (const id of ids.slice(0, 3)) await t.http().get(`/v2/users/${id}`).set(auth(org.token)).expect(200);
  });

  it('one shared statement with every kind of answer: a taken email, one email twice, an unknown role, a custom role by name and by id, a password, metacharacters', async () => {
    await t.http().post('/v2/users').set(auth(org.token)).send({ email: 'taken@create.example', first_name: 'Already', last_name: 'There' }).expect(201);
    const role = (await t.http().post('/v2/roles').set(auth(org.token)).send({ name: 'auditor', permissions: ['user:read', 'reports:view'] }).expect(201)).body as { id: string };
    const sneaky = `O'Brien"; DROP TABLE users; --`;
    const { responses, statements } = await gathered([
      create({ email: '  TAKEN@create.example ', first_name: 'Again', last_name: 'Taken' }),
      create({ email: 'twice@create.example', first_name: 'First', last_name: 'Twice' }),
      create({ email: 'TWICE@create.example', first_name: 'Second', last_name: 'Twice' }),
      create({ email: 'norole@create.example', first_name: 'No', last_name: 'Role', role: 'no-such-role' }),
      create({ email: 'byname@create.example', first_name: 'By', last_name: 'Name', role: 'auditor' }),
      create({ email: 'byid@create.example', first_name: 'By', last_name: 'Id', role: role.id }),
      create({ email: 'pw@create.example', first_name: 'Pass', last_name: 'Word', password: 'Correct-Horse-42', send_welcome_email: true }),
      create({ email: "o'meta_x+1@create.example", first_name: sneaky, last_name: '%_\\', metadata: { q: "' OR 1=1 --" } }),
    ]);
    expect(statements()[0]).toHaveLength(8);
    expect(responses.map((r) => [r.status, r.body.error?.code ?? r.body.email])).toEqual([
      [409, 'USER_ALREADY_EXISTS'],
      [201, 'twice@create.example'],
      [409, 'USER_ALREADY_EXISTS'],
      [422, 'INVALID_ROLE'],
      [201, 'byname@create.example'],
      [201, 'byid@create.example'],
      [201, 'pw@create.example'],
      [201, "o'meta_x+1@create.example"],
    ]);
    const [, first, , , byName, byId, pw, meta] = responses.map((r) => r.body as UserBody);
    expect(first!.first_name).toBe('First');
    for (const u of [byName!, byId!]) {
      expect(u.role).toBe('auditor');
      expect(u.roles).toEqual([expect.objectContaining({ name: 'auditor', permissions: ['user:read', 'reports:view'] })]);
    }
    expect([meta!.first_name, meta!.last_name, meta!.metadata]).toEqual([sneaky, '%_\\', { q: "' OR 1=1 --" }]);
    // The password was stored (argon2id): the user can sign in.
    await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: org.id, email: 'pw@create.example', password: 'Correct-Horse-42' }).expect(200);
    expect(pw!.password_hash).toBeUndefined();
    const rows = await t.sql<{ email: string; first_name: string }>(
      `SELECT email, first_name FROM users WHERE organization_id = $1 AND email_lower = ANY($2) ORDER BY email`,
      [org.id, ['taken@create.example', 'twice@create.example', 'norole@create.example']],
    );
    expect(rows).toEqual([{ email: 'taken@create.example', first_name: 'Already' }, { email: 'twice@create.example', first_name: 'First' }]);
    const events = await createdEvents(['twice@create.example', 'TWICE@create.example', 'norole@create.example', 'byname@create.example', 'byid@create.example', 'pw@create.example']);
    expect(events.map((e) => [e.email, e.data.user.role, e.data.send_welcome_email])).toEqual([
      ['twice@create.example', 'user', false],
      ['byname@create.example', 'auditor', false],
      ['byid@create.example', 'auditor', false],
      ['pw@create.example', 'user', true],
    ]);
  });

  it('creates of two organizations share a statement: one email in both is two users, and neither can name the other\'s role', async () => {
    const other = await newOrg('Create Batch Other Org');
    const theirRole = (await t.http().post('/v2/roles').set(auth(other.token)).send({ name: 'their-role', permissions: ['user:read'] }).expect(201)).body as { id: string };
    const { responses, statements } = await gathered([
      create({ email: 'both@create.example', first_name: 'Home', last_name: 'Org' }),
      create({ email: 'both@create.example', first_name: 'Away', last_name: 'Org' }, other.token),
      create({ email: 'thief@create.example', first_name: 'Role', last_name: 'Thief', role: theirRole.id }),
      create({ email: 'thief2@create.example', first_name: 'Role', last_name: 'Thief', role: 'their-role' }),
    ]);
    expect(statements()[0]).toHaveLength(4);
    expect(responses.map((r) => [r.status, r.body.error?.code ?? r.body.first_name])).toEqual([
      [201, 'Home'],
      [201, 'Away'],
      [422, 'INVALID_ROLE'],
      [422, 'INVALID_ROLE'],
    ]);
    const rows = await t.sql<{ organization_id: string; first_name: string }>(`SELECT organization_id, first_name FROM users WHERE email_lower = 'both@create.example' ORDER BY first_name`);
    expect(rows).toEqual([{ organization_id: other.id, first_name: 'Away' }, { organization_id: org.id, first_name: 'Home' }]);
    expect(await t.sql(`SELECT 1 FROM users WHERE email_lower LIKE 'thief%'`)).toEqual([]);
    // Each organization sees its own user only.
    const mine = (responses[0]!.body as UserBody).id;
    const theirs = (responses[1]!.body as UserBody).id;
    await t.http().get(`/v2/users/${theirs}`).set(auth(org.token)).expect(404);
    await t.http().get(`/v2/users/${mine}`).set(auth(other.token)).expect(404);
    const events = await createdEvents(['both@create.example']);
    expect(events.map((e) => [e.organization_id, e.data.user.first_name]).sort()).toEqual([[org.id, 'Home'], [other.id, 'Away']].sort());
  });

  it('a role held by another transaction delays only its own create: the shared statement answers the others, and it is made alone once the role is free', async () => {
    const role = (await t.http().post('/v2/roles').set(auth(org.token)).send({ name: 'held-role', permissions: ['user:read'] }).expect(201)).body as { id: string };
    await whileHeld(t, 'SELECT 1 FROM roles WHERE id = $1 FOR UPDATE', [role.id], async (blocker) => {
      const madeAlone = batcher.stats.madeAlone;
      let heldAnswered = false;
      const calls = shared.mock.calls.length;
      const n = ++slowCount;
      const holder = create({ email: `slow${n}@create.example`, first_name: `Slow ${n}`, last_name: 'Holder' })().then((r) => r);
      await until('the slow create to take the slot', () => shared.mock.calls.length > calls);
      const heldRequest = create({ email: 'heldrole@create.example', first_name: 'Held', last_name: 'Role', role: 'held-role' })().then((r) => {
        heldAnswered = true;
        return r;
      });
      const others = [create({ email: 'free1@create.example', first_name: 'Free', last_name: 'One' })().then((r) => r), create({ email: 'free2@create.example', first_name: 'Free', last_name: 'Two' })().then((r) => r)];
      await until('3 queued creates', () => batcher.queued === 3);
      expect((await holder).status).toBe(201);
      expect((await Promise.all(others)).map((r) => [r.status, r.body.last_name])).toEqual([[201, 'One'], [201, 'Two']]);
      expect(statementsSince(calls + 1)[0]!.sort()).toEqual(['free1@create.example', 'free2@create.example', 'heldrole@create.example']);
      expect(batcher.stats.madeAlone - madeAlone).toBe(1);
      expect(heldAnswered).toBe(false);
      await blocker.commitTransaction();
      const res = await heldRequest;
      expect([res.status, res.body.role]).toEqual([201, 'held-role']);
    });
  });

  it('a shared statement that fails is made create by create: only the create that cannot be made fails, and nothing of it is written', async () => {
    const madeAlone = batcher.stats.madeAlone;
    const { responses, statements } = await gathered([
      create({ email: 'doomed@create.example', first_name: 'Explode', last_name: 'Doomed' }),
      create({ email: 'fine1@create.example', first_name: 'Fine', last_name: 'One' }),
      create({ email: 'fine2@create.example', first_name: 'Fine', last_name: 'Two' }),
    ]);
    expect(statements()[0]).toEqual(['doomed@create.example', 'fine1@create.example', 'fine2@create.example']);
    expect(batcher.stats.madeAlone - madeAlone).toBe(3);
    expect(responses.map((r) => [r.status, r.body.error?.code ?? r.body.last_name])).toEqual([
      [503, 'SERVICE_UNAVAILABLE'],
      [201, 'One'],
      [201, 'Two'],
    ]);
    const rows = await t.sql<{ email: string }>(`SELECT email FROM users WHERE email IN ('doomed@create.example', 'fine1@create.example', 'fine2@create.example') ORDER BY email`);
    expect(rows.map((r) => r.email)).toEqual(['fine1@create.example', 'fine2@create.example']);
    expect((await createdEvents(['doomed@create.example', 'fine1@create.example', 'fine2@create.example'])).map((e) => e.email).sort()).toEqual(['fine1@create.example', 'fine2@create.example']);
    // The API serves on, and the email is free.
    await create({ email: 'doomed@create.example', first_name: 'Later', last_name: 'Doomed' })().expect(201);
  });

  it('creates in an organization whose plan limits monthly active users are made alone, in the limit\'s transaction', async () => {
    const limited = await newOrg('Create Batch Limited Org', 'professional');
    const calls = shared.mock.calls.length;
    const responses = await Promise.all([1, 2, 3].map((i) => create({ email: `limited${i}@create.example`, first_name: 'Limited', last_name: `${i}` }, limited.token)()));
    expect(responses.map((r) => r.status)).toEqual([201, 201, 201]);
    expect(shared.mock.calls.slice(calls).flat().flat().filter((c) => c.organizationId === limited.id)).toEqual([]);
  });
});
