import { Column, Entity, Generated, Index, PrimaryColumn } from 'typeorm';

@Entity('outbox_events')
export class OutboxEventEntity {
  @PrimaryColumn('text')
  id!: string;

  /** Commit-independent order of publication: events are dispatched in this order. */
  @Index('IDX_outbox_events_pending_seq', { where: '"dispatched_at" IS NULL' })
  @Column('bigint')
  @Generated('increment')
  seq!: string;

  @Column('text')
  organizationId!: string;

  @Column('text')
  type!: string;

  @Column('jsonb')
  data!: unknown;

  @Column('timestamp with time zone', { default: () => 'now()' })
  occurredAt!: Date;

  @Column('timestamp with time zone', { nullable: true })
  dispatchedAt!: Date | null;

  @Column('integer', { default: 0 })
  attempts!: number;

  @Column('timestamp with time zone', { default: () => 'now()' })
  nextAttemptAt!: Date;

  @Column('text', { nullable: true })
  lastError!: string | null;
}
