import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Leaves a tenth of each users page free, so that a sign-in (last_login, login_count: no index
 * covers them) can write the row's new version on the same page as a HOT update, without adding an
 * entry to each of the table's seven indexes (one of them a trigram index). Pages written before
 * this migration keep their layout until they are rewritten (VACUUM FULL, or pg_repack online).
 */
export class UsersFillfactor1764231000000 implements MigrationInterface {
  name = 'UsersFillfactor1764231000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "users" SET (fillfactor = 90)`);
    await q.query(`ALTER TABLE "refresh_tokens" SET (fillfactor = 90)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "refresh_tokens" RESET (fillfactor)`);
    await q.query(`ALTER TABLE "users" RESET (fillfactor)`);
  }
}
