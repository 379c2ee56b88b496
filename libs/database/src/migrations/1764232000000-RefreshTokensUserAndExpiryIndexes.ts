import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Suspending, deactivating or deleting a user revokes or deletes their refresh tokens by
 * (organization_id, user_id), which had no index: each such change scanned every refresh token of
 * every organization. Expired refresh tokens are now deleted in the background
 * (CredentialTokensCleanup), found by expires_at.
 */
export class RefreshTokensUserAndExpiryIndexes1764232000000 implements MigrationInterface {
  name = 'RefreshTokensUserAndExpiryIndexes1764232000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX "IDX_refresh_tokens_org_user" ON "refresh_tokens" ("organization_id", "user_id")`);
    await q.query(`CREATE INDEX "IDX_refresh_tokens_expires" ON "refresh_tokens" ("expires_at")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX "IDX_refresh_tokens_expires"`);
    await q.query(`DROP INDEX "IDX_refresh_tokens_org_user"`);
  }
}
