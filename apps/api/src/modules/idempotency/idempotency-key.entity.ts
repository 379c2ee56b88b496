import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** A POST done once per organization and Idempotency-Key for 24 hours (CONTRACT §2). */
@Entity('idempotency_keys')
export class IdempotencyKeyEntity {
  @PrimaryColumn('text')
  organizationId!: string;

  @PrimaryColumn('text')
  key!: string;

  @Column('text')
  requestHash!: string;

  /** null while the first request is still running. */
  @Column('integer', { nullable: true })
  responseStatus!: number | null;

  @Column('jsonb', { nullable: true })
  responseBody!: unknown;

  @Index('IDX_idempotency_keys_created')
  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;
}
