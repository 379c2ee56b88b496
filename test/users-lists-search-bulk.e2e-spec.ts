import { createTestApp, qs, TEST_BOOTSTRAP_KEY, TestApp } from '@app/testing';
import { UsersRepository } from '../apps/api/src/modules/users/users.repository';

/**
 * GET /users (offset and keyset mode), GET /users/search, POST /users/bulk and tenant isolation
 * (CONTRACT §6, §7, §8; seed §4.1, §7.1, §7.4, §8.2). Everything goes through HTTP; the database is
 * read to check what the answers claim.
 */

interface UserBody {
  id: string;
  email: string;
  first_name: string;
  last_name: string;
  role: string | null;
  status: string;
  created_at: string;
  [key: string]: unknown;
}

interface Page {
  data: UserBody[];
  pagination: Record<string, unknown> & { next_cursor: string | null; has_more: boolean };
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';
/** Lower-case letters only: sorts the same under every collation, never contains LIKE metacharacters. */
const tag = (length = 8) => Array.from({ length }, () => LETTERS[Math.floor(Math.random() * 26)]).join('');
const cap = (s: string) => s[0]!.toUpperCase() + s.slice(1);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('Users: lists, cursors, search and bulk (CONTRACT §7, §8)', () => {
  let t: TestApp;
  let token: string;
  let orgId: string;

  const tokenFor = async (apiKey: string) => {
    const res = await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: apiKey }).expect(200);
    return res.body.access_token as string;
  };
  const get = (path: string, tok = token) => t.http().get(path).set('Authorization', `Bearer ${tok}`);
  const list = async (params: Record<string, string | number | undefined>, tok = token): Promise<Page> => {
    const res = await get(`/v2/users?${qs(params)}`, tok);
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 200 });
    return res.body as Page;
  };
  const search = async (params: Record<string, string | number | undefined>, tok = token): Promise<Page> => {
    const res = await get(`/v2/users/search?${qs(params)}`, tok);
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 200 });
    return res.body as Page;
  };
  const createUser = async (body: Record<string, unknown>, tok = token): Promise<UserBody> => {
    const res = await t.http().post('/v2/users').set('Authorization', `Bearer ${tok}`).send(body);
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 201 });
    return res.body as UserBody;
  };
  const updateUser = async (id: string, body: Record<string, unknown>) => {
    const res = await t.http().put(`/v2/users/${id}`).set('Authorization', `Bearer ${token}`).send(body);
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 200 });
    return res.body as UserBody;
  };
  const deleteUser = async (id: string) => {
    const res = await t.http().delete(`/v2/users/${id}`).set('Authorization', `Bearer ${token}`);
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 200 });
  };
  const bulk = (body: unknown, tok = token) => t.http().post('/v2/users/bulk').set('Authorization', `Bearer ${tok}`).send(body as object);
  const ids = (page: Page) => page.data.map((u) => u.id);
  const sorted = (values: string[]) => [...values].sort();
  const countUsers = async (organizationId = orgId) =>
    (await t.sql<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE organization_id = $1', [organizationId]))[0]!.n;
  /** Walks every page of a keyset walk, starting from `first`. */
  const walk = async (path: '/v2/users' | '/v2/users/search', params: Record<string, string | number | undefined>, tok = token) => {
    const fetchPage = path === '/v2/users' ? list : search;
    const pages: Page[] = [await fetchPage(params, tok)];
    while (pages[pages.length - 1]!.pagination.next_cursor) {
      pages.push(await fetchPage({ ...params, cursor: pages[pages.length - 1]!.pagination.next_cursor! }, tok));
      if (pages.length > 200) throw new Error('cursor walk does not end');
    }
    return pages;
  };
  const expectError = (res: { status: number; body: { error?: { code?: string } } }, status: number, code: string, what: string) => {
    expect({ what, status: res.status, code: res.body.error?.code }).toEqual({ what, status, code });
  };

  beforeAll(async () => {
    t = await createTestApp();
    token = await tokenFor(TEST_BOOTSTRAP_KEY);
    const probe = await createUser({ email: `${tag()}probe@example.com`, first_name: 'Probe', last_name: 'User' });
    orgId = (await t.sql<{ organization_id: string }>('SELECT organization_id FROM users WHERE id = $1', [probe.id]))[0]!.organization_id;
  });
  afterAll(async () => {
    await t.close();
  });

  it('GET /users offset mode: default limit, pagination, filters, search, sort, compact form, bad parameters', async () => {
    const tg = tag();
    const created: UserBody[] = [];
    for (let i = 0; i < 30; i++) {
      const role = i < 4 ? 'admin' : i < 7 ? 'moderator' : undefined;
      created.push(await createUser({ email: `${tg}${tag(6)}@example.com`, first_name: cap(tag(6)), last_name: cap(tag(7)), ...(role ? { role } : {}) }));
    }

    // Default limit 25 over the whole organization, total from the database.
    const all = await list({});
    const dbTotal = (await t.sql<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE organization_id = $1 AND deleted_at IS NULL', [orgId]))[0]!.n;
    expect(dbTotal).toBeGreaterThan(25);
    expect(all.data).toHaveLength(25);
    expect(Object.keys(all.pagination).sort()).toEqual(['has_more', 'limit', 'next_cursor', 'offset', 'total']);
    expect(all.pagination).toMatchObject({ total: dbTotal, limit: 25, offset: 0, has_more: true });
    expect(typeof all.pagination.next_cursor).toBe('string');

    // Compact form: no roles, permissions or secrets.
    for (const u of all.data) {
      for (const key of ['roles', 'permissions', 'password', 'password_hash', 'preferences']) expect(u).not.toHaveProperty(key);
      expect(u).toEqual(expect.objectContaining({ id: expect.stringMatching(/^user_/), email: expect.any(String), first_name: expect.any(String), last_name: expect.any(String), status: expect.any(String) }));
      expect(u).toHaveProperty('role');
      expect(u.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    }

    // limit / offset over this test's 30 users.
    const everything = await list({ search: tg, limit: 100 });
    expect(everything.pagination).toMatchObject({ total: 30, limit: 100, offset: 0, has_more: false, next_cursor: null });
    expect(sorted(ids(everything))).toEqual(sorted(created.map((u) => u.id)));
    const p1 = await list({ search: tg, limit: 10 });
    const p2 = await list({ search: tg, limit: 10, offset: 10 });
    const p3 = await list({ search: tg, limit: 10, offset: 20 });
    const tail = await list({ search: tg, limit: 10, offset: 25 });
    expect(p1.pagination).toMatchObject({ total: 30, limit: 10, offset: 0, has_more: true });
    expect(p3.pagination).toMatchObject({ total: 30, limit: 10, offset: 20, has_more: false, next_cursor: null });
    expect([...ids(p1), ...ids(p2), ...ids(p3)]).toEqual(ids(everything));
    expect(ids(tail)).toEqual(ids(everything).slice(25));
    expect((await list({ search: tg, offset: 30 })).data).toEqual([]);

    // role filter.
    const admins = await list({ search: tg, role: 'admin', limit: 100 });
    expect(sorted(ids(admins))).toEqual(sorted(created.slice(0, 4).map((u) => u.id)));
    expect(admins.pagination.total).toBe(4);
    expect(admins.data.every((u) => u.role === 'admin')).toBe(true);
    const moderators = await list({ search: tg, role: 'moderator', limit: 100 });
    expect(sorted(ids(moderators))).toEqual(sorted(created.slice(4, 7).map((u) => u.id)));
    expect((await list({ search: tg, role: 'nosuchrole' })).data).toEqual([]);

    // status filter.
    await updateUser(created[10]!.id, { status: 'suspended' });
    await updateUser(created[11]!.id, { status: 'suspended' });
    const suspended = await list({ search: tg, status: 'suspended', limit: 100 });
    expect(sorted(ids(suspended))).toEqual(sorted([created[10]!.id, created[11]!.id]));
    expect(suspended.data.every((u) => u.status === 'suspended')).toBe(true);
    const active = await list({ search: tg, status: 'active', limit: 100 });
    expect(active.pagination.total).toBe(28);
    expect(ids(active)).not.toContain(created[10]!.id);

    // search: case-insensitive substring of first name, last name or email.
    const mk = `zq${tag(6)}`;
    const byFirst = await createUser({ email: `${tag()}first@example.com`, first_name: `Pre${mk.toUpperCase()}post`, last_name: 'Plain' });
    const byLast = await createUser({ email: `${tag()}last@example.com`, first_name: 'Plain', last_name: `${cap(mk)}son` });
    const byEmail = await createUser({ email: `r${mk}@example.com`, first_name: 'Plain', last_name: 'Plain' });
    for (const term of [mk, mk.toUpperCase(), cap(mk), mk.slice(1, 6)]) {
      const found = await list({ search: term, limit: 100 });
      expect({ term, ids: sorted(ids(found)) }).toEqual({ term, ids: sorted([byFirst.id, byLast.id, byEmail.id]) });
    }
    expect(ids(await list({ search: `r${mk}@EXAMPLE.com` }))).toEqual([byEmail.id]);
    expect((await list({ search: `${mk}nomatch` })).data).toEqual([]);

    // sort.
    const byEmailAsc = await list({ search: tg, sort: 'email:asc', limit: 100 });
    expect(byEmailAsc.data.map((u) => u.email)).toEqual(created.map((u) => u.email).sort());
    const byEmailDesc = await list({ search: tg, sort: 'email:desc', limit: 100 });
    expect(byEmailDesc.data.map((u) => u.email)).toEqual(created.map((u) => u.email).sort().reverse());
    const newestFirst = await list({ search: tg, sort: 'created_at:desc', limit: 100 });
    expect(ids(newestFirst)).toEqual(created.map((u) => u.id).reverse());
    const oldestFirst = await list({ search: tg, sort: 'created_at:asc', limit: 100 });
    expect(ids(oldestFirst)).toEqual(created.map((u) => u.id));
    const byLastName = await list({ search: tg, sort: 'last_name:asc', limit: 100 });
    expect(byLastName.data.map((u) => u.last_name)).toEqual(created.map((u) => u.last_name).sort());
    const byFirstName = await list({ search: tg, sort: 'first_name:desc', limit: 100 });
    expect(byFirstName.data.map((u) => u.first_name)).toEqual(created.map((u) => u.first_name).sort().reverse());

    // Bad query parameters: 400 VALIDATION_ERROR.
    for (const q of ['limit=0', 'limit=101', 'limit=abc', 'limit=1.5', 'limit=0x10', 'limit=1e1', 'limit=%2B5', 'limit=%205', 'offset=1e3', 'offset=-1', 'sort=password:asc', 'sort=password_hash:desc', 'sort=email:up', 'sort=email:asc:x', 'status=bogus', 'unknown=1']) {
      const res = await get(`/v2/users?${q}`);
      expectError(res, 400, 'VALIDATION_ERROR', q);
      expect(res.body.error.request_id).toBe(res.headers['x-request-id']);
    }
  });

  it('soft-deleted users are hidden from lists and search unless status=deleted (CONTRACT §6)', async () => {
    const tg = tag();
    const kept = await createUser({ email: `${tg}kept@example.com`, first_name: 'Kept', last_name: 'Soft' });
    const gone = await createUser({ email: `${tg}gone@example.com`, first_name: 'Gone', last_name: 'Soft' });
    const res = await t.http().delete(`/v2/users/${gone.id}?soft_delete=true`).set('Authorization', `Bearer ${token}`);
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 200 });
    expect(ids(await list({ search: tg }))).toEqual([kept.id]);
    expect((await list({ search: tg })).pagination.total).toBe(1);
    expect(ids(await list({ search: tg, status: 'deleted' }))).toEqual([gone.id]);
    expect(ids(await search({ q: tg }))).toEqual([kept.id]);
    expect(ids(await search({ q: tg, filters: JSON.stringify({ status: 'deleted' }) }))).toEqual([gone.id]);
    expect(ids(await search({ q: tg, filters: JSON.stringify({ status: { in: ['deleted'] } }) }))).toEqual([gone.id]);
    expect(sorted(ids(await search({ q: tg, filters: JSON.stringify({ status: { in: ['deleted', 'active'] } }) })))).toEqual(sorted([kept.id, gone.id]));
    expect(ids(await search({ q: tg, filters: JSON.stringify({ status: { in: ['active', 'suspended', 'inactive'] } }) }))).toEqual([kept.id]);
    expect(ids(await search({ q: tg, filters: JSON.stringify({ first_name: 'Gone' }) }))).toEqual([]);
    const [row] = await t.sql<{ status: string; deleted_at: Date | null }>('SELECT status, deleted_at FROM users WHERE id = $1', [gone.id]);
    expect(row!.status).toBe('deleted');
    expect(row!.deleted_at).not.toBeNull();
    // Restored, the user is no longer among the deleted ones, however they are asked for.
    await t.http().post(`/v2/users/${gone.id}/restore`).set('Authorization', `Bearer ${token}`).expect(200);
    expect(ids(await list({ search: tg, status: 'deleted' }))).toEqual([]);
    expect(ids(await search({ q: tg, filters: JSON.stringify({ status: 'deleted' }) }))).toEqual([]);
    expect(sorted(ids(await list({ search: tg })))).toEqual(sorted([kept.id, gone.id]));
  });

  it('cursor mode: walks every user exactly once while users are created and deleted; cursors are tamper-evident and bound', async () => {
    // Same created_at for a whole bulk batch: the id tie-breaker must keep the walk exact.
    const tg = tag();
    const batch = await bulk({ users: Array.from({ length: 12 }, (_, i) => ({ email: `${tg}${LETTERS[i]}@example.com`, first_name: 'Walk', last_name: `Batch${LETTERS[i]}` })) }).expect(200);
    const batchIds: string[] = batch.body.results.map((r: { user: { id: string } }) => r.user.id);
    expect(batchIds).toHaveLength(12);
    const tail: string[] = [];
    for (let i = 0; i < 6; i++) tail.push((await createUser({ email: `${tg}tail${LETTERS[i]}@example.com`, first_name: 'Walk', last_name: 'Tail' })).id);

    const before = (await t.sql<{ id: string }>('SELECT id FROM users WHERE organization_id = $1 AND deleted_at IS NULL', [orgId])).map((r) => r.id);
    const params = { sort: 'created_at:asc', limit: 5 };

    const first = await list(params);
    expect(first.data).toHaveLength(5);
    expect(first.pagination).toMatchObject({ total: before.length, limit: 5, offset: 0, has_more: true });
    const firstCursor = first.pagination.next_cursor!;
    expect(typeof firstCursor).toBe('string');

    const seen: string[] = [...ids(first)];
    const deletedBeforeVisit: string[] = [];
    const deletedAfterVisit: string[] = [];
    const createdDuring: string[] = [];
    let cursor: string | null = firstCursor;
    let page = 1;
    let lastCreatedAt = first.data[first.data.length - 1]!.created_at;
    while (cursor) {
      const res: Page = await list({ ...params, cursor });
      page++;
      expect(Object.keys(res.pagination).sort()).toEqual(['has_more', 'limit', 'next_cursor', 'total_estimate']);
      expect(res.pagination.limit).toBe(5);
      expect(typeof res.pagination.total_estimate).toBe('number');
      expect(res.data.length).toBeLessThanOrEqual(5);
      expect(res.pagination.has_more).toBe(res.pagination.next_cursor !== null);
      for (const u of res.data) {
        expect(u.created_at >= lastCreatedAt).toBe(true);
        lastCreatedAt = u.created_at;
      }
      seen.push(...ids(res));
      cursor = res.pagination.next_cursor;
      if (page === 2 || page === 8) {
        // Create some users and delete one already seen and one not yet seen (from this test's data).
        for (let i = 0; i < 3; i++) createdDuring.push((await createUser({ email: `${tg}during${page}${LETTERS[i]}@example.com`, first_name: 'Walk', last_name: 'During' })).id);
        const seenVictim = [...batchIds, ...tail].find((id) => seen.includes(id) && !deletedAfterVisit.includes(id));
        const unseenVictim = [...batchIds, ...tail].find((id) => !seen.includes(id) && !deletedBeforeVisit.includes(id));
        if (seenVictim) {
          await deleteUser(seenVictim);
          deletedAfterVisit.push(seenVictim);
        }
        if (unseenVictim) {
          await deleteUser(unseenVictim);
          deletedBeforeVisit.push(unseenVictim);
        }
      }
      if (page > 100) throw new Error('cursor walk does not end');
    }
    expect(page).toBeGreaterThan(8);
    expect(deletedBeforeVisit).toHaveLength(2);
    expect(deletedAfterVisit.length).toBeGreaterThanOrEqual(1);

    // No user twice; every user that existed throughout exactly once; users deleted before their page never.
    expect(seen.length).toBe(new Set(seen).size);
    const throughout = before.filter((id) => !deletedBeforeVisit.includes(id));
    expect(throughout.filter((id) => !seen.includes(id))).toEqual([]);
    for (const id of deletedBeforeVisit) expect(seen).not.toContain(id);
    for (const id of deletedAfterVisit) expect(seen.filter((s) => s === id)).toHaveLength(1);
    const unexpected = seen.filter((id) => !before.includes(id) && !createdDuring.includes(id));
    expect(unexpected).toEqual([]);
    for (const id of batchIds.filter((id) => !deletedBeforeVisit.includes(id))) expect(seen).toContain(id);

    // A fresh cursor from the same page 1 still works (cursors are not single use).
    const again = await list({ ...params, cursor: firstCursor });
    expect(again.data.length).toBeGreaterThan(0);
    expect(ids(again).some((id) => ids(first).includes(id))).toBe(false);

    // Cursors that were not issued by us, altered, or presented with other sort or filters: 400 INVALID_CURSOR.
    const flipAt = Math.floor(firstCursor.indexOf('.') / 2);
    const flipped = firstCursor.slice(0, flipAt) + (firstCursor[flipAt] === 'A' ? 'B' : 'A') + firstCursor.slice(flipAt + 1);
    const sigFlipped = firstCursor.slice(0, -3) + (firstCursor.at(-3) === 'x' ? 'y' : 'x') + firstCursor.slice(-2);
    const forged = Buffer.from(JSON.stringify({ created_at: '2025-01-21' })).toString('base64url');
    const cases: [string, Record<string, string | number>][] = [
      ['flipped body character', { ...params, cursor: flipped }],
      ['flipped signature character', { ...params, cursor: sigFlipped }],
      ['garbage', { ...params, cursor: 'garbage-cursor' }],
      ['forged unsigned', { ...params, cursor: forged }],
      ['forged with a dot', { ...params, cursor: `${forged}.${forged}` }],
      ['longer than any cursor', { ...params, cursor: `${firstCursor}${'A'.repeat(5000)}` }],
      ['a valid cursor with a segment appended', { ...params, cursor: `${firstCursor}.AAAA` }],
      ['a valid cursor appended to itself', { ...params, cursor: `${firstCursor}.${firstCursor}` }],
      ['other sort direction', { sort: 'created_at:desc', limit: 5, cursor: firstCursor }],
      ['other sort field', { sort: 'email:asc', limit: 5, cursor: firstCursor }],
      ['added role filter', { ...params, role: 'admin', cursor: firstCursor }],
      ['added status filter', { ...params, status: 'suspended', cursor: firstCursor }],
      ['added search', { ...params, search: 'walk', cursor: firstCursor }],
    ];
    for (const [what, query] of cases) {
      const res = await get(`/v2/users?${qs(query)}`);
      expectError(res, 400, 'INVALID_CURSOR', what);
    }
    // A list cursor is not a search cursor.
    expectError(await get(`/v2/users/search?${qs({ ...params, cursor: firstCursor })}`), 400, 'INVALID_CURSOR', 'list cursor on search');
  });

  describe('GET /users/search', () => {
    const tg = tag();
    let u: Record<'alice' | 'bob' | 'carol' | 'dave' | 'erin' | 'frank', UserBody>;
    let boundary: string;

    /** Ids of search results restricted to this block's users. */
    const find = async (params: Record<string, string | number | undefined>) => {
      const page = await search({ q: tg, limit: 100, ...params });
      return page.data.map((x) => x.id);
    };
    const idsOf = (...names: (keyof typeof u)[]) => names.map((n) => u[n].id);
    const same = async (what: string, params: Record<string, string | number | undefined>, expected: string[]) => {
      const got = await find(params);
      expect({ what, ids: sorted(got) }).toEqual({ what, ids: sorted(expected) });
    };

    beforeAll(async () => {
      const alice = await createUser({ email: `${tg}alice@company.com`, first_name: 'Alice', last_name: 'Zephyr', role: 'admin', metadata: { department: 'engineering', level: 3 } });
      const bob = await createUser({ email: `${tg}bob@company.com`, first_name: 'Bob', last_name: 'Zephyr', role: 'moderator', metadata: { department: 'engineering', level: 10 } });
      const carol = await createUser({ email: `${tg}carol@other.org`, first_name: 'Carol', last_name: 'Young', metadata: { department: 'sales', level: 5 } });
      await sleep(1100);
      const dave = await createUser({ email: `${tg}dave@company.com`, first_name: 'Dave', last_name: 'Young', metadata: { department: 'marketing', level: 1 } });
      const erin = await createUser({ email: `${tg}erin@other.org`, first_name: 'Erin', last_name: 'Xavier', role: 'admin', password: 'Correct-Horse-42', metadata: { department: 'support' } });
      const frank = await createUser({ email: `${tg}frank@other.org`, first_name: 'Frank', last_name: 'Xavier' });
      u = { alice, bob, carol, dave, erin, frank };
      // carol: after alice/bob/carol, before dave (created > 1.1 s later); API times are whole seconds.
      boundary = new Date(Date.parse(carol.created_at.replace(/\.\d+Z$/, 'Z')) + 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      await updateUser(frank.id, { status: 'suspended' });
      // email_verified cannot be set through the API (mass assignment is refused); set it for one user.
      await t.sql('UPDATE users SET email_verified = true WHERE id = $1', [carol.id]);
      // Erin signs in once: login_count 1.
      const login = await t.http().post('/v2/auth/token').send({ grant_type: 'password', organization_id: orgId, email: erin.email, password: 'Correct-Horse-42' });
      expect({ status: login.status, body: login.body }).toMatchObject({ status: 200 });
      const [row] = await t.sql<{ login_count: number }>('SELECT login_count FROM users WHERE id = $1', [erin.id]);
      expect(row!.login_count).toBe(1);
    });

    it('q: every word must match the name or the email, case-insensitively', async () => {
      await same('one tag', {}, idsOf('alice', 'bob', 'carol', 'dave', 'erin', 'frank'));
      await same('tag + last name', { q: `${tg} zephyr` }, idsOf('alice', 'bob'));
      await same('first name + tag, upper case', { q: `ALICE ${tg.toUpperCase()}` }, idsOf('alice'));
      await same('three words', { q: `${tg}   alice  zephyr` }, idsOf('alice'));
      await same('word of the email domain', { q: `${tg} other.org` }, idsOf('carol', 'erin', 'frank'));
      await same('one word does not match', { q: `${tg} alice young` }, []);
      await same('second word matches nobody', { q: `${tg} nosuchword` }, []);
      // Every word counts, however many there are (the 12th here matches nobody).
      const many = `${tg} alice zephyr a l i c e com pany @ nosuchword`;
      expect(many.split(' ')).toHaveLength(12);
      await same('twelfth word matches nobody', { q: many }, []);
      await same('twelve words that all match', { q: `${tg} alice zephyr a l i c e com pany @ ${tg}` }, idsOf('alice'));
    });

    it('filters: every operator over strings, roles, statuses, booleans, dates, integers and metadata', async () => {
      const f = (filters: unknown) => ({ filters: JSON.stringify(filters) });
      await same('email contains', f({ email: { contains: '@company.com' } }), idsOf('alice', 'bob', 'dave'));
      await same('email contains, other case', f({ email: { contains: '@COMPANY.com' } }), idsOf('alice', 'bob', 'dave'));
      await same('email eq', f({ email: { eq: u.bob.email } }), idsOf('bob'));
      await same('email eq, other case', f({ email: u.bob.email.toUpperCase() }), idsOf('bob'));
      await same('email in', f({ email: { in: [u.bob.email, u.dave.email] } }), idsOf('bob', 'dave'));
      await same('email ne', f({ email: { ne: u.bob.email } }), idsOf('alice', 'carol', 'dave', 'erin', 'frank'));
      await same('first_name eq', f({ first_name: { eq: 'Carol' } }), idsOf('carol'));
      await same('id eq', f({ id: u.dave.id }), idsOf('dave'));
      await same('role eq', f({ role: { eq: 'admin' } }), idsOf('alice', 'erin'));
      await same('role bare value', f({ role: 'moderator' }), idsOf('bob'));
      await same('role in', f({ role: { in: ['admin', 'moderator'] } }), idsOf('alice', 'bob', 'erin'));
      await same('role ne', f({ role: { ne: 'user' } }), idsOf('alice', 'bob', 'erin'));
      await same('status ne', f({ status: { ne: 'active' } }), idsOf('frank'));
      await same('status eq', f({ status: 'suspended' }), idsOf('frank'));
      await same('status in', f({ status: { in: ['active', 'inactive'] } }), idsOf('alice', 'bob', 'carol', 'dave', 'erin'));
      await same('email_verified eq false', f({ email_verified: { eq: false } }), idsOf('alice', 'bob', 'dave', 'erin', 'frank'));
      await same('email_verified bare true', f({ email_verified: true }), idsOf('carol'));

      const today = new Date().toISOString().slice(0, 10);
      const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
      const everyone = idsOf('alice', 'bob', 'carol', 'dave', 'erin', 'frank');
      await same('created_at gte today (date)', f({ created_at: { gte: today } }), everyone);
      await same('created_at gte tomorrow (date)', f({ created_at: { gte: tomorrow } }), []);
      await same('created_at lt tomorrow (date)', f({ created_at: { lt: tomorrow } }), everyone);
      await same('created_at gte boundary (RFC 3339)', f({ created_at: { gte: boundary } }), idsOf('dave', 'erin', 'frank'));
      await same('created_at lt boundary (RFC 3339)', f({ created_at: { lt: boundary } }), idsOf('alice', 'bob', 'carol'));
      const shifted = new Date(Date.parse(boundary) + 2 * 3_600_000).toISOString().replace(/\.\d{3}Z$/, '+02:00');
      await same('created_at gte boundary (RFC 3339 with offset)', f({ created_at: { gte: shifted } }), idsOf('dave', 'erin', 'frank'));
      await same('created_at gt/lte window', f({ created_at: { gt: u.carol.created_at.replace('Z', '.000Z'), lte: new Date(Date.now() + 60_000).toISOString() } }), idsOf('dave', 'erin', 'frank'));
      // Timestamps compare as they are shown (whole seconds): a user's own created_at is eq to it.
      const shown = u.carol.created_at;
      const whose = (test: (at: string) => boolean) => Object.values(u).filter((x) => test(x.created_at)).map((x) => x.id);
      await same('created_at eq as shown', f({ created_at: { eq: shown } }), whose((at) => at === shown));
      await same('created_at gt as shown', f({ created_at: { gt: shown } }), whose((at) => at > shown));
      await same('created_at gte as shown', f({ created_at: { gte: shown } }), whose((at) => at >= shown));
      await same('created_at lt as shown', f({ created_at: { lt: shown } }), whose((at) => at < shown));
      await same('created_at lte as shown', f({ created_at: { lte: shown } }), whose((at) => at <= shown));
      await same('created_at ne as shown', f({ created_at: { ne: shown } }), whose((at) => at !== shown));
      await same('created_at in as shown', f({ created_at: { in: [shown, u.dave.created_at] } }), whose((at) => at === shown || at === u.dave.created_at));
      // Between two shown seconds: eq matches nothing, gte starts at the next second, lt includes the second before.
      const between = shown.replace('Z', '.5Z');
      await same('created_at eq between seconds', f({ created_at: { eq: between } }), []);
      await same('created_at gte between seconds', f({ created_at: { gte: between } }), whose((at) => at > shown));
      await same('created_at lt between seconds', f({ created_at: { lt: between } }), whose((at) => at <= shown));
      // last_login: a user who never signed in has the oldest one, as in the sort.
      const erinLogin = (await get(`/v2/users/${u.erin.id}`).expect(200)).body.last_login as string;
      expect(erinLogin).toMatch(/Z$/);
      await same('last_login eq as shown', f({ last_login: { eq: erinLogin } }), idsOf('erin'));
      await same('last_login ne (never signed in included)', f({ last_login: { ne: erinLogin } }), idsOf('alice', 'bob', 'carol', 'dave', 'frank'));
      await same('last_login lt (never signed in included)', f({ last_login: { lt: erinLogin } }), idsOf('alice', 'bob', 'carol', 'dave', 'frank'));
      await same('last_login gt 2000-01-01', f({ last_login: { gt: '2000-01-01' } }), idsOf('erin'));

      await same('login_count lt', f({ login_count: { lt: 1 } }), idsOf('alice', 'bob', 'carol', 'dave', 'frank'));
      await same('login_count gte', f({ login_count: { gte: 1 } }), idsOf('erin'));
      await same('login_count bare', f({ login_count: 1 }), idsOf('erin'));
      await same('login_count in', f({ login_count: { in: [1, 7] } }), idsOf('erin'));

      await same('metadata eq', f({ 'metadata.department': { eq: 'engineering' } }), idsOf('alice', 'bob'));
      await same('metadata bare', f({ 'metadata.department': 'sales' }), idsOf('carol'));
      await same('metadata in', f({ 'metadata.department': { in: ['engineering', 'sales'] } }), idsOf('alice', 'bob', 'carol'));
      await same('metadata contains', f({ 'metadata.department': { contains: 'engin' } }), idsOf('alice', 'bob'));
      await same('metadata contains (other)', f({ 'metadata.department': { contains: 'ket' } }), idsOf('dave'));
      // Numeric, not text: "10" > 4 although the string "10" sorts before "4".
      await same('metadata.level gt (numeric)', f({ 'metadata.level': { gt: 4 } }), idsOf('bob', 'carol'));
      await same('metadata.level lte (numeric)', f({ 'metadata.level': { lte: 3 } }), idsOf('alice', 'dave'));
      await same('metadata unknown key', f({ 'metadata.nosuchkey': 'x' }), []);

      await same('several fields are ANDed', f({ role: 'admin', 'metadata.department': 'engineering' }), idsOf('alice'));
      await same('several operators on one field', f({ 'metadata.level': { gt: 2, lt: 6 } }), idsOf('alice', 'carol'));
      await same('filters with q', { q: `${tg} zephyr`, ...f({ role: 'moderator' }) }, idsOf('bob'));
    });

    it('metadata values compare with their JSON type; ne also matches users without the key', async () => {
      const other = tag();
      const mk = async (name: string, metadata: Record<string, unknown>) =>
        (await createUser({ email: `${other}${name}@example.com`, first_name: name, last_name: 'Typed', metadata })).id;
      const num = await mk('num', { v: 10 });
      const str = await mk('str', { v: '10' });
      const bool = await mk('bool', { v: true });
      const strTrue = await mk('strtrue', { v: 'true' });
      const none = await mk('none', {});
      const find = async (filter: unknown) => sorted(ids(await search({ q: other, limit: 100, filters: JSON.stringify({ 'metadata.v': filter }) })));
      expect(await find({ eq: 10 })).toEqual([num]);
      expect(await find(10)).toEqual([num]);
      expect(await find({ eq: '10' })).toEqual([str]);
      expect(await find({ in: [10] })).toEqual([num]);
      expect(await find({ in: [10, '10'] })).toEqual(sorted([num, str]));
      expect(await find({ eq: true })).toEqual([bool]);
      expect(await find({ eq: 'true' })).toEqual([strTrue]);
      expect(await find({ ne: 10 })).toEqual(sorted([str, bool, strTrue, none]));
      expect(await find({ ne: 99 })).toEqual(sorted([num, str, bool, strTrue, none]));
      expect(await find({ ne: 'zz' })).toEqual(sorted([num, str, bool, strTrue, none]));
      expect(await find({ gte: 10 })).toEqual([num]);
      expect(await find({ gt: '0' })).toEqual(sorted([str, strTrue]));
      const res = await get(`/v2/users/search?${qs({ filters: JSON.stringify({ 'metadata.v': { gt: true } }) })}`);
      expectError(res, 400, 'INVALID_FILTER', 'gt on a boolean');
    });

    it('sort as a JSON array or a comma list; fields as a JSON array or a comma list', async () => {
      const expected = idsOf('frank', 'erin', 'dave', 'carol', 'bob', 'alice');
      expect(await find({ sort: JSON.stringify(['last_name:asc', 'first_name:desc']) })).toEqual(expected);
      expect(await find({ sort: 'last_name:asc,first_name:desc' })).toEqual(expected);
      expect(await find({ sort: 'last_name:desc, first_name:asc' })).toEqual(idsOf('alice', 'bob', 'carol', 'dave', 'erin', 'frank'));
      expect(await find({ sort: '["email:asc"]' })).toEqual(idsOf('alice', 'bob', 'carol', 'dave', 'erin', 'frank'));

      const two = await search({ q: tg, fields: JSON.stringify(['id', 'email']) });
      expect(two.data).toHaveLength(6);
      for (const x of two.data) expect(Object.keys(x).sort()).toEqual(['email', 'id']);
      const onlyEmail = await search({ q: tg, fields: '["email"]' });
      for (const x of onlyEmail.data) expect(Object.keys(x).sort()).toEqual(['email', 'id']);
      const withRoles = await search({ q: tg, fields: 'id,roles', sort: 'email:asc' });
      for (const x of withRoles.data) {
        expect(Object.keys(x).sort()).toEqual(['id', 'roles']);
        expect(Array.isArray(x.roles)).toBe(true);
        for (const role of x.roles as unknown[]) {
          expect(role).toEqual({ id: expect.stringMatching(/^role_/), name: expect.any(String), display_name: expect.any(String), permissions: expect.any(Array) });
        }
      }
      const alice = withRoles.data.find((x) => x.id === u.alice.id)!;
      expect((alice.roles as { name: string }[]).map((r) => r.name)).toEqual(['admin']);
      const frank = withRoles.data.find((x) => x.id === u.frank.id)!;
      expect((frank.roles as { name: string }[]).map((r) => r.name)).toEqual(['user']);
      // Without fields: the compact form.
      const compact = await search({ q: tg });
      for (const x of compact.data) {
        for (const key of ['roles', 'permissions', 'password', 'password_hash']) expect(x).not.toHaveProperty(key);
      }
    });

    it('cursor pagination over search results visits every match once', async () => {
      for (const sort of ['created_at:asc', '["last_name:asc","first_name:desc"]', 'email:desc']) {
        const pages = await walk('/v2/users/search', { q: tg, limit: 2, sort });
        expect(pages).toHaveLength(3);
        for (const p of pages) {
          expect(Object.keys(p.pagination).sort()).toEqual(['has_more', 'limit', 'next_cursor', 'total_estimate']);
          expect(p.pagination.limit).toBe(2);
        }
        expect(pages[2]!.pagination).toMatchObject({ has_more: false, next_cursor: null });
        const seen = pages.flatMap(ids);
        expect(seen).toHaveLength(6);
        expect(sorted(seen)).toEqual(sorted(idsOf('alice', 'bob', 'carol', 'dave', 'erin', 'frank')));
      }
      const filtered = await walk('/v2/users/search', { q: tg, limit: 1, filters: JSON.stringify({ role: { in: ['admin', 'moderator'] } }) });
      expect(sorted(filtered.flatMap(ids))).toEqual(sorted(idsOf('alice', 'bob', 'erin')));
      // Bound to its filters.
      const first = await search({ q: tg, limit: 2 });
      expectError(await get(`/v2/users/search?${qs({ q: tg, limit: 2, filters: '{"role":"admin"}', cursor: first.pagination.next_cursor! })}`), 400, 'INVALID_CURSOR', 'search cursor with other filters');
      expectError(await get(`/v2/users/search?${qs({ q: `${tg} zephyr`, limit: 2, cursor: first.pagination.next_cursor! })}`), 400, 'INVALID_CURSOR', 'search cursor with other q');
      // The same query written otherwise (spacing of q, key order and spacing of filters) is the same query.
      const asFirst = { q: `${tg} zephyr`, limit: 1, filters: '{"role":{"in":["admin","moderator"]},"status":"active"}' };
      const page1 = await search(asFirst);
      expect(page1.pagination.next_cursor).toEqual(expect.any(String));
      const plain = await search({ ...asFirst, cursor: page1.pagination.next_cursor! });
      const rewritten = await search({ q: `  ${tg}   zephyr `, limit: 1, filters: '{ "status": "active", "role": { "in": [ "admin", "moderator" ] } }', cursor: page1.pagination.next_cursor! });
      expect(ids(rewritten)).toEqual(ids(plain));
      expect(sorted([...ids(page1), ...ids(plain)])).toEqual(sorted(idsOf('alice', 'bob')));
      // Other values are still another query.
      expectError(await get(`/v2/users/search?${qs({ ...asFirst, filters: '{"role":{"in":["admin"]},"status":"active"}', cursor: page1.pagination.next_cursor! })}`), 400, 'INVALID_CURSOR', 'other filter values');
      // fields compare as a set: a JSON array, a comma list, any order or spacing; other fields are another query.
      const projected = await search({ q: tg, limit: 2, fields: '["id","email"]' });
      const next = projected.pagination.next_cursor!;
      const asWritten = await search({ q: tg, limit: 2, fields: '["id","email"]', cursor: next });
      for (const fields of ['["id", "email"]', 'email,id', ' email , id ', '["email"]']) {
        expect({ fields, ids: ids(await search({ q: tg, limit: 2, fields, cursor: next })) }).toEqual({ fields, ids: ids(asWritten) });
      }
      expectError(await get(`/v2/users/search?${qs({ q: tg, limit: 2, fields: '["id","first_name"]', cursor: next })}`), 400, 'INVALID_CURSOR', 'other fields');
    });

    it('totals: a page that reaches the end carries the exact total; a page with more after it, the counted one', async () => {
      // Observed (not replaced): which answers needed a count statement.
      const repository = t.app.get(UsersRepository);
      const counts = [jest.spyOn(repository, 'count'), jest.spyOn(repository, 'countOrEstimate')];
      const countsMade = () => counts.reduce((n, spy) => n + spy.mock.calls.length, 0);
      const one = await search({ q: `${tg} zephyr alice` });
      expect(one.pagination).toMatchObject({ has_more: false, next_cursor: null, total_estimate: 1 });
      const none = await search({ q: `${tg} nosuchword` });
      expect(none.pagination).toMatchObject({ has_more: false, total_estimate: 0 });
      expect(countsMade()).toBe(0);
      // A query no earlier test made, so that no total is cached for it yet.
      const all = `${tg} ${tg.slice(2)}`;
      const firstOfThree = await search({ q: all, limit: 2 });
      expect(firstOfThree.pagination).toMatchObject({ has_more: true, total_estimate: 6 });
      // Offset mode: the last page knows the total; a page past the end counts it.
      expect(countsMade()).toBe(1);
      const last = await list({ search: all, limit: 4, offset: 4 });
      expect({ n: last.data.length, pagination: last.pagination }).toMatchObject({ n: 2, pagination: { total: 6, has_more: false } });
      expect(countsMade()).toBe(1);
      const past = await list({ search: all, limit: 4, offset: 10 });
      expect({ n: past.data.length, pagination: past.pagination }).toMatchObject({ n: 0, pagination: { total: 6, has_more: false } });
      const middle = await list({ search: all, limit: 2, offset: 2 });
      expect(middle.pagination).toMatchObject({ total: 6, has_more: true });
      // The database agrees.
      const [row] = await t.sql<{ n: number }>(`SELECT count(*)::int AS n FROM users WHERE organization_id = $1 AND email LIKE $2 AND deleted_at IS NULL`, [orgId, `${tg}%`]);
      expect(row!.n).toBe(6);
      expect(countsMade()).toBe(2); // the page past the end; the middle page reuses its total
      for (const spy of counts) spy.mockRestore();
    });

    it('text is lower-cased by the database, as the index is: q and contains find non-ASCII names as written', async () => {
      const other = tag();
      // JavaScript lower-cases İ (U+0130) to "i̇" (two code points); PostgreSQL does not.
      const ipek = await createUser({ email: `${other}ipek@example.com`, first_name: 'İpek', last_name: 'Élodie-Straße' });
      const f = (filters: unknown) => JSON.stringify(filters);
      expect(ids(await search({ q: `İpek ${other}` }))).toEqual([ipek.id]);
      expect(ids(await search({ q: other, filters: f({ first_name: { contains: 'İp' } }) }))).toEqual([ipek.id]);
      expect(ids(await search({ q: other, filters: f({ last_name: { contains: 'Élodie-Straß' } }) }))).toEqual([ipek.id]);
      expect(ids(await search({ filters: f({ email: { contains: `${other.toUpperCase()}IPEK@` } }) }))).toEqual([ipek.id]);
      expect(ids(await search({ q: other, filters: f({ last_name: { contains: 'Straße-Élodie' } }) }))).toEqual([]);
      expect(ids(await list({ search: `straße ${other}` }))).toEqual([ipek.id]);
    });

    it('invalid filters: 400 INVALID_FILTER naming the bad part; bad fields or sort: 400 VALIDATION_ERROR', async () => {
      const cases: [string, string, string[]][] = [
        ['unknown field', '{"nope":"x"}', ['nope']],
        ['unknown field password_hash', '{"password_hash":{"contains":"a"}}', ['password_hash']],
        ['unknown operator', '{"email":{"like":"x"}}', ['email', 'like']],
        ['unknown operator $where', '{"role":{"$ne":"admin"}}', ['role', '$ne']],
        ['wrong type: integer', '{"login_count":{"gt":"abc"}}', ['login_count', 'abc']],
        ['wrong type: date', '{"created_at":{"gte":"yesterday"}}', ['created_at', 'yesterday']],
        ['wrong type: impossible date', '{"created_at":{"gte":"2025-02-30"}}', ['created_at']],
        ['wrong type: boolean', '{"email_verified":"yes"}', ['email_verified', 'yes']],
        ['wrong type: status', '{"status":"bogus"}', ['status', 'bogus']],
        ['in with a non-array', '{"role":{"in":"admin"}}', ['role']],
        ['in with a non-array (email)', '{"email":{"in":"a@b.c"}}', ['email']],
        ['contains on an integer', '{"login_count":{"contains":"1"}}', ['login_count']],
        ['a timestamp without seconds (RFC 3339 requires them)', '{"last_login":{"gt":"2026-12-02T01:10Z"}}', ['last_login', '2026-12-02T01:10Z']],
        ['a timestamp without seconds, with an offset', '{"created_at":{"lt":"2026-12-02T01:10+00:00"}}', ['created_at']],
        ['not JSON', '{"email":', ['filters']],
        ['not JSON at all', 'role=admin', ['filters']],
        ['an array', '[{"role":"admin"}]', ['filters']],
        ['a string', '"admin"', ['filters']],
        ['a number', '42', ['filters']],
        ['null', 'null', ['filters']],
      ];
      const problems: unknown[] = [];
      for (const [what, filters, mentions] of cases) {
        const res = await get(`/v2/users/search?${qs({ filters })}`);
        const details = JSON.stringify(res.body.error?.details ?? null);
        const missing = mentions.filter((m) => !details.includes(m));
        if (res.status !== 400 || res.body.error?.code !== 'INVALID_FILTER' || !Array.isArray(res.body.error?.details) || missing.length > 0) {
          problems.push({ what, filters, status: res.status, error: res.body.error, results: res.body.data?.length, missing });
        }
      }
      for (const fields of ['["password_hash"]', 'password', 'id,nope', '[1]', '["id"', '{"id":1}']) {
        expectError(await get(`/v2/users/search?${qs({ fields })}`), 400, 'VALIDATION_ERROR', `fields=${fields}`);
      }
      for (const sort of ['["password:asc"]', 'email:up', 'password_hash:asc', '["email:asc"', '[1]']) {
        expectError(await get(`/v2/users/search?${qs({ sort })}`), 400, 'VALIDATION_ERROR', `sort=${sort}`);
      }
      for (const q of ['limit=0', 'limit=101', 'limit=abc', 'unknown=1']) {
        expectError(await get(`/v2/users/search?${q}`), 400, 'VALIDATION_ERROR', q);
      }
      expect(problems).toEqual([]);
    });
  });

  it('SQL metacharacters never cause a 5xx and match only literally', async () => {
    const tg = tag();
    const first = '100%_match\\';
    const last = "O'Brien; DROP TABLE users;--";
    const meta = await createUser({ email: `${tg}meta@example.com`, first_name: first, last_name: last, metadata: { note: "50% off_ 'x' \\" } });
    // Would match if % _ \ or ' were interpreted rather than taken literally.
    const decoy1 = await createUser({ email: `${tg}decoya@example.com`, first_name: '100abmatch', last_name: 'OBrien', metadata: { note: '50 off' } });
    const decoy2 = await createUser({ email: `${tg}decoyb@example.com`, first_name: '100', last_name: 'Obrien DROP TABLE users', metadata: { note: 'x' } });
    expect(meta.first_name).toBe(first);
    expect(meta.last_name).toBe(last);
    const [row] = await t.sql<{ first_name: string; last_name: string }>('SELECT first_name, last_name FROM users WHERE id = $1', [meta.id]);
    expect(row).toEqual({ first_name: first, last_name: last });
    const usersBefore = await countUsers();

    const listOnly = async (what: string, params: Record<string, string>, expected: string[]) => {
      const res = await get(`/v2/users?${qs({ limit: 100, ...params })}`);
      expect({ what, status: res.status }).toEqual({ what, status: 200 });
      expect({ what, ids: sorted(ids(res.body as Page)) }).toEqual({ what, ids: sorted(expected) });
    };
    const searchOnly = async (what: string, params: Record<string, string>, expected: string[]) => {
      const res = await get(`/v2/users/search?${qs({ limit: 100, ...params })}`);
      expect({ what, status: res.status }).toEqual({ what, status: 200 });
      expect({ what, ids: sorted(ids(res.body as Page)) }).toEqual({ what, ids: sorted(expected) });
    };

    // Across the whole organization, not only this test's users.
    await listOnly("search=O'Brien", { search: "O'Brien" }, [meta.id]);
    await listOnly("search=o'brien", { search: "o'brien" }, [meta.id]);
    await listOnly('search=%', { search: '%' }, [meta.id]);
    await listOnly('search=_', { search: '_' }, [meta.id]);
    await listOnly('search=\\', { search: '\\' }, [meta.id]);
    await listOnly('search=100%_', { search: '100%_' }, [meta.id]);
    await listOnly("search='", { search: "'" }, [meta.id]);
    await listOnly('search=%%', { search: '%%' }, []);
    await listOnly("search=O'Brien; DROP TABLE users;--", { search: "O'Brien; DROP TABLE users;--" }, [meta.id]);
    await listOnly("search='; DROP TABLE users;--", { search: "'; DROP TABLE users;--" }, []);
    await searchOnly('q=100%_', { q: '100%_' }, [meta.id]);
    await searchOnly('q=%', { q: '%' }, [meta.id]);
    await searchOnly("q=O'Brien;", { q: "O'Brien;" }, [meta.id]);
    await searchOnly('q=\\', { q: '\\' }, [meta.id]);
    const f = (filters: unknown) => ({ filters: JSON.stringify(filters) });
    await searchOnly('contains %', f({ first_name: { contains: '%' } }), [meta.id]);
    await searchOnly('contains _', f({ first_name: { contains: '_' } }), [meta.id]);
    await searchOnly('contains \\', f({ first_name: { contains: '\\' } }), [meta.id]);
    await searchOnly('contains 100%_', f({ first_name: { contains: '100%_' } }), [meta.id]);
    await searchOnly("contains '; DROP TABLE users;--", f({ last_name: { contains: "'; DROP TABLE users;--" } }), []);
    await searchOnly('contains ; DROP TABLE users;--', f({ last_name: { contains: '; DROP TABLE users;--' } }), [meta.id]);
    await searchOnly("contains O'Brien;", f({ last_name: { contains: "o'brien;" } }), [meta.id]);
    await searchOnly('role eq injection', f({ role: "admin' OR '1'='1" }), []);
    await searchOnly('last_name eq', f({ last_name: last }), [meta.id]);
    await searchOnly('first_name eq', f({ first_name: { eq: first } }), [meta.id]);
    await searchOnly('first_name in', f({ first_name: { in: [first, "' OR '1'='1"] } }), [meta.id]);
    await searchOnly('email eq injection', f({ email: "' OR '1'='1" }), []);
    await searchOnly('metadata contains %', f({ 'metadata.note': { contains: '%' } }), [meta.id]);
    await searchOnly("metadata contains '", f({ 'metadata.note': { contains: "'x'" } }), [meta.id]);
    await searchOnly('metadata eq injection', f({ 'metadata.note': "x' OR '1'='1" }), []);
    expect(decoy1.id).not.toBe(decoy2.id);

    // Injection through names of fields, operators and sort keys: refused, never run.
    for (const [what, path] of [
      ['sort on list', `/v2/users?${qs({ sort: 'created_at:asc;DROP' })}`],
      ['sort on list (2)', `/v2/users?${qs({ sort: 'created_at:asc; DROP TABLE users;--' })}`],
      ['sort on list (3)', `/v2/users?${qs({ sort: '(SELECT 1):asc' })}`],
      ['sort on search', `/v2/users/search?${qs({ sort: 'created_at:asc;DROP' })}`],
      ['sort on search (JSON)', `/v2/users/search?${qs({ sort: '["created_at:asc; DROP TABLE users;--"]' })}`],
      ['fields on search', `/v2/users/search?${qs({ fields: 'id,email FROM users;--' })}`],
    ] as const) {
      expectError(await get(path), 400, 'VALIDATION_ERROR', what);
    }
    for (const [what, filters] of [
      ['field name', { 'email; DROP TABLE users;--': 'x' }],
      ['operator', { email: { "eq' OR 1=1--": 'x' } }],
      ['status value', { status: "active' OR '1'='1" }],
      ['integer value', { login_count: { lt: '1; DROP TABLE users' } }],
      ['date value', { created_at: { gte: "2025-01-01'; DROP TABLE users;--" } }],
    ] as const) {
      expectError(await get(`/v2/users/search?${qs({ filters: JSON.stringify(filters) })}`), 400, 'INVALID_FILTER', what);
    }
    // A metadata key with SQL in it is either refused or matched literally (nobody has it), never run.
    const oddKey = await get(`/v2/users/search?${qs({ filters: JSON.stringify({ "metadata.x') OR 1=1--": 'y' }) })}`);
    expect([200, 400]).toContain(oddKey.status);
    if (oddKey.status === 200) expect(oddKey.body.data).toEqual([]);
    else expect(oddKey.body.error.code).toBe('INVALID_FILTER');
    for (const id of ["user_' OR '1'='1", "user_x'; DROP TABLE users;--", '%', 'user_%']) {
      expectError(await get(`/v2/users/${encodeURIComponent(id)}`), 404, 'USER_NOT_FOUND', `GET /users/${id}`);
    }

    // The users table is still there and nothing was lost.
    const [table] = await t.sql<{ users: string | null }>("SELECT to_regclass('public.users')::text AS users");
    expect(table!.users).not.toBeNull();
    expect(await countUsers()).toBe(usersBefore);
    await get(`/v2/users/${meta.id}`).expect(200);
  });

  describe('POST /users/bulk', () => {
    it('fail_on_error false: results in input order, summary, per-item errors; valid items created with one user.created event each', async () => {
      const tg = tag();
      const existing = await createUser({ email: `${tg}exist@example.com`, first_name: 'Existing', last_name: 'User' });
      const countBefore = await countUsers();
      const users = [
        { email: `${tg}a@example.com`, first_name: 'Ann', last_name: 'Bulk' },
        { email: `${tg}b@example.com`, first_name: 'Ben', last_name: 'Bulk', role: 'moderator', metadata: { department: 'ops' } },
        { email: `${tg}a@example.com`, first_name: 'Ann', last_name: 'Again' },
        { email: `${tg}exist@example.com`, first_name: 'Exists', last_name: 'Already' },
        { email: 'not-an-email', first_name: 'Bad', last_name: 'Email' },
        { email: `${tg}r@example.com`, first_name: 'Rita', last_name: 'Role', role: 'nosuchrole' },
        { email: `${tg}c@example.com`, first_name: 'Cat', last_name: 'Bulk', role: 'admin' },
        { email: `${tg.toUpperCase()}B@Example.com`, first_name: 'Ben', last_name: 'Upper' },
      ];
      const res = await bulk({ users });
      expect({ status: res.status, body: res.body }).toMatchObject({ status: 200 });
      const results = res.body.results as { index: number; success: boolean; user?: UserBody; error?: { code: string; message: string; details?: { field: string; code: string }[] } }[];
      expect(results.map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      expect(results.map((r) => r.success)).toEqual([true, true, false, false, false, false, true, false]);
      expect(results.map((r) => r.error?.code ?? null)).toEqual([null, null, 'DUPLICATE_EMAIL', 'DUPLICATE_EMAIL', 'VALIDATION_ERROR', 'INVALID_ROLE', null, 'DUPLICATE_EMAIL']);
      expect(res.body.summary).toEqual({ total: 8, successful: 3, failed: 5 });
      for (const r of results.filter((x) => !x.success)) expect(typeof r.error!.message).toBe('string');
      expect(results[4]!.error!.details).toEqual(expect.arrayContaining([expect.objectContaining({ field: expect.stringMatching(/email$/), code: 'INVALID_EMAIL_FORMAT' })]));
      for (const i of [0, 1, 6]) {
        expect(results[i]!.user).toMatchObject({ id: expect.stringMatching(/^user_/), email: users[i]!.email, status: 'active' });
        expect(results[i]!.user).not.toHaveProperty('password_hash');
      }

      // Database: exactly the three valid users, with their roles; nothing for the failed ones.
      expect(await countUsers()).toBe(countBefore + 3);
      const rows = await t.sql<{ id: string; email: string; first_name: string; role: string; metadata: Record<string, unknown> }>(
        `SELECT u.id, u.email, u.first_name, r.name AS role, u.metadata FROM users u LEFT JOIN roles r ON r.id = u.role_id
          WHERE u.organization_id = $1 AND u.email_lower LIKE $2 ORDER BY u.email_lower`,
        [orgId, `${tg}%`],
      );
      expect(rows.map((r) => [r.email, r.first_name, r.role])).toEqual([
        [`${tg}a@example.com`, 'Ann', 'user'],
        [`${tg}b@example.com`, 'Ben', 'moderator'],
        [`${tg}c@example.com`, 'Cat', 'admin'],
        [`${tg}exist@example.com`, 'Existing', 'user'],
      ]);
      expect(rows[1]!.metadata).toEqual({ department: 'ops' });
      expect(rows.map((r) => r.id)).toEqual([results[0]!.user!.id, results[1]!.user!.id, results[6]!.user!.id, existing.id]);
      expect(await t.sql("SELECT id FROM users WHERE organization_id = $1 AND email_lower = 'not-an-email'", [orgId])).toEqual([]);

      // One user.created event per created user, written in the same transaction.
      const createdIds = [0, 1, 6].map((i) => results[i]!.user!.id);
      const events = await t.sql<{ user_id: string; organization_id: string }>(
        `SELECT data->'user'->>'id' AS user_id, organization_id FROM outbox_events WHERE type = 'user.created' AND data->'user'->>'id' = ANY($1::text[])`,
        [createdIds],
      );
      expect(sorted(events.map((e) => e.user_id))).toEqual(sorted(createdIds));
      expect(events.every((e) => e.organization_id === orgId)).toBe(true);
      const forEmails = await t.sql<{ n: number }>(
        `SELECT count(*)::int AS n FROM outbox_events WHERE type = 'user.created' AND lower(data->'user'->>'email') LIKE $1`,
        [`${tg}%`],
      );
      expect(forEmails[0]!.n).toBe(4); // the three from the bulk + the one created before it
      await t.drainEvents();

      // They are visible through the API.
      const listed = await list({ search: tg, limit: 100 });
      expect(sorted(ids(listed))).toEqual(sorted([...createdIds, existing.id]));
    });

    it('fail_on_error true: all or nothing, 422, failed items carry their error and valid ones ROLLED_BACK', async () => {
      const tg = tag();
      const existing = await createUser({ email: `${tg}exist@example.com`, first_name: 'Existing', last_name: 'User' });
      const countBefore = await countUsers();
      const eventsBefore = (await t.sql<{ n: number }>("SELECT count(*)::int AS n FROM outbox_events WHERE type = 'user.created'"))[0]!.n;

      const invalidOne = await bulk({
        users: [
          { email: `${tg}a@example.com`, first_name: 'Ann', last_name: 'Bulk' },
          { email: 'nope', first_name: 'Bad', last_name: 'Email' },
          { email: `${tg}b@example.com`, first_name: 'Ben', last_name: 'Bulk', role: 'admin' },
        ],
        options: { fail_on_error: true },
      });
      expect({ status: invalidOne.status }).toEqual({ status: 422 });
      expect(invalidOne.body.results).toEqual([
        { index: 0, success: false, error: expect.objectContaining({ code: 'ROLLED_BACK' }) },
        { index: 1, success: false, error: expect.objectContaining({ code: 'VALIDATION_ERROR', details: expect.arrayContaining([expect.objectContaining({ code: 'INVALID_EMAIL_FORMAT' })]) }) },
        { index: 2, success: false, error: expect.objectContaining({ code: 'ROLLED_BACK' }) },
      ]);
      expect(invalidOne.body.summary).toEqual({ total: 3, successful: 0, failed: 3 });

      const duplicateOne = await bulk({
        users: [
          { email: `${tg}c@example.com`, first_name: 'Cat', last_name: 'Bulk' },
          { email: `${tg}exist@example.com`, first_name: 'Dup', last_name: 'Existing' },
        ],
        options: { fail_on_error: true },
      });
      expect({ status: duplicateOne.status }).toEqual({ status: 422 });
      expect(duplicateOne.body.results.map((r: { error: { code: string } }) => r.error.code)).toEqual(['ROLLED_BACK', 'DUPLICATE_EMAIL']);

      const inBatchDuplicate = await bulk({
        users: [
          { email: `${tg}d@example.com`, first_name: 'Dan', last_name: 'Bulk' },
          { email: `${tg}e@example.com`, first_name: 'Eve', last_name: 'Bulk', role: 'nosuchrole' },
          { email: `${tg}d@example.com`, first_name: 'Dan', last_name: 'Twice' },
        ],
        options: { fail_on_error: true },
      });
      expect({ status: inBatchDuplicate.status }).toEqual({ status: 422 });
      expect(inBatchDuplicate.body.results.map((r: { error: { code: string } }) => r.error.code)).toEqual(['ROLLED_BACK', 'INVALID_ROLE', 'DUPLICATE_EMAIL']);

      // Nothing created, no event published.
      expect(await countUsers()).toBe(countBefore);
      expect(await t.sql('SELECT id FROM users WHERE organization_id = $1 AND email_lower LIKE $2 AND id <> $3', [orgId, `${tg}%`, existing.id])).toEqual([]);
      expect((await t.sql<{ n: number }>("SELECT count(*)::int AS n FROM outbox_events WHERE type = 'user.created'"))[0]!.n).toBe(eventsBefore);

      // All valid: created, 200.
      const allGood = await bulk({
        users: [
          { email: `${tg}f@example.com`, first_name: 'Fay', last_name: 'Bulk' },
          { email: `${tg}g@example.com`, first_name: 'Gus', last_name: 'Bulk' },
        ],
        options: { fail_on_error: true },
      });
      expect({ status: allGood.status, body: allGood.body }).toMatchObject({ status: 200, body: { summary: { total: 2, successful: 2, failed: 0 } } });
      expect(await countUsers()).toBe(countBefore + 2);
    });

    it('each item stands alone: a bad string fails only its item; with fail_on_error a taken email is named as such, not rolled back', async () => {
      const tg = tag();
      const taken = await createUser({ email: `${tg}taken@example.com`, first_name: 'Taken', last_name: 'Already' });
      const mixed = await bulk({
        users: [
          { email: `${tg}n1@example.com`, first_name: 'Nul\u0000', last_name: 'Byte' },
          { email: `${tg}n2@example.com`, first_name: 'Fine', last_name: 'One' },
          { email: `${tg}n3@example.com`, first_name: 'Lone \ud800', last_name: 'Surrogate' },
        ],
      });
      expect(mixed.status).toBe(200);
      expect(mixed.body.results.map((r: { success: boolean; error?: { code: string } }) => r.error?.code ?? 'ok')).toEqual(['VALIDATION_ERROR', 'ok', 'VALIDATION_ERROR']);
      expect(mixed.body.results[0].error.details[0]).toMatchObject({ field: 'first_name', code: 'INVALID_CHARACTER' });
      expect(await t.sql('SELECT 1 FROM users WHERE email LIKE $1', [`${tg}n%`])).toHaveLength(1);

      const allOrNothing = await bulk({
        users: [
          { email: 'nope', first_name: 'Bad', last_name: 'Email' },
          { email: taken.email.toUpperCase(), first_name: 'Dup', last_name: 'Taken' },
          { email: `${tg}fresh@example.com`, first_name: 'Fresh', last_name: 'One' },
        ],
        options: { fail_on_error: true },
      });
      expect(allOrNothing.status).toBe(422);
      expect(allOrNothing.body.results.map((r: { error: { code: string } }) => r.error.code)).toEqual(['VALIDATION_ERROR', 'DUPLICATE_EMAIL', 'ROLLED_BACK']);
      expect(await t.sql('SELECT 1 FROM users WHERE email = $1', [`${tg}fresh@example.com`])).toHaveLength(0);
    });

    it('emails compare as the unique index compares them (lower-cased by PostgreSQL): in a batch, in filters', async () => {
      const tg = tag();
      // "İ" (U+0130) and "i̇" (i + U+0307): JavaScript lower-cases the first into the second; PostgreSQL does not.
      const dotted = `${tg}\u0130@example.com`;
      const combining = `${tg}i\u0307@example.com`;
      const res = await bulk({ users: [{ email: dotted, first_name: 'Dotted', last_name: 'Capital' }, { email: combining, first_name: 'Combining', last_name: 'Dot' }] });
      expect({ status: res.status, summary: res.body.summary }).toEqual({ status: 200, summary: { total: 2, successful: 2, failed: 0 } });
      const [a, b] = res.body.results.map((r: { user: { id: string } }) => r.user.id);
      const f = (filters: unknown) => ({ filters: JSON.stringify(filters) });
      expect(ids(await search(f({ email: dotted })))).toEqual([a]);
      expect(ids(await search(f({ email: { eq: ` ${combining} ` } })))).toEqual([b]);
      expect(sorted(ids(await search(f({ email: { in: [dotted, combining] } }))))).toEqual(sorted([a, b]));
      expect(ids(await search(f({ email: { in: [dotted] } })))).toEqual([a]);
    });

    it('size and shape: 101 or 0 users are 422 VALIDATION_ERROR, a missing users is 400 MISSING_REQUIRED_FIELD', async () => {
      const tg = tag();
      const countBefore = await countUsers();
      const many = Array.from({ length: 101 }, (_, i) => ({ email: `${tg}${i}x@example.com`, first_name: 'Many', last_name: `N${i}` }));
      const tooMany = await bulk({ users: many });
      expectError(tooMany, 422, 'VALIDATION_ERROR', '101 users');
      expect(JSON.stringify(tooMany.body.error.details ?? [])).toContain('users');
      expectError(await bulk({ users: [] }), 422, 'VALIDATION_ERROR', '0 users');
      expectError(await bulk({}), 400, 'MISSING_REQUIRED_FIELD', 'missing users');
      expectError(await bulk({ options: { fail_on_error: true } }), 400, 'MISSING_REQUIRED_FIELD', 'only options');
      expect(await countUsers()).toBe(countBefore);

      // Exactly 100 is fine.
      const hundred = await bulk({ users: many.slice(0, 100) });
      expect({ status: hundred.status, summary: hundred.body.summary }).toEqual({ status: 200, summary: { total: 100, successful: 100, failed: 0 } });
      expect(await countUsers()).toBe(countBefore + 100);
    });
  });

  it('tenant isolation: another organization never sees, reads, changes or deletes these users; emails are unique per organization', async () => {
    const tg = tag();
    const org1User = await createUser({ email: `${tg}iso@example.com`, first_name: 'Isolde', last_name: 'Tenant', metadata: { department: 'engineering' } });
    const org2 = await t.http().post('/v2/admin/organizations').set('Authorization', `Bearer ${token}`).send({ name: `Other ${tg}`, plan: 'professional' }).expect(201);
    const org2Id: string = org2.body.organization.id;
    const other = await tokenFor(org2.body.api_key.key);
    const own = await createUser({ email: `${tg}own@example.com`, first_name: 'Owen', last_name: 'Tenant' }, other);

    const org1Ids = (await t.sql<{ id: string }>('SELECT id FROM users WHERE organization_id = $1', [orgId])).map((r) => r.id);
    expect(org1Ids.length).toBeGreaterThan(1);
    expect(org1Ids).toContain(org1User.id);

    // Lists and search.
    const listed = await list({ limit: 100 }, other);
    expect(ids(listed)).toEqual([own.id]);
    expect(listed.pagination.total).toBe(1);
    const walked = await walk('/v2/users', { limit: 1, sort: 'created_at:asc' }, other);
    expect(walked.flatMap(ids)).toEqual([own.id]);
    for (const params of [{ search: org1User.email }, { search: 'isolde' }, { role: 'user', limit: 100 }, { status: 'suspended' }, { status: 'deleted' }]) {
      const page = await list(params, other);
      expect(ids(page).filter((id) => org1Ids.includes(id))).toEqual([]);
    }
    expect((await list({ search: org1User.email }, other)).pagination.total).toBe(0);
    const searches = [
      { q: org1User.email },
      { q: 'isolde tenant' },
      { filters: JSON.stringify({ email: org1User.email }) },
      { filters: JSON.stringify({ id: org1User.id }) },
      { filters: JSON.stringify({ 'metadata.department': 'engineering' }) },
      { filters: JSON.stringify({ role: { in: ['admin', 'moderator', 'user'] } }), limit: 100 },
      { filters: JSON.stringify({ status: { in: ['active', 'suspended', 'inactive', 'deleted'] } }), limit: 100 },
    ];
    for (const params of searches) {
      const page = await search(params, other);
      expect({ params, leaked: ids(page).filter((id) => id !== own.id) }).toEqual({ params, leaked: [] });
    }
    expect((await search({ q: org1User.email }, other)).data).toEqual([]);
    // Org 1 still finds its user.
    expect(ids(await list({ search: org1User.email }))).toEqual([org1User.id]);

    // A cursor of org 1 means nothing to org 2.
    const org1Page = await list({ limit: 5, sort: 'created_at:asc' });
    expectError(await get(`/v2/users?${qs({ limit: 5, sort: 'created_at:asc', cursor: org1Page.pagination.next_cursor! })}`, other), 400, 'INVALID_CURSOR', 'org 1 cursor in org 2');

    // Single-user operations: 404 USER_NOT_FOUND, nothing changed.
    expectError(await get(`/v2/users/${org1User.id}`, other), 404, 'USER_NOT_FOUND', 'GET');
    expectError(await t.http().put(`/v2/users/${org1User.id}`).set('Authorization', `Bearer ${other}`).send({ first_name: 'Hijacked', status: 'suspended' }), 404, 'USER_NOT_FOUND', 'PUT');
    expectError(await t.http().patch(`/v2/users/${org1User.id}`).set('Authorization', `Bearer ${other}`).send({ first_name: 'Hijacked' }), 404, 'USER_NOT_FOUND', 'PATCH');
    expectError(await t.http().delete(`/v2/users/${org1User.id}`).set('Authorization', `Bearer ${other}`), 404, 'USER_NOT_FOUND', 'DELETE');
    expectError(await t.http().delete(`/v2/users/${org1User.id}?soft_delete=true`).set('Authorization', `Bearer ${other}`), 404, 'USER_NOT_FOUND', 'soft DELETE');
    const [untouched] = await t.sql<{ first_name: string; status: string; organization_id: string; deleted_at: Date | null }>(
      'SELECT first_name, status, organization_id, deleted_at FROM users WHERE id = $1',
      [org1User.id],
    );
    expect(untouched).toEqual({ first_name: 'Isolde', status: 'active', organization_id: orgId, deleted_at: null });

    // Emails are unique per organization: org 2 may create org 1's email, in bulk too.
    const res = await bulk({ users: [{ email: org1User.email, first_name: 'Isolde', last_name: 'Elsewhere' }, { email: own.email, first_name: 'Dup', last_name: 'Own' }] }, other);
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 200 });
    expect(res.body.results[0]).toMatchObject({ index: 0, success: true, user: { email: org1User.email } });
    expect(res.body.results[1]).toMatchObject({ index: 1, success: false, error: { code: 'DUPLICATE_EMAIL' } });
    const both = await t.sql<{ id: string; organization_id: string; first_name: string }>(
      'SELECT id, organization_id, first_name FROM users WHERE email_lower = $1 ORDER BY created_at',
      [org1User.email.toLowerCase()],
    );
    expect(both.map((r) => [r.organization_id, r.first_name])).toEqual([
      [orgId, 'Isolde'],
      [org2Id, 'Isolde'],
    ]);
    expect(both[1]!.id).toBe(res.body.results[0].user.id);
    // Each organization sees only its own copy.
    expect(ids(await list({ search: org1User.email }))).toEqual([org1User.id]);
    expect(ids(await list({ search: org1User.email }, other))).toEqual([both[1]!.id]);
  });
});
