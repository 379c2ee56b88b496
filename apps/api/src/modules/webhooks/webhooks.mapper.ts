import { iso } from '../organizations/organizations.mapper';
import { WebhookDeliveryEntity, WebhookEntity } from './entities/webhook.entities';

export function mapWebhook(w: WebhookEntity) {
  return {
    id: w.id,
    url: w.url,
    events: w.events,
    active: w.active,
    disabled_reason: w.disabledReason,
    created_at: iso(w.createdAt),
    updated_at: iso(w.updatedAt),
  };
}

export function mapDelivery(d: WebhookDeliveryEntity & Record<string, unknown>) {
  const row = d as unknown as Record<string, unknown>;
  return {
    id: row.id,
    event: row.event_type,
    event_id: row.event_id,
    status: row.status,
    attempts: row.attempts,
    response_code: row.last_status_code,
    duration_ms: row.last_duration_ms,
    error: row.last_error,
    next_attempt_at: row.status === 'pending' ? iso(row.next_attempt_at as Date) : null,
    created_at: iso(row.created_at as Date),
    attempt_log: row.attempt_log,
  };
}
