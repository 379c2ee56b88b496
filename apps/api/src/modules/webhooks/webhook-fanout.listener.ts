import { Injectable } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { DispatchedEvent, DomainEventName, newId } from '@app/events';
import { WebhookDeliveryWorker } from './webhook-delivery.worker';
import { WebhooksRepository } from './webhooks.repository';

export function webhookPayload(event: string, timestamp: Date, data: unknown, webhookId: string) {
  return { event, timestamp: timestamp.toISOString().replace(/\.\d{3}Z$/, 'Z'), data, webhook_id: webhookId };
}

/**
 * Turns each dispatched domain event into one delivery per subscribed endpoint, in the dispatcher's
 * transaction: the deliveries exist if and only if the event is marked dispatched.
 */
@Injectable()
export class WebhookFanoutListener {
  /** Subscribers looked up once per dispatch transaction and organization/event type (a bulk create dispatches 100 alike). */
  private readonly lookups = new WeakMap<object, Map<string, Promise<{ id: string }[]>>>();

  constructor(
    private readonly repository: WebhooksRepository,
    private readonly worker: WebhookDeliveryWorker,
  ) {}

  @OnEvent('user.created', { promisify: true, suppressErrors: false })
  @OnEvent('user.updated', { promisify: true, suppressErrors: false })
  @OnEvent('user.deleted', { promisify: true, suppressErrors: false })
  @OnEvent('user.login', { promisify: true, suppressErrors: false })
  @OnEvent('user.role_changed', { promisify: true, suppressErrors: false })
  async fanOut({ event, manager }: DispatchedEvent<DomainEventName>): Promise<void> {
    let perTransaction = this.lookups.get(manager);
    if (!perTransaction) {
      perTransaction = new Map();
      this.lookups.set(manager, perTransaction);
    }
    const key = `${event.organizationId}:${event.type}`;
    let lookup = perTransaction.get(key);
    if (!lookup) {
      lookup = this.repository.subscribers(manager, event.organizationId, event.type);
      perTransaction.set(key, lookup);
    }
    const endpoints = await lookup;
    if (endpoints.length === 0) return;
    const data = { ...(event.data as Record<string, unknown>) };
    delete data.send_welcome_email;
    const userId = (data.user as { id?: string } | undefined)?.id ?? event.id;
    await this.repository.insertDeliveries(
      manager,
      endpoints.map((w) => ({
        id: newId('whd'),
        organizationId: event.organizationId,
        webhookId: w.id,
        eventId: event.id,
        eventType: event.type,
        orderKey: userId,
        payload: webhookPayload(event.type, event.occurredAt, data, w.id),
      })),
    );
    // Runs before the dispatcher commits; the worker's next poll (or this kick, if it lands after
    // the commit) picks the deliveries up.
    setTimeout(() => this.worker.kick(), 50).unref();
  }
}
