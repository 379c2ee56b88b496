import { MigrationInterface, QueryRunner } from 'typeorm';

/** Webhook endpoints, their deliveries (one per event and endpoint) and every delivery attempt. */
export class CreateWebhooks1764230700000 implements MigrationInterface {
  name = 'CreateWebhooks1764230700000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE "webhooks" ("id" text NOT NULL, "organization_id" text NOT NULL, "url" text NOT NULL, "events" text array NOT NULL, "secret_encrypted" text NOT NULL, "active" boolean NOT NULL DEFAULT true, "disabled_reason" text, "failing_since" TIMESTAMP WITH TIME ZONE, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_9e8795cfc899ab7bdaa831e8527" PRIMARY KEY ("id"))`);
    await q.query(`CREATE INDEX "IDX_webhooks_organization" ON "webhooks"  ("organization_id")`);
    await q.query(`CREATE TABLE "webhook_deliveries" ("id" text NOT NULL, "seq" BIGSERIAL NOT NULL, "organization_id" text NOT NULL, "webhook_id" text NOT NULL, "event_id" text, "event_type" text NOT NULL, "order_key" text NOT NULL, "payload" jsonb NOT NULL, "status" text NOT NULL DEFAULT 'pending', "attempts" integer NOT NULL DEFAULT '0', "next_attempt_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "locked_until" TIMESTAMP WITH TIME ZONE, "last_status_code" integer, "last_error" text, "last_duration_ms" integer, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_535dd409947fb6d8fc6dfc0112a" PRIMARY KEY ("id"))`);
    await q.query(`CREATE INDEX "IDX_webhook_deliveries_order" ON "webhook_deliveries"  ("webhook_id", "order_key", "seq")`);
    await q.query(`CREATE INDEX "IDX_webhook_deliveries_webhook" ON "webhook_deliveries"  ("webhook_id", "seq")`);
    await q.query(`CREATE INDEX "IDX_webhook_deliveries_due" ON "webhook_deliveries"  ("status", "next_attempt_at")`);
    await q.query(`CREATE TABLE "webhook_delivery_attempts" ("id" text NOT NULL, "delivery_id" text NOT NULL, "organization_id" text NOT NULL, "attempt" integer NOT NULL, "status_code" integer, "error" text, "duration_ms" integer NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_59ef9124585b56c18b98548a0c6" PRIMARY KEY ("id"))`);
    await q.query(`CREATE INDEX "IDX_webhook_delivery_attempts_delivery" ON "webhook_delivery_attempts"  ("delivery_id")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "webhook_delivery_attempts"`);
    await q.query(`DROP TABLE "webhook_deliveries"`);
    await q.query(`DROP TABLE "webhooks"`);
  }
}
