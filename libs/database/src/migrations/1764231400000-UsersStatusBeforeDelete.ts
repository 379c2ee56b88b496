import { MigrationInterface, QueryRunner } from 'typeorm';

/** A soft-deleted user's status before the delete, so that a restore brings back a suspended user suspended. */
export class UsersStatusBeforeDelete1764231400000 implements MigrationInterface {
  name = 'UsersStatusBeforeDelete1764231400000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "users" ADD "status_before_delete" text`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "users" DROP COLUMN "status_before_delete"`);
  }
}
