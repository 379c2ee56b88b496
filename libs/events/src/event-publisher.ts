import { Injectable } from '@nestjs/common';
import { EntityManager } from 'typeorm';
import { DomainEvent, DomainEventMap, DomainEventName } from './event-map';
import { newId } from './ids';
import { OutboxEventEntity } from './outbox-event.entity';

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

  async publishMany<K extends DomainEventName>(
    manager: EntityManager,
    organizationId: string,
    type: K,
    items: DomainEventMap[K][],
  ): Promise<DomainEvent<K>[]> {
    if (items.length === 0) return [];
    const occurredAt = new Date();
    const events = items.map((data) => ({ id: newId('evt'), type, organizationId, occurredAt, data }));
    await manager.insert(
      OutboxEventEntity,
      events.map((e) => ({ id: e.id, organizationId, type, data: e.data, occurredAt })),
    );
    return events;
  }
}
