import { createTestApp, TestApp } from '@app/testing';

describe('Schema: migrations are the only source of the schema', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => {
    await t.close();
  });

  it('the entities and the migrations agree (generating a migration would yield nothing)', async () => {
    const pending = await t.dataSource.driver.createSchemaBuilder().log();
    expect(pending.upQueries.map((q) => q.query)).toEqual([]);
  });

  it('never synchronizes the schema from the entities', () => {
    expect(t.dataSource.options.synchronize).toBe(false);
  });

  it('leaves room on users pages for HOT updates of sign-ins (fillfactor 90)', async () => {
    const rows = await t.sql<{ relname: string; reloptions: string[] }>(
      `SELECT relname, reloptions FROM pg_class WHERE relname IN ('users', 'refresh_tokens') AND relkind = 'r' ORDER BY relname`,
    );
    expect(rows).toEqual([
      { relname: 'refresh_tokens', reloptions: ['fillfactor=90'] },
      { relname: 'users', reloptions: ['fillfactor=90'] },
    ]);
  });

  it('has an index for each sort of names, dates and email, and the trigram index for text search', async () => {
    const rows = await t.sql<{ indexdef: string }>(`SELECT indexdef FROM pg_indexes WHERE tablename = 'users' ORDER BY indexname`);
    const defs = rows.map((r) => r.indexdef.replace(/^.* USING /, ''));
    for (const columns of ['(organization_id, first_name, id)', '(organization_id, last_name, id)', '(organization_id, created_at, id)', '(organization_id, updated_at, id)', '(organization_id, email_lower)']) {
      expect(defs).toContain(`btree ${columns}`);
    }
    expect(defs.some((d) => d.startsWith('gin ') && d.includes('gin_trgm_ops'))).toBe(true);
    // status=deleted: a partial index of the soft-deleted users only.
    expect(defs).toContain('btree (organization_id, deleted_at) WHERE (deleted_at IS NOT NULL)');
  });

  it('serves sort=last_login and sort=login_count from user_login_sort_keys, leaving the users table without those indexes', async () => {
    const keys = await t.sql<{ indexdef: string }>(`SELECT indexdef FROM pg_indexes WHERE tablename = 'user_login_sort_keys' ORDER BY indexname`);
    expect(keys.map((r) => r.indexdef.replace(/^.* USING /, ''))).toEqual([
      'btree (organization_id, last_login, user_id)',
      'btree (organization_id, login_count, user_id)',
      'btree (user_id)',
    ]);
    // An index on either column of users would make every sign-in a non-HOT update.
    const onUsers = await t.sql<{ indexdef: string }>(`SELECT indexdef FROM pg_indexes WHERE tablename = 'users'`);
    expect(onUsers.filter((r) => /last_login|login_count/.test(r.indexdef))).toEqual([]);
  });

  it('has run every migration', async () => {
    expect(await t.dataSource.showMigrations()).toBe(false);
  });
});
