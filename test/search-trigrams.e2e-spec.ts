import { bootstrapToken, createTestApp, TestApp } from '@app/testing';
import { SearchIndexCleanup } from '../apps/api/src/modules/users/search-index-cleanup.service';
import { SearchTrigramStats } from '../apps/api/src/modules/users/search-trigram-stats.service';
import { UsersRepository } from '../apps/api/src/modules/users/users.repository';

/**
 * Text search looks up the cheap part of a word in the trigram index (search-trigrams.ts): with
 * trigram frequencies sampled from an organization where every email starts with "bench", the
 * index looks up `421339@` for `q=bench421339@`. What a search finds must not change: every answer
 * here is compared with the users whose text holds the word, computed from the database.
 */
describe('Search: the trigram index looks up the rare part of a word (GET /users/search, GET /users)', () => {
  let t: TestApp;
  let token: string;
  let orgId: string;
  const FIRST = ['James', 'Mary', 'Benchley', 'Ana'];
  const LAST = ['Smith', 'Bench', 'Okafor', 'Lee'];

  const get = (path: string) => t.http().get(path).set('Authorization', `Bearer ${token}`);
  /** Every user id a search returns, walking its cursor pages. */
  const searchAll = async (path: string) => {
    const found: string[] = [];
    let url = path;
    for (let page = 0; page < 50; page++) {
      const res = await get(url);
      expect({ url, status: res.status, error: res.body.error }).toEqual({ url, status: 200, error: undefined });
      found.push(...(res.body.data as { id: string }[]).map((u) => u.id));
      const next = res.body.pagination.next_cursor as string | null;
      if (!next) return found.sort();
      url = `${path}&cursor=${encodeURIComponent(next)}`;
    }
    throw new Error('cursor walk does not end');
  };
  /** The users of the organization whose names-and-email text holds every word (case-insensitively), as PostgreSQL lower-cases. */
  const expected = async (words: string[], column = "u.first_name || ' ' || u.last_name || ' ' || u.email") =>
    (
      await t.sql<{ id: string }>(
        `SELECT u.id FROM users u WHERE u.organization_id = $1 AND u.deleted_at IS NULL
            AND (SELECT bool_and(strpos(lower(${column}), lower(w)) > 0) FROM unnest($2::text[]) AS w)`,
        [orgId, words],
      )
    )
      .map((r) => r.id)
      .sort();

  beforeAll(async () => {
    t = await createTestApp();
    token = await bootstrapToken(t);
    // 1,200 users whose emails all start with "bench" (as the benchmark's do), and a few that hold a
    // searched email inside a longer one or in another case.
    const users: Record<string, string>[] = [];
    for (let n = 1; n <= 1200; n++) users.push({ email: `bench${n}@example.com`, first_name: FIRST[n % 4]!, last_name: LAST[(n >> 2) % 4]! });
    users.push({ email: 'xbench421@example.com', first_name: 'X', last_name: 'Bench' });
    users.push({ email: 'BENCH42@Example.org', first_name: 'Upper', last_name: 'Case' });
    users.push({ email: 'per%cent_under@example.com', first_name: 'Meta', last_name: 'Back\\slash' });
    for (let i = 0; i < users.length; i += 100) {
      const res = await t.http().post('/v2/users/bulk').set('Authorization', `Bearer ${token}`).send({ users: users.slice(i, i + 100) });
      expect({ status: res.status, failed: res.body.summary?.failed, results: res.body.summary?.failed ? res.body.results.filter((r: { success: boolean }) => !r.success) : [] }).toEqual({ status: 200, failed: 0, results: [] });
    }
    orgId = (await t.sql<{ organization_id: string }>(`SELECT organization_id FROM users WHERE email = 'bench1@example.com'`))[0]!.organization_id;
    // The app sampled an empty table at start. The table has since grown by over 1,000 rows: the
    // stats sample it again on their own within seconds (no refresh() here), not after SEARCH_STATS_REFRESH_SECONDS.
    const stats = t.app.get(SearchTrigramStats);
    const began = Date.now();
    while (stats.indexedPart('bench421339@') === 'bench421339@' && Date.now() - began < 40_000) await new Promise((r) => setTimeout(r, 250));
    sampledAfterGrowthMs = Date.now() - began;
  }, 120_000);
  let sampledAfterGrowthMs: number;
  afterAll(async () => {
    await t.close();
  });

  it('a table that grew by half (and over 1,000 users) since the last sample is sampled again within seconds, unasked', () => {
    expect(t.config.searchStatsRefreshSeconds).toBe(600);
    expect(sampledAfterGrowthMs).toBeLessThan(40_000);
  });

  it('after sampling, a word whose first trigrams every user holds is looked up by its rare part', () => {
    const stats = t.app.get(SearchTrigramStats);
    for (const word of ['bench421339@', 'bench42@example.com', 'Bench1199@']) {
      const part = stats.indexedPart(word);
      expect({ word, part, isPart: word.includes(part) && part !== word }).toEqual({ word, part, isPart: true });
      expect(part.toLowerCase()).not.toContain('ben');
    }
    // A word without a rarer part is looked up whole.
    expect(stats.indexedPart('bench')).toBe('bench');
  });

  it('q finds exactly the users whose text holds every word, whichever part the index looked up', async () => {
    const queries = [
      'bench421@', // bench421@ and xbench421@
      'BENCH421@EXAMPLE.COM',
      'bench42@', // bench42@example.com and BENCH42@Example.org
      'bench1@example.com',
      'h1199@',
      'ench12',
      '1199@exa',
      'example.com',
      '@example.org',
      'bench',
      'benchley bench12',
      'smith bench11',
      'per%cent_under@',
      'k\\slash per%c',
      'r%c',
      'bench9999@', // nobody
    ];
    // Decoys: a user whose text holds the part the index looks up but not the word (found by the
    // index, turned away by the check of the whole word).
    const stats = t.app.get(SearchTrigramStats);
    let decoys = 0;
    for (const word of queries.flatMap((q) => q.split(/\s+/))) {
      const part = stats.indexedPart(word);
      if (part === word) continue;
      const res = await t.http().post('/v2/users').set('Authorization', `Bearer ${token}`).send({ email: `decoy${decoys}@decoy.test`, first_name: `Decoy ${part}`, last_name: 'Z' });
      expect(res.status).toBe(201);
      decoys++;
    }
    expect(decoys).toBeGreaterThanOrEqual(5);
    for (const q of queries) {
      const found = await searchAll(`/v2/users/search?q=${encodeURIComponent(q)}&limit=100`);
      const want = await expected(q.split(/\s+/));
      expect({ q, found }).toEqual({ q, found: want });
    }
    expect(await expected(['bench421@'])).toHaveLength(2);
    expect(await expected(['bench42@'])).toHaveLength(2);
  });

  it('GET /users?search= and the contains filter on email and names find the same users', async () => {
    for (const word of ['bench421@', 'h1199@', 'bench42@']) {
      const listed = await searchAll(`/v2/users?search=${encodeURIComponent(word)}&limit=100`);
      expect({ word, listed }).toEqual({ word, listed: await expected([word]) });
      const filters = encodeURIComponent(JSON.stringify({ email: { contains: word } }));
      const filtered = await searchAll(`/v2/users/search?filters=${filters}&limit=100`);
      expect({ word, filtered }).toEqual({ word, filtered: await expected([word], 'u.email') });
    }
    const filters = encodeURIComponent(JSON.stringify({ last_name: { contains: 'Bench' }, first_name: { contains: 'benchle' } }));
    const filtered = await searchAll(`/v2/users/search?filters=${filters}&limit=100`);
    const want = (
      await t.sql<{ id: string }>(
        `SELECT id FROM users WHERE organization_id = $1 AND deleted_at IS NULL AND last_name ILIKE '%bench%' AND first_name ILIKE '%benchle%'`,
        [orgId],
      )
    )
      .map((r) => r.id)
      .sort();
    expect(want.length).toBeGreaterThan(0);
    expect(filtered).toEqual(want);
  });
});

/**
 * The trigram index's pending list (every search reads all of it) is merged in the background every
 * SEARCH_INDEX_CLEANUP_INTERVAL_MS after a search has read it, one process at a time.
 */
describe('Search index: the pending list is merged in the background (SEARCH_INDEX_CLEANUP_INTERVAL_MS)', () => {
  const pendingPages = async (t: TestApp) =>
    Number((await t.sql<{ pages: string }>(`SELECT gin_clean_pending_list('"IDX_users_search_trgm"'::regclass) AS pages`))[0]!.pages);
  const createUsers = async (t: TestApp, token: string, prefix: string) => {
    const users = Array.from({ length: 100 }, (_, i) => ({ email: `${prefix}${i}@example.com`, first_name: `First${i}`, last_name: `Last${i}` }));
    const res = await t.http().post('/v2/users/bulk').set('Authorization', `Bearer ${token}`).send({ users });
    expect({ status: res.status, failed: res.body.summary?.failed }).toEqual({ status: 200, failed: 0 });
  };

  it('with the interval at 0 new trigrams wait in the list; a merge empties it, and waits for none while another process merges', async () => {
    const t = await createTestApp({ SEARCH_INDEX_CLEANUP_INTERVAL_MS: '0' });
    try {
      const token = await bootstrapToken(t);
      const cleanup = t.app.get(SearchIndexCleanup);
      await createUsers(t, token, 'a');
      expect(await pendingPages(t)).toBeGreaterThan(0); // the writes had left pages in the list (this call merged them)
      await createUsers(t, token, 'b');
      await cleanup.clean();
      expect(await pendingPages(t)).toBe(0);
      // Another process holding the merge's advisory lock: this one skips its turn instead of queueing.
      await createUsers(t, token, 'c');
      const other = t.dataSource.createQueryRunner();
      await other.connect();
      try {
        await other.startTransaction();
        await other.query(`SELECT pg_advisory_xact_lock(hashtext('um:gin_clean_pending_list:IDX_users_search_trgm'))`);
        expect(await t.app.get(UsersRepository).cleanSearchIndexPendingList()).toBeNull();
        await other.commitTransaction();
      } finally {
        await other.release();
      }
      expect(await t.app.get(UsersRepository).cleanSearchIndexPendingList()).toBeGreaterThan(0);
    } finally {
      await t.close();
    }
  });

  it('with an interval, the list is merged in the background once a search has read it (writes alone leave it to the writers)', async () => {
    const t = await createTestApp({ SEARCH_INDEX_CLEANUP_INTERVAL_MS: '100' });
    try {
      const token = await bootstrapToken(t);
      await createUsers(t, token, 'd');
      await new Promise((r) => setTimeout(r, 500));
      expect(await pendingPages(t)).toBeGreaterThan(0); // nobody searched: not merged (this call merges)
      await createUsers(t, token, 'e');
      const res = await t.http().get('/v2/users/search?q=e42@example').set('Authorization', `Bearer ${token}`).expect(200);
      expect(res.body.data.map((u: { email: string }) => u.email)).toEqual(['e42@example.com']);
      await new Promise((r) => setTimeout(r, 500));
      expect(await pendingPages(t)).toBe(0);
    } finally {
      await t.close();
    }
  });
});
