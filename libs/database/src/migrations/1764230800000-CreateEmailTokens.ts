import { MigrationInterface, QueryRunner } from 'typeorm';

/** Single-use tokens mailed for email verification and password reset (hashed). */
export class CreateEmailTokens1764230800000 implements MigrationInterface {
  name = 'CreateEmailTokens1764230800000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE "email_tokens" ("id" text NOT NULL, "token_hash" text NOT NULL, "organization_id" text NOT NULL, "user_id" text NOT NULL, "purpose" text NOT NULL, "expires_at" TIMESTAMP WITH TIME ZONE NOT NULL, "used_at" TIMESTAMP WITH TIME ZONE, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_08abb3fa348e894c274a6730d35" PRIMARY KEY ("id"))`);
    await q.query(`CREATE UNIQUE INDEX "UQ_email_tokens_hash" ON "email_tokens"  ("token_hash")`);
    await q.query(`CREATE INDEX "IDX_email_tokens_user" ON "email_tokens"  ("user_id")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "email_tokens"`);
  }
}
