import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Events published in one transaction can share a timestamp; a sequence keeps them in the order
 * they were published (user.updated before user.role_changed), which webhooks promise per user.
 */
export class AddOutboxSequence1764230900000 implements MigrationInterface {
  name = 'AddOutboxSequence1764230900000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "outbox_events" ADD "seq" BIGSERIAL NOT NULL`);
    await q.query(`CREATE INDEX "IDX_outbox_events_pending_seq" ON "outbox_events" ("seq") WHERE "dispatched_at" IS NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX "IDX_outbox_events_pending_seq"`);
    await q.query(`ALTER TABLE "outbox_events" DROP COLUMN "seq"`);
  }
}
