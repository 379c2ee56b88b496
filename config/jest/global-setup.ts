import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedPostgres } from '../../libs/database/src/embedded-postgres';
import { MIGRATIONS } from '../../libs/database/src/migrations';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { DataSource } from 'typeorm';

export const STATE_FILE = join(tmpdir(), `um-jest-${process.pid}.json`);

/**
 * One PostgreSQL for the run (the embedded one, or the server in DATABASE_URL) and one migrated
 * template database; each test file then clones its own database from the template.
 */
export default async function globalSetup(): Promise<void> {
  let adminUrl = process.env.DATABASE_URL;
  let embeddedDir: string | undefined;
  if (!adminUrl) {
    embeddedDir = mkdtempSync(join(tmpdir(), 'um-test-pg-'));
    const db = await startEmbeddedPostgres({ dir: embeddedDir, database: 'postgres', sharedBuffers: '128MB' });
    (globalThis as { __EMBEDDED_PG__?: unknown }).__EMBEDDED_PG__ = db;
    adminUrl = db.url;
  }
  const template = `um_template_${randomBytes(4).toString('hex')}`;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${template}"`);
  await admin.end();

  const templateUrl = new URL(adminUrl);
  templateUrl.pathname = `/${template}`;
  const dataSource = new DataSource({ type: 'postgres', url: templateUrl.toString(), migrations: MIGRATIONS });
  await dataSource.initialize();
  await dataSource.runMigrations({ transaction: 'each' });
  await dataSource.destroy();

  process.env.TEST_ADMIN_DATABASE_URL = adminUrl;
  process.env.TEST_TEMPLATE_DATABASE = template;
  writeFileSync(STATE_FILE, JSON.stringify({ adminUrl, template, embeddedDir }));
}
