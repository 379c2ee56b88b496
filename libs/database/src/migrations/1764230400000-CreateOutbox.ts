import { MigrationInterface, QueryRunner } from 'typeorm';

export class CreateOutbox1764230400000 implements MigrationInterface {
  name = 'CreateOutbox1764230400000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE EXTENSION IF NOT EXISTS pg_trgm`);
    await q.query(`CREATE EXTENSION IF NOT EXISTS citext`);
    await q.query(`
      CREATE TABLE "outbox_events" (
        "id" text NOT NULL,
        "organization_id" text NOT NULL,
        "type" text NOT NULL,
        "data" jsonb NOT NULL,
        "occurred_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        "dispatched_at" TIMESTAMP WITH TIME ZONE,
        "attempts" integer NOT NULL DEFAULT 0,
        "next_attempt_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        "last_error" text,
        CONSTRAINT "PK_outbox_events" PRIMARY KEY ("id")
      )`);
    await q.query(
      `CREATE INDEX "IDX_outbox_events_pending" ON "outbox_events" ("next_attempt_at", "occurred_at") WHERE "dispatched_at" IS NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "outbox_events"`);
  }
}
