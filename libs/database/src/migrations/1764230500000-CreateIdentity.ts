import { MigrationInterface, QueryRunner } from 'typeorm';

/** Organizations, API keys (hashed), JWT signing keys (encrypted) and token revocations. */
export class CreateIdentity1764230500000 implements MigrationInterface {
  name = 'CreateIdentity1764230500000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE "revoked_tokens" ("jti" text NOT NULL, "organization_id" text NOT NULL, "expires_at" TIMESTAMP WITH TIME ZONE NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_b18aa48269f87cafba8c6310624" PRIMARY KEY ("jti"))`);
    await q.query(`CREATE INDEX "IDX_revoked_tokens_expires_at" ON "revoked_tokens"  ("expires_at")`);
    await q.query(`CREATE INDEX "IDX_revoked_tokens_created_at" ON "revoked_tokens"  ("created_at")`);
    await q.query(`CREATE TABLE "revoked_subjects" ("subject" text NOT NULL, "organization_id" text NOT NULL, "revoked_at" TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT "PK_53303d94fd700a6b28c23b8fba7" PRIMARY KEY ("subject"))`);
    await q.query(`CREATE INDEX "IDX_revoked_subjects_revoked_at" ON "revoked_subjects"  ("revoked_at")`);
    await q.query(`CREATE TABLE "api_keys" ("id" text NOT NULL, "organization_id" text NOT NULL, "name" text NOT NULL, "key_prefix" text NOT NULL, "key_hash" text NOT NULL, "scopes" text array NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "last_used_at" TIMESTAMP WITH TIME ZONE, "revoked_at" TIMESTAMP WITH TIME ZONE, CONSTRAINT "PK_5c8a79801b44bd27b79228e1dad" PRIMARY KEY ("id"))`);
    await q.query(`CREATE INDEX "IDX_api_keys_organization" ON "api_keys"  ("organization_id")`);
    await q.query(`CREATE UNIQUE INDEX "UQ_api_keys_key_hash" ON "api_keys"  ("key_hash")`);
    await q.query(`CREATE TABLE "organizations" ("id" text NOT NULL, "name" text NOT NULL, "plan" text NOT NULL, "limits" jsonb NOT NULL DEFAULT '{}', "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_6b031fcd0863e3f6b44230163f9" PRIMARY KEY ("id"))`);
    await q.query(`CREATE TABLE "signing_keys" ("kid" text NOT NULL, "algorithm" text NOT NULL, "public_jwk" jsonb NOT NULL, "private_key_encrypted" text NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_13362ac3e792c69417e1a53d355" PRIMARY KEY ("kid"))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "signing_keys"`);
    await q.query(`DROP TABLE "organizations"`);
    await q.query(`DROP TABLE "api_keys"`);
    await q.query(`DROP TABLE "revoked_subjects"`);
    await q.query(`DROP TABLE "revoked_tokens"`);
  }
}
