import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';

type Queryable = Pick<EntityManager, 'query'>;

export interface RefreshTokenRow {
  id: string;
  organization_id: string;
  user_id: string;
  session_id: string;
  used_at: Date | null;
  revoked_at: Date | null;
  expires_at: Date;
}

export interface EmailTokenRow {
  id: string;
  organization_id: string;
  user_id: string;
}

/** SQL of the tokens that stand in for a user's credentials: refresh tokens and mailed tokens. Only hashes are stored. */
@Injectable()
export class CredentialTokensRepository {
  constructor(private readonly dataSource: DataSource) {}

  async insertRefreshToken(
    manager: Queryable,
    token: { id: string; hash: string; organizationId: string; userId: string; sessionId: string; expiresAt: Date },
  ): Promise<void> {
    await manager.query(
      `INSERT INTO refresh_tokens (id, token_hash, organization_id, user_id, session_id, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
      [token.id, token.hash, token.organizationId, token.userId, token.sessionId, token.expiresAt],
    );
  }

  /** Whether the session still has a live refresh token (neither revoked, used nor expired). */
  async sessionIsLive(organizationId: string, sessionId: string): Promise<boolean> {
    const rows: unknown[] = await this.dataSource.query(
      `SELECT 1 FROM refresh_tokens WHERE organization_id = $1 AND session_id = $2 AND revoked_at IS NULL AND used_at IS NULL AND expires_at > now() LIMIT 1`,
      [organizationId, sessionId],
    );
    return rows.length > 0;
  }

  /** Locks the refresh token, so two concurrent rotations of it cannot both succeed. */
  async lockRefreshToken(manager: Queryable, hash: string): Promise<RefreshTokenRow | undefined> {
    const rows = (await manager.query(
      `SELECT id, organization_id, user_id, session_id, used_at, revoked_at, expires_at FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE`,
      [hash],
    )) as RefreshTokenRow[];
    return rows[0];
  }

  async markRefreshTokenUsed(manager: Queryable, id: string): Promise<void> {
    await manager.query(`UPDATE refresh_tokens SET used_at = now() WHERE id = $1`, [id]);
  }

  async revokeSession(manager: Queryable, organizationId: string, sessionId: string): Promise<void> {
    await manager.query(`UPDATE refresh_tokens SET revoked_at = now() WHERE organization_id = $1 AND session_id = $2 AND revoked_at IS NULL`, [organizationId, sessionId]);
  }

  /** Ends every session of the user: their refresh tokens stop working (on `manager`'s transaction, when given). */
  async revokeUserRefreshTokens(manager: Queryable | undefined, organizationId: string, userId: string): Promise<void> {
    manager ??= this.dataSource;
    await manager.query(`UPDATE refresh_tokens SET revoked_at = now() WHERE organization_id = $1 AND user_id = $2 AND revoked_at IS NULL`, [organizationId, userId]);
  }

  /** Deletes up to `limit` refresh tokens that expired before `before` (rows another process is deleting are skipped); returns how many went. */
  async deleteExpiredRefreshTokens(before: Date, limit: number): Promise<number> {
    return this.deleteExpired('refresh_tokens', before, limit);
  }

  /** Deletes up to `limit` mailed tokens that expired before `before`, as deleteExpiredRefreshTokens. */
  async deleteExpiredEmailTokens(before: Date, limit: number): Promise<number> {
    return this.deleteExpired('email_tokens', before, limit);
  }

  private async deleteExpired(table: 'refresh_tokens' | 'email_tokens', before: Date, limit: number): Promise<number> {
    const result: [unknown[], number] = await this.dataSource.query(
      `DELETE FROM ${table} WHERE id IN (SELECT id FROM ${table} WHERE expires_at < $1 LIMIT ${limit} FOR UPDATE SKIP LOCKED)`,
      [before],
    );
    return result[1];
  }

  async insertEmailToken(
    manager: Queryable,
    token: { id: string; hash: string; organizationId: string; userId: string; purpose: string; expiresAt: Date },
  ): Promise<void> {
    await manager.query(
      `INSERT INTO email_tokens (id, token_hash, organization_id, user_id, purpose, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
      [token.id, token.hash, token.organizationId, token.userId, token.purpose, token.expiresAt],
    );
  }

  /** An unused, unexpired mailed token, locked until the transaction ends. */
  async lockUsableEmailToken(manager: Queryable, hash: string, purpose: string): Promise<EmailTokenRow | undefined> {
    const rows = (await manager.query(
      `SELECT id, organization_id, user_id FROM email_tokens
        WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now() FOR UPDATE`,
      [hash, purpose],
    )) as EmailTokenRow[];
    return rows[0];
  }

  async markEmailTokenUsed(manager: Queryable, id: string): Promise<void> {
    await manager.query(`UPDATE email_tokens SET used_at = now() WHERE id = $1`, [id]);
  }

  /** Spends every outstanding token of a purpose (a password reset voids the other reset links). */
  async spendUserEmailTokens(manager: Queryable, organizationId: string, userId: string, purpose: string): Promise<void> {
    await manager.query(
      `UPDATE email_tokens SET used_at = now() WHERE organization_id = $1 AND user_id = $2 AND purpose = $3 AND used_at IS NULL`,
      [organizationId, userId, purpose],
    );
  }
}
