import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The dispatcher claims pending events in publication order through IDX_outbox_events_pending_seq;
 * the older (next_attempt_at, occurred_at) index served no query and cost a write per event.
 */
export class DropOutboxPendingIndex1764231100000 implements MigrationInterface {
  name = 'DropOutboxPendingIndex1764231100000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX "IDX_outbox_events_pending"`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX "IDX_outbox_events_pending" ON "outbox_events" ("next_attempt_at", "occurred_at") WHERE "dispatched_at" IS NULL`);
  }
}
