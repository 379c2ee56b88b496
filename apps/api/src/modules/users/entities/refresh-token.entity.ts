import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** One refresh token of an end user's login session; rotated on every use. */
@Entity('refresh_tokens')
@Index('IDX_refresh_tokens_session', ['sessionId'])
@Index('IDX_refresh_tokens_org_user', ['organizationId', 'userId'])
@Index('IDX_refresh_tokens_expires', ['expiresAt'])
export class RefreshTokenEntity {
  @PrimaryColumn('text')
  id!: string;

  /** HMAC of the token under a key derived from the master secret. */
  @Index('UQ_refresh_tokens_hash', { unique: true })
  @Column('text')
  tokenHash!: string;

  @Column('text')
  organizationId!: string;

  @Column('text')
  userId!: string;

  @Column('text')
  sessionId!: string;

  @Column('timestamp with time zone', { nullable: true })
  usedAt!: Date | null;

  @Column('timestamp with time zone', { nullable: true })
  revokedAt!: Date | null;

  @Column('timestamp with time zone')
  expiresAt!: Date;

  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;
}
