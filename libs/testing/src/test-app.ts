import { NestFastifyApplication } from '@nestjs/platform-fastify';
import { AppConfig, loadConfig } from '@app/config';
import { OutboxDispatcher } from '@app/events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import request from 'supertest';
import type TestAgent from 'supertest/lib/agent';
import { DataSource } from 'typeorm';
import { createApp } from '../../../apps/api/src/create-app';
import { createTestDatabase } from './test-database';

export const TEST_BOOTSTRAP_KEY = 'sk_test_bootstrapKeyForTheTestSuite0001';

export interface TestApp {
  app: NestFastifyApplication;
  config: AppConfig;
  databaseUrl: string;
  dataDir: string;
  http: () => TestAgent;
  dataSource: DataSource;
  sql: <T = Record<string, unknown>>(text: string, params?: unknown[]) => Promise<T[]>;
  /** Waits until every committed domain event has been handed to its listeners. */
  drainEvents: () => Promise<void>;
  close: () => Promise<void>;
}

/**
 * The real application on a database of its own, driven through HTTP with supertest.
 * One per test file: create it in beforeAll, close it in afterAll.
 */
export async function createTestApp(env: Record<string, string> = {}): Promise<TestApp> {
  const database = await createTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), 'um-test-data-'));
  const config = loadConfig({
    LOG_LEVEL: 'silent',
    DATA_DIR: dataDir,
    BOOTSTRAP_API_KEY: TEST_BOOTSTRAP_KEY,
    REDIS_URL: process.env.REDIS_URL,
    REDIS_KEY_PREFIX: `test:${randomBytes(6).toString('hex')}:`,
    ...env,
  });
  const app = await createApp(config, database.url);
  const dataSource = app.get(DataSource);
  return {
    app,
    config,
    databaseUrl: database.url,
    dataDir,
    http: () => request(app.getHttpServer()),
    dataSource,
    sql: (text, params) => dataSource.query(text, params),
    drainEvents: () => app.get(OutboxDispatcher).settle(),
    close: async () => {
      await app.close();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** An access token for the bootstrap key (every scope): what most suites act as. */
export async function bootstrapToken(t: TestApp): Promise<string> {
  const res = await t.http().post('/v2/auth/token').send({ grant_type: 'client_credentials', api_key: TEST_BOOTSTRAP_KEY });
  if (res.status !== 200) throw new Error(`the bootstrap key's token request answered ${res.status}: ${res.text}`);
  return res.body.access_token as string;
}
