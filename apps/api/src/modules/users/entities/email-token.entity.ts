import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** A single-use token mailed to a user (email verification, password reset). Only its hash is kept. */
@Entity('email_tokens')
@Index('IDX_email_tokens_user', ['userId'])
export class EmailTokenEntity {
  @PrimaryColumn('text')
  id!: string;

  @Index('UQ_email_tokens_hash', { unique: true })
  @Column('text')
  tokenHash!: string;

  @Column('text')
  organizationId!: string;

  @Column('text')
  userId!: string;

  /** verification | password_reset */
  @Column('text')
  purpose!: string;

  @Column('timestamp with time zone')
  expiresAt!: Date;

  @Column('timestamp with time zone', { nullable: true })
  usedAt!: Date | null;

  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;
}
