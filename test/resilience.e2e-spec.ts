import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withoutStatementTimeout } from '@app/database';
import { bootstrapToken, createTestApp, createTestDatabase, startApiProcess, TEST_BOOTSTRAP_KEY, TestApp, untilWaitingForLock } from '@app/testing';
import { MigrationInterface, QueryRunner } from 'typeorm';

describe('Resilience and hygiene', () => {
  describe('with Redis configured but unreachable', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp({ REDIS_URL: 'redis://127.0.0.1:1' });
    });
    afterAll(async () => {
      await t.close();
    });

    it('keeps serving (rate limits and revocation fall back) and reports degraded health', async () => {
      const health = await t.http().get('/health').expect(200);
      expect(health.body.status).toBe('degraded');
      expect(health.body.checks.cache).toMatchObject({ healthy: false, backend: 'redis' });
      expect(health.body.checks.database.healthy).toBe(true);
      const issued = await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY }).expect(200);
      const token = issued.body.access_token as string;
      const list = await t.http().get('/v2/users').set('Authorization', `Bearer ${token}`).expect(200);
      expect(list.headers['x-ratelimit-limit']).toBeDefined();
      await t.http().post('/v2/auth/revoke').set('Authorization', `Bearer ${token}`).expect(200);
      const revoked = await t.http().get('/v2/users').set('Authorization', `Bearer ${token}`).expect(401);
      expect(revoked.body.error.code).toBe('AUTH_TOKEN_INVALID');
    });
  });

  describe('with a statement timeout (DATABASE_STATEMENT_TIMEOUT_MS)', () => {
    let t: TestApp;
    let token: string;
    beforeAll(async () => {
      // Migrations ran at start under this timeout too: they are exempt from it.
      t = await createTestApp({ DATABASE_STATEMENT_TIMEOUT_MS: '1500' });
      token = await bootstrapToken(t);
    });
    afterAll(async () => {
      await t.close();
    });

    it('migrations run without it: a step longer than the timeout completes inside a migration, and is cancelled outside one', async () => {
      class SlowStep1764239999999 implements MigrationInterface {
        name = 'SlowStep1764239999999';
        async up(q: QueryRunner): Promise<void> {
          await q.query('SELECT pg_sleep(1.7)');
        }
        async down(): Promise<void> {}
      }
      const run = async (migration: MigrationInterface) => {
        const runner = t.dataSource.createQueryRunner();
        await runner.connect();
        await runner.startTransaction();
        try {
          await migration.up(runner);
          await runner.commitTransaction();
          return 'done';
        } catch (error) {
          await runner.rollbackTransaction();
          return (error as { driverError?: { code?: string } }).driverError?.code ?? String(error);
        } finally {
          await runner.release();
        }
      };
      expect(await run(new SlowStep1764239999999())).toBe('57014');
      const Exempt = withoutStatementTimeout(SlowStep1764239999999);
      const exempt = new Exempt();
      expect(exempt.name).toBe('SlowStep1764239999999');
      expect(await run(exempt)).toBe('done');
    });

    it('a request that PostgreSQL aborts to break a deadlock is 503 SERVICE_UNAVAILABLE with Retry-After, and wrote nothing', async () => {
      const auth = { Authorization: `Bearer ${token}` };
      const probe = await t.http().post('/v2/users').set(auth).send({ email: 'deadlock-probe@example.com', first_name: 'Probe', last_name: 'User' }).expect(201);
      const [{ organization_id: orgId }] = (await t.sql<{ organization_id: string }>('SELECT organization_id FROM users WHERE id = $1', [probe.body.id])) as [{ organization_id: string }];
      const [x, y] = ['deadlock-a@example.com', 'deadlock-b@example.com'];
      const insertUser = (q: QueryRunner, id: string, email: string) =>
        q.query(`INSERT INTO users (id, organization_id, email, email_lower, first_name, last_name) VALUES ($1, $2, $3, lower($3), 'Other', 'Writer')`, [id, orgId, email]);
      // Another transaction inserts the second email; the bulk inserts the first, then waits for the
      // second; the other transaction then inserts the first: a deadlock, which PostgreSQL breaks by
      // aborting the bulk (it has waited longer).
      const other = t.dataSource.createQueryRunner();
      await other.connect();
      await other.startTransaction();
      try {
        await insertUser(other, 'user_deadlockother2', y);
        const bulk = t.http().post('/v2/users/bulk').set(auth).send({ users: [{ email: x, first_name: 'A', last_name: 'A' }, { email: y, first_name: 'B', last_name: 'B' }] }).then((r) => r);
        await untilWaitingForLock(t, '%jsonb_to_recordset%', 'the bulk');
        const otherInsert = insertUser(other, 'user_deadlockother1', x).then(() => 'inserted', (e: { code?: string }) => e.code);
        const res = await bulk;
        expect({ status: res.status, code: res.body.error?.code, retryAfter: res.headers['retry-after'] }).toEqual({ status: 503, code: 'SERVICE_UNAVAILABLE', retryAfter: '1' });
        expect(res.body.error.message).toContain('deadlock');
        expect(await otherInsert).toBe('inserted');
      } finally {
        await other.rollbackTransaction();
        await other.release();
      }
      expect(await t.sql('SELECT 1 FROM users WHERE email_lower = ANY($1)', [[x, y]])).toEqual([]);
      expect(await t.sql(`SELECT 1 FROM outbox_events WHERE type = 'user.created' AND data->'user'->>'email' = ANY($1)`, [[x, y]])).toEqual([]);
      // The same bulk, retried, goes through.
      const retried = await t.http().post('/v2/users/bulk').set(auth).send({ users: [{ email: x, first_name: 'A', last_name: 'A' }, { email: y, first_name: 'B', last_name: 'B' }] });
      expect([retried.status, retried.body.summary.successful]).toEqual([200, 2]);
    });

    it('a bulk inserts its emails in one order (the unique index\'s), so writers inserting the same emails wait for each other instead of deadlocking', async () => {
      const auth = { Authorization: `Bearer ${token}` };
      const probe = await t.http().post('/v2/users').set(auth).send({ email: 'order-probe@example.com', first_name: 'Probe', last_name: 'User' }).expect(201);
      const [{ organization_id: orgId }] = (await t.sql<{ organization_id: string }>('SELECT organization_id FROM users WHERE id = $1', [probe.body.id])) as [{ organization_id: string }];
      const [first, second] = ['order-a@example.com', 'order-b@example.com'];
      const other = t.dataSource.createQueryRunner();
      await other.connect();
      await other.startTransaction();
      try {
        const insertUser = (id: string, email: string) =>
          other.query(`INSERT INTO users (id, organization_id, email, email_lower, first_name, last_name) VALUES ($1, $2, $3, lower($3), 'Other', 'Writer')`, [id, orgId, email]);
        await insertUser('user_orderother1', first);
        // Sent in the other order: the bulk still starts with the first email, and waits there
        // before it has written the second, which the other transaction can then take at once.
        const bulk = t.http().post('/v2/users/bulk').set(auth).send({ users: [{ email: second, first_name: 'B', last_name: 'B' }, { email: first.toUpperCase(), first_name: 'A', last_name: 'A' }] }).then((r) => r);
        await untilWaitingForLock(t, '%jsonb_to_recordset%', 'the bulk');
        await insertUser('user_orderother2', second);
        await other.rollbackTransaction();
        const res = await bulk;
        expect([res.status, res.body.summary]).toEqual([200, { total: 2, successful: 2, failed: 0 }]);
      } finally {
        if (other.isTransactionActive) await other.rollbackTransaction();
        await other.release();
      }
    });

    it('a statement that runs too long is cancelled: 503 SERVICE_UNAVAILABLE, nothing written, the API keeps serving', async () => {
      const auth = { Authorization: `Bearer ${token}` };
      const created = await t.http().post('/v2/users').set(auth).send({ email: 'slow@example.com', first_name: 'Before', last_name: 'Lock' }).expect(201);
      const id = created.body.id as string;
      const etag = created.headers.etag as string;
      // Another session holds the user's row: the update waits for it until its statement times out.
      const holder = t.dataSource.createQueryRunner();
      await holder.connect();
      await holder.startTransaction();
      try {
        await holder.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [id]);
        const slow = await t.http().put(`/v2/users/${id}`).set(auth).send({ first_name: 'After' });
        expect({ status: slow.status, code: slow.body.error?.code }).toEqual({ status: 503, code: 'SERVICE_UNAVAILABLE' });
        expect(slow.body.error.message).toContain('DATABASE_STATEMENT_TIMEOUT_MS');
        expect(slow.body.error.request_id).toEqual(expect.any(String));
      } finally {
        await holder.rollbackTransaction();
        await holder.release();
      }
      // Nothing was written: same name, same ETag, no user.updated.
      const read = await t.http().get(`/v2/users/${id}`).set(auth).expect(200);
      expect({ first_name: read.body.first_name, etag: read.headers.etag }).toEqual({ first_name: 'Before', etag });
      const events = await t.sql(`SELECT 1 FROM outbox_events WHERE type = 'user.updated' AND data->'user'->>'id' = $1`, [id]);
      expect(events).toHaveLength(0);
      // The cancelled statement's connection went back to the pool in working order.
      for (let i = 0; i < 12; i++) {
        const ok = await t.http().put(`/v2/users/${id}`).set(auth).send({ first_name: `After${i}` });
        expect({ i, status: ok.status }).toEqual({ i, status: 200 });
      }
    });
  });

  it('never writes API keys, tokens or passwords to the logs', async () => {
    const db = await createTestDatabase();
    const dataDir = mkdtempSync(join(tmpdir(), 'um-logs-'));
    const api = await startApiProcess({ DATABASE_URL: db.url, DATA_DIR: dataDir, BOOTSTRAP_API_KEY: TEST_BOOTSTRAP_KEY, LOG_LEVEL: 'trace' });
    try {
      const call = async (path: string, init: RequestInit = {}) => {
        const res = await fetch(`${api.baseUrl}${path}`, { ...init, headers: { 'content-type': 'application/json', ...(init.headers ?? {}) } });
        return (await res.json()) as Record<string, never>;
      };
      const { access_token } = await call('/v2/auth/token', { method: 'POST', body: JSON.stringify({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY }) });
      const auth = { authorization: `Bearer ${access_token}` };
      const created = (await call('/v2/api-keys', { method: 'POST', headers: auth, body: JSON.stringify({ name: 'logged?' }) })) as unknown as { key: string };
      const password = 'Sup3r-Secret-Passw0rd';
      await call('/v2/users', { method: 'POST', headers: auth, body: JSON.stringify({ email: 'log@example.com', first_name: 'L', last_name: 'G', password }) });
      await call('/v2/auth/token', { method: 'POST', body: JSON.stringify({ grant_type: 'client_credentials', api_key: 'sk_live_wrongwrongwrongwrongwrong00' }) });
      await call('/v2/auth/token', { method: 'POST', body: JSON.stringify({ grant_type: 'client_credentials', api_key: created.key, extra: 1 }) });
      await call('/v2/users', { method: 'POST', headers: auth, body: JSON.stringify({ email: 'bad', first_name: 'L', last_name: 'G', password }) });
      await api.stop();
      const output = api.output();
      expect(output).toMatch(/request completed/);
      for (const secret of [TEST_BOOTSTRAP_KEY, created.key, access_token as string, password]) {
        expect(output).not.toContain(secret);
      }
    } finally {
      await api.stop();
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
