import { createTestApp, qs, TEST_BOOTSTRAP_KEY, TestApp } from '@app/testing';

/**
 * Sorting by `last_login` and `login_count` (seed §4.1, CONTRACT §7) reads user_login_sort_keys, a
 * narrow table of each user's sign-in keys with indexes in that order (migration UserLoginSortKeys).
 * These tests prove that the table always agrees with the users' rows, whatever wrote them, and that
 * lists, searches and cursor walks come out in the documented order: never-signed-in users are the
 * oldest, ties are broken by id in the direction of the last key.
 */

interface UserBody {
  id: string;
  email: string;
  last_login: string | null;
  login_count: number;
  [key: string]: unknown;
}
interface Page {
  data: UserBody[];
  pagination: { next_cursor: string | null; has_more: boolean; total?: number; total_estimate?: number };
}

const PASSWORD = 'Correct-Horse-42';

describe('Users: sorting by sign-ins (last_login, login_count)', () => {
  let t: TestApp;
  let token: string;
  let orgId: string;
  const users: Record<string, UserBody> = {};

  const tokenFor = async (apiKey: string) =>
    (await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: apiKey }).expect(200)).body.access_token as string;
  const get = async (path: string, tok = token): Promise<Page> => {
    const res = await t.http().get(path).set('Authorization', `Bearer ${tok}`);
    expect({ path, status: res.status, body: res.body }).toMatchObject({ status: 200 });
    return res.body as Page;
  };
  const createUser = async (body: Record<string, unknown>, tok = token): Promise<UserBody> => {
    const res = await t.http().post('/v2/users').set('Authorization', `Bearer ${tok}`).send(body);
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 201 });
    return res.body as UserBody;
  };
  const signIn = async (email: string, password = PASSWORD, organizationId = orgId) =>
    t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: organizationId, email, password });
  /** Every page of a keyset walk. */
  const walk = async (path: string, params: Record<string, string | number | undefined>) => {
    const pages = [await get(`${path}?${qs(params)}`)];
    while (pages[pages.length - 1]!.pagination.next_cursor) {
      pages.push(await get(`${path}?${qs({ cursor: pages[pages.length - 1]!.pagination.next_cursor! })}`));
      if (pages.length > 50) throw new Error('cursor walk does not end');
    }
    return pages.flatMap((p) => p.data.map((u) => u.id));
  };
  /** The ids in `order` (SQL over the users table itself, not the sort keys), live users of this organization. */
  const expected = async (order: string, where = 'TRUE') =>
    (await t.sql<{ id: string }>(
      `SELECT u.id FROM users u WHERE u.organization_id = $1 AND u.deleted_at IS NULL AND ${where} ORDER BY ${order}`,
      [orgId],
    )).map((r) => r.id);
  /** Rows where user_login_sort_keys and users disagree, or where one has a row the other lacks. */
  const disagreements = () =>
    t.sql(
      `SELECT u.id AS user_id, k.user_id AS key_user_id
         FROM users u FULL JOIN user_login_sort_keys k ON k.user_id = u.id
        WHERE u.id IS NULL OR k.user_id IS NULL OR k.organization_id <> u.organization_id
           OR k.last_login <> COALESCE(u.last_login, '-infinity') OR k.login_count <> u.login_count`,
    );

  beforeAll(async () => {
    t = await createTestApp();
    token = await tokenFor(TEST_BOOTSTRAP_KEY);
    for (const name of ['ada', 'ben', 'cy', 'dee']) {
      users[name] = await createUser({ email: `${name}@sort.example`, first_name: name, last_name: 'Sort', password: PASSWORD });
    }
    const res = await t.http().post('/v2/users/bulk').set('Authorization', `Bearer ${token}`).send({
      users: ['eve', 'fay', 'gus'].map((name) => ({ email: `${name}@sort.example`, first_name: name, last_name: 'Sort', password: PASSWORD })),
    });
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 200, body: { summary: { successful: 3 } } });
    for (const item of res.body.results as { user: UserBody }[]) users[item.user.first_name as string] = item.user;
    orgId = (await t.sql<{ organization_id: string }>('SELECT organization_id FROM users WHERE id = $1', [users.ada!.id]))[0]!.organization_id;
  });
  afterAll(async () => {
    await t.close();
  });

  it('every user has sort keys equal to their row: after create, bulk create, sign-ins, a failed sign-in, soft and hard delete', async () => {
    const [fresh] = await t.sql<{ last_login: string; login_count: number }>(
      `SELECT last_login::text, login_count FROM user_login_sort_keys WHERE user_id = $1`,
      [users.eve!.id],
    );
    expect(fresh).toEqual({ last_login: '-infinity', login_count: 0 });

    // ben signs in three times, dee twice, fay once; ada only fails.
    for (const name of ['ben', 'dee', 'ben', 'fay', 'ben', 'dee']) expect((await signIn(users[name]!.email)).status).toBe(200);
    expect((await signIn(users.ada!.email, 'Wrong-Horse-42')).status).toBe(401);
    expect(await disagreements()).toEqual([]);
    const [ben] = await t.sql<{ login_count: number; same: boolean }>(
      `SELECT k.login_count, k.last_login = u.last_login AS same FROM user_login_sort_keys k JOIN users u ON u.id = k.user_id WHERE k.user_id = $1`,
      [users.ben!.id],
    );
    expect(ben).toEqual({ login_count: 3, same: true });

    // A user without keys (created by an older version's instance during an upgrade) gets them back at their next sign-in.
    await t.sql('DELETE FROM user_login_sort_keys WHERE user_id = $1', [users.gus!.id]);
    expect((await signIn(users.gus!.email)).status).toBe(200);
    expect(await disagreements()).toEqual([]);

    // A soft-deleted user keeps their keys (a restore brings them back as they were); a hard delete removes them.
    const doomed = await createUser({ email: 'doomed@sort.example', first_name: 'Doomed', last_name: 'Sort', password: PASSWORD });
    expect((await signIn(doomed.email)).status).toBe(200);
    await t.http().delete(`/v2/users/${doomed.id}?soft_delete=true`).set('Authorization', `Bearer ${token}`).expect(200);
    expect(await disagreements()).toEqual([]);
    await t.http().delete(`/v2/users/${doomed.id}`).set('Authorization', `Bearer ${token}`).expect(200);
    expect(await t.sql('SELECT 1 FROM user_login_sort_keys WHERE user_id = $1', [doomed.id])).toEqual([]);
    expect(await disagreements()).toEqual([]);
  });

  it('GET /users sorts by last_login and login_count in both directions: never signed in is oldest, ties by id', async () => {
    const lastLoginDesc = await expected(`COALESCE(u.last_login, '-infinity') DESC, u.id DESC`);
    const lastLoginAsc = await expected(`COALESCE(u.last_login, '-infinity') ASC, u.id ASC`);
    const countDesc = await expected('u.login_count DESC, u.id DESC');
    const countAsc = await expected('u.login_count ASC, u.id ASC');
    expect(lastLoginDesc.slice(0, 4)).toEqual([users.gus!.id, users.dee!.id, users.ben!.id, users.fay!.id]);
    expect(countDesc.slice(0, 2)).toEqual([users.ben!.id, users.dee!.id]);

    for (const [sort, order] of [['last_login:desc', lastLoginDesc], ['last_login:asc', lastLoginAsc], ['login_count:desc', countDesc], ['login_count:asc', countAsc]] as const) {
      // Offset mode, one page and two pages.
      expect({ sort, ids: (await get(`/v2/users?${qs({ sort, limit: 100 })}`)).data.map((u) => u.id) }).toEqual({ sort, ids: order });
      const second = await get(`/v2/users?${qs({ sort, limit: 3, offset: 3 })}`);
      expect({ sort, ids: second.data.map((u) => u.id), total: second.pagination.total }).toEqual({ sort, ids: order.slice(3, 6), total: order.length });
      // Keyset mode: every user once, in order, two to a page.
      expect({ sort, ids: await walk('/v2/users', { sort, limit: 2 }) }).toEqual({ sort, ids: order });
    }
  });

  it('GET /users/search: sign-in sorts with filters, q, several keys in mixed directions, fields and cursors', async () => {
    const active = await expected(`COALESCE(u.last_login, '-infinity') DESC, u.id DESC`, 'u.login_count >= 1');
    const filters = JSON.stringify({ login_count: { gte: 1 } });
    expect(await walk('/v2/users/search', { filters, sort: 'last_login:desc', limit: 1 })).toEqual(active);
    expect(await walk('/v2/users/search', { q: 'sort.example', sort: 'last_login:desc', limit: 2 })).toEqual(
      await expected(`COALESCE(u.last_login, '-infinity') DESC, u.id DESC`),
    );

    // Filters on the sign-in fields with a sign-in sort read the sort's keys (a range of its index):
    // the same users, and the same estimate of their number.
    for (const [filter, where] of [
      [{ last_login: { gt: '2000-01-01' } }, `u.last_login > '2000-01-02'`],
      [{ last_login: { lt: '2100-01-01' } }, 'TRUE'],
      [{ last_login: { lte: '1999-12-31' } }, 'u.last_login IS NULL'],
      [{ login_count: { in: [0, 2] } }, 'u.login_count IN (0, 2)'],
      [{ login_count: { ne: 3 }, last_login: { ne: '2000-01-01' } }, 'u.login_count <> 3'],
    ] as const) {
      const want = await expected(`COALESCE(u.last_login, '-infinity') DESC, u.id DESC`, where);
      const filters = JSON.stringify(filter);
      expect({ filters, ids: await walk('/v2/users/search', { filters, sort: 'last_login:desc', limit: 2 }) }).toEqual({ filters, ids: want });
      const first = await get(`/v2/users/search?${qs({ filters, sort: 'login_count:asc', limit: 1 })}`);
      expect({ filters, total: first.pagination.total_estimate }).toEqual({ filters, total: want.length });
    }

    // login_count descending, then email ascending; the id breaks ties in the last key's direction.
    const mixed = await expected('u.login_count DESC, u.email_lower ASC, u.id ASC');
    expect(await walk('/v2/users/search', { sort: JSON.stringify(['login_count:desc', 'email:asc']), limit: 2 })).toEqual(mixed);
    // A name first, the sign-in keys after it.
    const nameFirst = await expected(`u.last_name ASC, COALESCE(u.last_login, '-infinity') DESC, u.id DESC`);
    expect(await walk('/v2/users/search', { sort: 'last_name:asc,last_login:desc', limit: 3 })).toEqual(nameFirst);

    const projected = await get(`/v2/users/search?${qs({ sort: 'login_count:desc', fields: 'email,login_count,last_login', limit: 1 })}`);
    expect(projected.data).toEqual([{ id: users.ben!.id, email: users.ben!.email, login_count: 3, last_login: expect.stringMatching(/Z$/) }]);
  });

  it('another organization’s users, however often they sign in, never appear in these sorts', async () => {
    const org = await t.http().post('/v2/admin/organizations').set('Authorization', `Bearer ${token}`).send({ name: 'Other', plan: 'professional' });
    expect({ status: org.status, body: org.body }).toMatchObject({ status: 201 });
    const otherToken = await tokenFor(org.body.api_key.key as string);
    const stranger = await createUser({ email: 'stranger@sort.example', first_name: 'Stranger', last_name: 'Sort', password: PASSWORD }, otherToken);
    for (let i = 0; i < 4; i++) expect((await signIn(stranger.email, PASSWORD, org.body.organization.id as string)).status).toBe(200);
    const mine = await expected('u.login_count DESC, u.id DESC');
    expect(await walk('/v2/users', { sort: 'login_count:desc', limit: 3 })).toEqual(mine);
    expect((await get(`/v2/users?${qs({ sort: 'last_login:desc' })}`, otherToken)).data.map((u) => u.id)).toEqual([stranger.id]);
    expect(await disagreements()).toEqual([]);
  });
});
