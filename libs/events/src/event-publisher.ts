import { Injectable } from '@nestjs/common';
import { preparedQuery } from '@app/database';
import { EntityManager } from 'typeorm';
import { DomainEvent, DomainEventMap, DomainEventName } from './event-map';
import { newId } from './ids';

/**
 * Records domain events in the outbox inside the caller's transaction: the event exists if and only
 * if the change that caused it committed. The OutboxDispatcher hands it to listeners afterwards.
 */
@Injectable()
export class EventPublisher {
  async publish<K extends DomainEventName>(
    manager: EntityManager,
    organizationId: string,
    type: K,
    data: DomainEventMap[K],
  ): Promise<DomainEvent<K>> {
    const [event] = await this.publishMany(manager, organizationId, type, [data]);
    return event!;
  }

  /**
   * An event to be written by the caller's own single-statement SQL (an `INSERT INTO outbox_events`
   * fed by the change's RETURNING rows), for hot paths that cannot afford a transaction's extra
   * round trips. The caller must then call TransactionRunner.committed().
   */
  draft<K extends DomainEventName>(organizationId: string, type: K, data: DomainEventMap[K], occurredAt = new Date()): DomainEvent<K> {
    return { id: newId('evt'), type, organizationId, occurredAt, data };
  }

  async publishMany<K extends DomainEventName>(
    manager: EntityManager,
    organizationId: string,
    type: K,
    items: DomainEventMap[K][],
  ): Promise<DomainEvent<K>[]> {
    if (items.length === 0) return [];
    const occurredAt = new Date();
    const events = items.map((data) => ({ id: newId('evt'), type, organizationId, occurredAt, data }));
    await preparedQuery(
      manager.connection,
      manager,
      'outbox_insert',
      `INSERT INTO outbox_events (id, organization_id, type, data, occurred_at)
       SELECT t.id, $2, $3, t.data, $4 FROM unnest($1::text[], $5::jsonb[]) AS t(id, data)`,
      [events.map((e) => e.id), organizationId, type, occurredAt, events.map((e) => JSON.stringify(e.data))],
    );
    return events;
  }
}
