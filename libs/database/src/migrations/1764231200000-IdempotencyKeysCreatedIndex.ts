import { MigrationInterface, QueryRunner } from 'typeorm';

/** Expired Idempotency-Key records are deleted by creation time, in batches, through this index. */
export class IdempotencyKeysCreatedIndex1764231200000 implements MigrationInterface {
  name = 'IdempotencyKeysCreatedIndex1764231200000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX "IDX_idempotency_keys_created" ON "idempotency_keys" ("created_at")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX "IDX_idempotency_keys_created"`);
  }
}
