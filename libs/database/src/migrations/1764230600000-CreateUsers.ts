import { MigrationInterface, QueryRunner } from 'typeorm';

/** Users, roles, role assignments, monthly activity, refresh tokens and idempotency keys. */
export class CreateUsers1764230600000 implements MigrationInterface {
  name = 'CreateUsers1764230600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE "roles" ("id" text NOT NULL, "organization_id" text NOT NULL, "name" text NOT NULL, "display_name" text NOT NULL, "description" text NOT NULL DEFAULT '', "permissions" text array NOT NULL DEFAULT '{}', "system" boolean NOT NULL DEFAULT false, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_c1433d71a4838793a49dcad46ab" PRIMARY KEY ("id"))`);
    await q.query(`CREATE UNIQUE INDEX "UQ_roles_organization_name" ON "roles"  ("organization_id", "name")`);
    await q.query(`CREATE TABLE "users" ("id" text NOT NULL, "organization_id" text NOT NULL, "email" text NOT NULL, "email_lower" text NOT NULL, "first_name" text NOT NULL, "last_name" text NOT NULL, "role_id" text, "status" text NOT NULL DEFAULT 'active', "email_verified" boolean NOT NULL DEFAULT false, "password_hash" text, "metadata" jsonb NOT NULL DEFAULT '{}', "preferences" jsonb NOT NULL DEFAULT '{}', "login_count" integer NOT NULL DEFAULT '0', "last_login" TIMESTAMP WITH TIME ZONE, "version" integer NOT NULL DEFAULT '1', "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "updated_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "deleted_at" TIMESTAMP WITH TIME ZONE, CONSTRAINT "PK_a3ffb1c0c8416b9fc6f907b7433" PRIMARY KEY ("id"))`);
    await q.query(`CREATE INDEX "IDX_users_org_role" ON "users"  ("organization_id", "role_id")`);
    await q.query(`CREATE INDEX "IDX_users_org_last_name" ON "users"  ("organization_id", "last_name", "id")`);
    await q.query(`CREATE INDEX "IDX_users_org_updated" ON "users"  ("organization_id", "updated_at", "id")`);
    await q.query(`CREATE INDEX "IDX_users_org_created" ON "users"  ("organization_id", "created_at", "id")`);
    await q.query(`CREATE UNIQUE INDEX "UQ_users_organization_email" ON "users"  ("organization_id", "email_lower")`);
    await q.query(`CREATE TABLE "user_roles" ("user_id" text NOT NULL, "role_id" text NOT NULL, "organization_id" text NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_23ed6f04fe43066df08379fd034" PRIMARY KEY ("user_id", "role_id"))`);
    await q.query(`CREATE INDEX "IDX_user_roles_role" ON "user_roles"  ("role_id")`);
    await q.query(`CREATE TABLE "user_activity_months" ("organization_id" text NOT NULL, "month" text NOT NULL, "user_id" text NOT NULL, CONSTRAINT "PK_f6c1cd7ad1933cb62b8bacc781a" PRIMARY KEY ("organization_id", "month", "user_id"))`);
    await q.query(`CREATE TABLE "refresh_tokens" ("id" text NOT NULL, "token_hash" text NOT NULL, "organization_id" text NOT NULL, "user_id" text NOT NULL, "session_id" text NOT NULL, "used_at" TIMESTAMP WITH TIME ZONE, "revoked_at" TIMESTAMP WITH TIME ZONE, "expires_at" TIMESTAMP WITH TIME ZONE NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_7d8bee0204106019488c4c50ffa" PRIMARY KEY ("id"))`);
    await q.query(`CREATE UNIQUE INDEX "UQ_refresh_tokens_hash" ON "refresh_tokens"  ("token_hash")`);
    await q.query(`CREATE INDEX "IDX_refresh_tokens_session" ON "refresh_tokens"  ("session_id")`);
    await q.query(`CREATE TABLE "idempotency_keys" ("organization_id" text NOT NULL, "key" text NOT NULL, "request_hash" text NOT NULL, "response_status" integer, "response_body" jsonb, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "PK_fa1b697098c138245abc15cad73" PRIMARY KEY ("organization_id", "key"))`);
    await q.query(`CREATE INDEX "IDX_users_search_trgm" ON "users" USING gin ((lower("first_name" || ' ' || "last_name" || ' ' || "email")) gin_trgm_ops)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "idempotency_keys"`);
    await q.query(`DROP TABLE "refresh_tokens"`);
    await q.query(`DROP TABLE "user_activity_months"`);
    await q.query(`DROP TABLE "user_roles"`);
    await q.query(`DROP TABLE "users"`);
    await q.query(`DROP TABLE "roles"`);
  }
}
