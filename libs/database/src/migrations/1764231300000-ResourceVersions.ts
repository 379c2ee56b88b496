import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Roles, webhooks and organizations get a version that every write increments, for their ETags
 * and If-Match (CONTRACT §2), as users have had from the start.
 */
export class ResourceVersions1764231300000 implements MigrationInterface {
  name = 'ResourceVersions1764231300000';

  async up(q: QueryRunner): Promise<void> {
    for (const table of ['roles', 'webhooks', 'organizations']) {
      await q.query(`ALTER TABLE "${table}" ADD "version" integer NOT NULL DEFAULT 1`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of ['roles', 'webhooks', 'organizations']) {
      await q.query(`ALTER TABLE "${table}" DROP COLUMN "version"`);
    }
  }
}
