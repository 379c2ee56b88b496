import { Global, Module } from '@nestjs/common';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { TypeOrmModule } from '@nestjs/typeorm';
import { EventPublisher } from './event-publisher';
import { OutboxDispatcher } from './outbox-dispatcher';
import { OutboxEventEntity } from './outbox-event.entity';

/** The internal event bus: publish into the outbox inside a transaction, listen with @OnEvent. */
@Global()
@Module({
  imports: [EventEmitterModule.forRoot({ wildcard: false }), TypeOrmModule.forFeature([OutboxEventEntity])],
  providers: [EventPublisher, OutboxDispatcher],
  exports: [EventPublisher, OutboxDispatcher],
})
export class EventsModule {}
