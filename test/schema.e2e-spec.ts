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

  it('has run every migration', async () => {
    expect(await t.dataSource.showMigrations()).toBe(false);
  });
});
