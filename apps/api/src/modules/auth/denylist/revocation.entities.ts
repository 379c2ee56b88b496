import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** A token revoked before its expiry (logout, refresh, /auth/revoke). Kept until it would have expired. */
@Entity('revoked_tokens')
export class RevokedTokenEntity {
  @PrimaryColumn('text')
  jti!: string;

  @Column('text')
  organizationId!: string;

  @Index('IDX_revoked_tokens_expires_at')
  @Column('timestamp with time zone')
  expiresAt!: Date;

  @Index('IDX_revoked_tokens_created_at')
  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;
}

/**
 * Every token of a subject issued before `revokedAt` is dead: a deleted API key, a suspended or
 * deleted user, a password reset.
 */
@Entity('revoked_subjects')
export class RevokedSubjectEntity {
  @PrimaryColumn('text')
  subject!: string;

  @Column('text')
  organizationId!: string;

  @Index('IDX_revoked_subjects_revoked_at')
  @Column('timestamp with time zone')
  revokedAt!: Date;
}
