import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { RedisService } from '@app/database';
import { MoreThan, Repository } from 'typeorm';
import { RevokedSubjectEntity, RevokedTokenEntity } from './revocation.entities';

const TOKEN_LIFETIME_MS = 86_400_000;
const SYNC_INTERVAL_MS = 1000;

/**
 * Which tokens no longer count. PostgreSQL holds the truth; the hot path asks Redis when REDIS_URL
 * is set (one MGET, so a revocation is seen at once by every instance), and an in-process copy
 * otherwise, refreshed from the database every second so other instances' revocations arrive too.
 */
@Injectable()
export class TokenDenylist implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(TokenDenylist.name);
  private readonly tokens = new Map<string, number>();
  private readonly subjects = new Map<string, number>();
  private syncedTokensUntil = new Date(0);
  private syncedSubjectsUntil = new Date(0);
  private timer: NodeJS.Timeout | undefined;

  constructor(
    @InjectRepository(RevokedTokenEntity) private readonly revokedTokens: Repository<RevokedTokenEntity>,
    @InjectRepository(RevokedSubjectEntity) private readonly revokedSubjects: Repository<RevokedSubjectEntity>,
    private readonly redis: RedisService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.sync();
    this.timer = setInterval(() => void this.sync().catch((e: unknown) => this.logger.warn({ err: e }, 'Denylist sync failed')), SYNC_INTERVAL_MS);
    this.timer.unref();
  }

  beforeApplicationShutdown(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async revokeToken(jti: string, organizationId: string, expiresAtSec: number): Promise<void> {
    const expiresAt = new Date(expiresAtSec * 1000);
    await this.revokedTokens.upsert({ jti, organizationId, expiresAt }, ['jti']);
    await this.denyHere(jti, expiresAt);
  }

  /**
   * Revokes the token unless it is revoked already; true for the one caller that revoked it. Of
   * concurrent POST /auth/refresh calls with one token, only that one is answered a new token.
   */
  async revokeTokenOnce(jti: string, organizationId: string, expiresAtSec: number): Promise<boolean> {
    const expiresAt = new Date(expiresAtSec * 1000);
    const result = await this.revokedTokens.createQueryBuilder().insert().values({ jti, organizationId, expiresAt }).orIgnore().returning('jti').execute();
    const first = Array.isArray(result.raw) && result.raw.length > 0;
    await this.denyHere(jti, expiresAt);
    return first;
  }

  /** A revoked token, known at once to this instance and (through Redis) to the others. */
  private async denyHere(jti: string, expiresAt: Date): Promise<void> {
    this.tokens.set(jti, expiresAt.getTime());
    await this.redisSet(`deny:jti:${jti}`, '1', Math.max(1, expiresAt.getTime() - Date.now()));
  }

  async revokeSubject(subject: string, organizationId: string, at = new Date()): Promise<void> {
    await this.revokedSubjects.upsert({ subject, organizationId, revokedAt: at }, ['subject']);
    this.subjects.set(subject, at.getTime());
    await this.redisSet(`deny:sub:${subject}`, String(at.getTime()), TOKEN_LIFETIME_MS);
  }

  /** revokeSubject for many subjects at once: one database statement per thousand, one Redis round trip. */
  async revokeSubjects(subjects: string[], organizationId: string, at = new Date()): Promise<void> {
    for (let i = 0; i < subjects.length; i += 1000) {
      await this.revokedSubjects.upsert(subjects.slice(i, i + 1000).map((subject) => ({ subject, organizationId, revokedAt: at })), ['subject']);
    }
    for (const subject of subjects) this.subjects.set(subject, at.getTime());
    const client = this.redis.client;
    if (!client || subjects.length === 0) return;
    try {
      const pipeline = client.pipeline();
      for (const subject of subjects) pipeline.set(`deny:sub:${subject}`, String(at.getTime()), 'PX', TOKEN_LIFETIME_MS);
      await pipeline.exec();
    } catch (error) {
      this.logger.warn({ err: error }, 'Redis unavailable while revoking; the database keeps the revocations');
    }
  }

  /** True when the token was revoked, or its subject was revoked after the token was issued (both in ms). */
  async isRevoked(jti: string, subject: string, issuedAtMs: number, sessionId?: string): Promise<boolean> {
    const subjects = sessionId ? [subject, sessionId] : [subject];
    const client = this.redis.client;
    if (client) {
      try {
        const [token, ...revokedAt] = await client.mget(`deny:jti:${jti}`, ...subjects.map((s) => `deny:sub:${s}`));
        return token !== null || revokedAt.some((at) => at !== null && issuedAtMs < Number(at));
      } catch (error) {
        this.logger.warn({ err: error }, 'Redis unavailable for the token denylist; asking the database');
        for (const s of subjects) if (await this.isRevokedInDatabase(jti, s, issuedAtMs)) return true;
        return false;
      }
    }
    if (this.tokens.has(jti)) return true;
    return subjects.some((s) => {
      const at = this.subjects.get(s);
      return at !== undefined && issuedAtMs < at;
    });
  }

  private async isRevokedInDatabase(jti: string, subject: string, issuedAtMs: number): Promise<boolean> {
    const [token, subjectRow] = await Promise.all([
      this.revokedTokens.findOneBy({ jti }),
      this.revokedSubjects.findOneBy({ subject }),
    ]);
    return token !== null || (subjectRow !== null && issuedAtMs < subjectRow.revokedAt.getTime());
  }

  private async redisSet(key: string, value: string, ttlMs: number): Promise<void> {
    const client = this.redis.client;
    if (!client) return;
    try {
      await client.set(key, value, 'PX', ttlMs);
    } catch (error) {
      // The database row is written; instances fall back to it while Redis is unreachable.
      this.logger.warn({ err: error }, 'Redis unavailable while revoking; the database keeps the revocation');
    }
  }

  private async sync(): Promise<void> {
    if (this.redis.client) return;
    const now = Date.now();
    const tokens = await this.revokedTokens.find({
      where: { createdAt: MoreThan(new Date(this.syncedTokensUntil.getTime() - 5000)), expiresAt: MoreThan(new Date(now)) },
      order: { createdAt: 'ASC' },
      take: 10_000,
    });
    for (const row of tokens) {
      this.tokens.set(row.jti, row.expiresAt.getTime());
      if (row.createdAt > this.syncedTokensUntil) this.syncedTokensUntil = row.createdAt;
    }
    const subjects = await this.revokedSubjects.find({
      where: { revokedAt: MoreThan(new Date(this.syncedSubjectsUntil.getTime() - 5000)) },
      order: { revokedAt: 'ASC' },
      take: 10_000,
    });
    for (const row of subjects) {
      this.subjects.set(row.subject, row.revokedAt.getTime());
      if (row.revokedAt > this.syncedSubjectsUntil) this.syncedSubjectsUntil = row.revokedAt;
    }
    for (const [jti, expiresAt] of this.tokens) if (expiresAt <= now) this.tokens.delete(jti);
    for (const [subject, at] of this.subjects) if (at + TOKEN_LIFETIME_MS <= now) this.subjects.delete(subject);
  }
}
