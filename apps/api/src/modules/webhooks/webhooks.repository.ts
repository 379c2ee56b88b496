import { Injectable } from '@nestjs/common';
import { preparedQuery } from '@app/database';
import { DataSource, EntityManager } from 'typeorm';
import { WebhookAttemptEntity, WebhookDeliveryEntity, WebhookEntity } from './entities/webhook.entities';

type Queryable = Pick<EntityManager, 'query'>;

/** A delivery claimed for sending, with what is needed to send it. */
export interface ClaimedDelivery {
  id: string;
  organization_id: string;
  webhook_id: string;
  event_type: string;
  payload: Record<string, unknown>;
  attempts: number;
  created_at: Date;
  url: string;
  secret_encrypted: string;
  failing_since: Date | null;
}

@Injectable()
export class WebhooksRepository {
  constructor(private readonly dataSource: DataSource) {}

  private get webhooks() {
    return this.dataSource.getRepository(WebhookEntity);
  }

  async insert(webhook: WebhookEntity): Promise<void> {
    await this.webhooks.insert(webhook);
  }

  find(organizationId: string, id: string): Promise<WebhookEntity | null> {
    return this.webhooks.findOneBy({ organizationId, id });
  }

  list(organizationId: string): Promise<WebhookEntity[]> {
    return this.webhooks.find({ where: { organizationId }, order: { createdAt: 'ASC', id: 'ASC' } });
  }

  /** Applies `changes` and a new version; false when `expectedVersion` is given and is not current. */
  async update(organizationId: string, id: string, changes: Partial<WebhookEntity>, expectedVersion?: number): Promise<boolean> {
    const where = { organizationId, id, ...(expectedVersion === undefined ? {} : { version: expectedVersion }) };
    const result = await this.webhooks.update(where, { ...changes, updatedAt: () => 'now()', version: () => 'version + 1' });
    return (result.affected ?? 0) > 0;
  }

  /** Deletes the endpoint and fails its pending deliveries; false (nothing done) when `expectedVersion` is not current. */
  async delete(organizationId: string, id: string, expectedVersion?: number): Promise<boolean> {
    return this.dataSource.transaction(async (m) => {
      const where = { organizationId, id, ...(expectedVersion === undefined ? {} : { version: expectedVersion }) };
      const result = await m.delete(WebhookEntity, where);
      if ((result.affected ?? 0) === 0) return false;
      await m.query(`UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint deleted', locked_until = NULL WHERE organization_id = $1 AND webhook_id = $2 AND status = 'pending'`, [organizationId, id]);
      return true;
    });
  }

  /** Active endpoints of the organization subscribed to an event (or to everything). */
  async subscribers(manager: Queryable, organizationId: string, eventType: string): Promise<{ id: string }[]> {
    const { rows } = await preparedQuery<{ id: string }>(this.dataSource, manager, 'webhooks_subscribers',
      `SELECT id FROM webhooks WHERE organization_id = $1 AND active AND ($2 = ANY(events) OR '*' = ANY(events))`,
      [organizationId, eventType],
    );
    return rows;
  }

  async insertDeliveries(manager: Queryable | undefined, deliveries: Pick<WebhookDeliveryEntity, 'id' | 'organizationId' | 'webhookId' | 'eventId' | 'eventType' | 'orderKey' | 'payload'>[]): Promise<void> {
    if (deliveries.length === 0) return;
    await (manager ?? this.dataSource).query(
      `INSERT INTO webhook_deliveries (id, organization_id, webhook_id, event_id, event_type, order_key, payload)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[])`,
      [
        deliveries.map((d) => d.id),
        deliveries.map((d) => d.organizationId),
        deliveries.map((d) => d.webhookId),
        deliveries.map((d) => d.eventId),
        deliveries.map((d) => d.eventType),
        deliveries.map((d) => d.orderKey),
        deliveries.map((d) => JSON.stringify(d.payload)),
      ],
    );
  }

  /**
   * Deletes up to `limit` finished (succeeded or failed) deliveries whose ids sort below `beforeId`
   * (idsBefore: created before that time), with their attempts, in one
   * statement. Pending deliveries are never deleted. Returns how many deliveries went.
   */
  async pruneFinished(beforeId: string, limit: number): Promise<number> {
    const rows: { n: number }[] = await this.dataSource.query(
      `WITH gone AS (
         DELETE FROM webhook_deliveries WHERE id IN (
           SELECT id FROM webhook_deliveries WHERE id < $1 AND status IN ('succeeded', 'failed') ORDER BY id LIMIT $2)
         RETURNING id),
       attempts AS (DELETE FROM webhook_delivery_attempts WHERE delivery_id IN (SELECT id FROM gone))
       SELECT count(*)::int AS n FROM gone`,
      [beforeId, limit],
    );
    return rows[0]!.n;
  }

  /**
   * Claims due deliveries with a lease, skipping rows another process holds (FOR UPDATE SKIP LOCKED),
   * and holding back a delivery while an earlier one for the same endpoint and user is still pending.
   */
  async claimDue(limit: number, leaseSeconds: number): Promise<ClaimedDelivery[]> {
    // An UPDATE … RETURNING answers [rows, affected] through TypeORM.
    const [rows]: [ClaimedDelivery[], number] = await this.dataSource.query(
      `WITH due AS (
         SELECT d.id FROM webhook_deliveries d
          WHERE d.status = 'pending' AND d.next_attempt_at <= now()
            AND (d.locked_until IS NULL OR d.locked_until < now())
            AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                             WHERE e.webhook_id = d.webhook_id AND e.order_key = d.order_key
                               AND e.status = 'pending' AND e.seq < d.seq)
          ORDER BY d.next_attempt_at, d.seq
          LIMIT $1
          FOR UPDATE OF d SKIP LOCKED)
       UPDATE webhook_deliveries d SET locked_until = now() + make_interval(secs => $2)
         FROM due, webhooks w
        WHERE d.id = due.id AND w.id = d.webhook_id
       RETURNING d.id, d.organization_id, d.webhook_id, d.event_type, d.payload, d.attempts, d.created_at,
                 w.url, w.secret_encrypted, w.failing_since`,
      [limit, leaseSeconds],
    );
    return rows;
  }

  /** Records one attempt and its consequences for the delivery and the endpoint, atomically. */
  async recordAttempt(
    attempt: WebhookAttemptEntity,
    delivery: { status: 'pending' | 'succeeded' | 'failed'; nextAttemptAt: Date | null },
    endpoint: { succeeded: boolean; disable?: string },
  ): Promise<void> {
    await this.dataSource.transaction(async (m) => {
      await m.insert(WebhookAttemptEntity, attempt);
      await m.query(
        `UPDATE webhook_deliveries SET status = $2, attempts = $3, last_status_code = $4, last_error = $5, last_duration_ms = $6,
                next_attempt_at = COALESCE($7, next_attempt_at), locked_until = NULL, updated_at = now()
          WHERE id = $1`,
        [attempt.deliveryId, delivery.status, attempt.attempt, attempt.statusCode, attempt.error, attempt.durationMs, delivery.nextAttemptAt],
      );
      const webhookId = (await m.query(`SELECT webhook_id FROM webhook_deliveries WHERE id = $1`, [attempt.deliveryId]))[0]?.webhook_id as string;
      if (endpoint.succeeded) {
        await m.query(`UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL`, [webhookId]);
      } else {
        await m.query(`UPDATE webhooks SET failing_since = COALESCE(failing_since, now()) WHERE id = $1`, [webhookId]);
      }
      if (endpoint.disable) {
        await m.query(`UPDATE webhooks SET active = false, disabled_reason = $2, updated_at = now(), version = version + 1 WHERE id = $1`, [webhookId, endpoint.disable]);
      }
    });
  }

  async listDeliveries(organizationId: string, webhookId: string, limit: number, offset: number) {
    const rows: (WebhookDeliveryEntity & Record<string, unknown>)[] = await this.dataSource.query(
      `SELECT d.*, COALESCE((SELECT json_agg(json_build_object('attempt', a.attempt, 'status_code', a.status_code, 'error', a.error,
                'duration_ms', a.duration_ms, 'attempted_at', a.created_at) ORDER BY a.attempt)
              FROM webhook_delivery_attempts a WHERE a.delivery_id = d.id), '[]'::json) AS attempt_log
         FROM webhook_deliveries d WHERE d.organization_id = $1 AND d.webhook_id = $2
        ORDER BY d.seq DESC LIMIT $3 OFFSET $4`,
      [organizationId, webhookId, limit, offset],
    );
    const [{ n }] = await this.dataSource.query(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE organization_id = $1 AND webhook_id = $2`, [organizationId, webhookId]);
    return { rows, total: n as number };
  }

  async findDelivery(organizationId: string, webhookId: string, id: string): Promise<WebhookDeliveryEntity | null> {
    return this.dataSource.getRepository(WebhookDeliveryEntity).findOneBy({ organizationId, webhookId, id });
  }

  async requeue(organizationId: string, id: string): Promise<void> {
    await this.dataSource.query(
      `UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), locked_until = NULL, updated_at = now() WHERE organization_id = $1 AND id = $2`,
      [organizationId, id],
    );
  }
}
