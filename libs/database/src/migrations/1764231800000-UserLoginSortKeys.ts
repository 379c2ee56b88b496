import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Lists sorted by `last_login` or `login_count` read this narrow table's indexes in order. An index
 * on users.last_login or users.login_count would end the HOT updates of sign-ins (fillfactor 90, no
 * indexed column changes), about four times the PostgreSQL CPU per sign-in; a sign-in now writes
 * one narrow row here instead. One row per user, written by the statements that insert users, sign
 * them in and delete them (UsersRepository). A user who never signed in has `-infinity`, the oldest
 * last_login, as the sort has always ranked them; keeping it NOT NULL lets the cursor compare rows.
 */
export class UserLoginSortKeys1764231800000 implements MigrationInterface {
  name = 'UserLoginSortKeys1764231800000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE "user_login_sort_keys" ("user_id" text NOT NULL, "organization_id" text NOT NULL, "last_login" TIMESTAMP WITH TIME ZONE NOT NULL, "login_count" integer NOT NULL, CONSTRAINT "PK_user_login_sort_keys" PRIMARY KEY ("user_id"))`);
    await q.query(`INSERT INTO "user_login_sort_keys" ("user_id", "organization_id", "last_login", "login_count")
                   SELECT id, organization_id, COALESCE(last_login, '-infinity'), login_count FROM users`);
    await q.query(`CREATE INDEX "IDX_user_login_sort_keys_org_last_login" ON "user_login_sort_keys" ("organization_id", "last_login", "user_id")`);
    await q.query(`CREATE INDEX "IDX_user_login_sort_keys_org_login_count" ON "user_login_sort_keys" ("organization_id", "login_count", "user_id")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE "user_login_sort_keys"`);
  }
}
