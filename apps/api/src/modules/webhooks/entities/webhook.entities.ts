import { Column, Entity, Generated, Index, PrimaryColumn } from 'typeorm';

@Entity('webhooks')
@Index('IDX_webhooks_organization', ['organizationId'])
export class WebhookEntity {
  @PrimaryColumn('text')
  id!: string;

  @Column('text')
  organizationId!: string;

  @Column('text')
  url!: string;

  /** Event names, or ['*'] for all. */
  @Column('text', { array: true })
  events!: string[];

  /** The signing secret (whsec_…), AES-256-GCM encrypted under a key derived from the master secret. */
  @Column('text')
  secretEncrypted!: string;

  @Column('boolean', { default: true })
  active!: boolean;

  @Column('text', { nullable: true })
  disabledReason!: string | null;

  /** When the current run of failures began; null while the endpoint succeeds. */
  @Column('timestamp with time zone', { nullable: true })
  failingSince!: Date | null;

  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;

  @Column('timestamp with time zone', { default: () => 'now()' })
  updatedAt!: Date;

  /** Incremented by every write: the ETag's version (If-Match). */
  @Column('integer', { default: 1 })
  version!: number;
}

/** One event to one endpoint: sent until it succeeds or the retry schedule runs out. */
@Entity('webhook_deliveries')
@Index('IDX_webhook_deliveries_due', ['status', 'nextAttemptAt'])
@Index('IDX_webhook_deliveries_webhook', ['webhookId', 'seq'])
@Index('IDX_webhook_deliveries_order', ['webhookId', 'orderKey', 'seq'])
export class WebhookDeliveryEntity {
  @PrimaryColumn('text')
  id!: string;

  /** Creation order: deliveries for one user go out in this order. */
  @Column('bigint')
  @Generated('increment')
  seq!: string;

  @Column('text')
  organizationId!: string;

  @Column('text')
  webhookId!: string;

  @Column('text', { nullable: true })
  eventId!: string | null;

  @Column('text')
  eventType!: string;

  /** Deliveries sharing an order key (the user id) are sent one after another. */
  @Column('text')
  orderKey!: string;

  @Column('jsonb')
  payload!: Record<string, unknown>;

  /** pending (to send, or to retry) | succeeded | failed */
  @Column('text', { default: 'pending' })
  status!: string;

  @Column('integer', { default: 0 })
  attempts!: number;

  @Column('timestamp with time zone', { default: () => 'now()' })
  nextAttemptAt!: Date;

  @Column('timestamp with time zone', { nullable: true })
  lockedUntil!: Date | null;

  @Column('integer', { nullable: true })
  lastStatusCode!: number | null;

  @Column('text', { nullable: true })
  lastError!: string | null;

  @Column('integer', { nullable: true })
  lastDurationMs!: number | null;

  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;

  @Column('timestamp with time zone', { default: () => 'now()' })
  updatedAt!: Date;
}

@Entity('webhook_delivery_attempts')
@Index('IDX_webhook_delivery_attempts_delivery', ['deliveryId'])
export class WebhookAttemptEntity {
  @PrimaryColumn('text')
  id!: string;

  @Column('text')
  deliveryId!: string;

  @Column('text')
  organizationId!: string;

  @Column('integer')
  attempt!: number;

  @Column('integer', { nullable: true })
  statusCode!: number | null;

  @Column('text', { nullable: true })
  error!: string | null;

  @Column('integer')
  durationMs!: number;

  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;
}
