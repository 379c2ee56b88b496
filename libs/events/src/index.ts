export * from './event-map';
export * from './event-publisher';
export * from './events.module';
export * from './ids';
export * from './outbox-dispatcher';
export * from './outbox-event.entity';
