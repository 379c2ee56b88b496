export * from './database.module';
export * from './embedded-postgres';
export * from './snake-naming.strategy';
export * from './transaction-runner';
export * from './migrations';
export * from './redis.service';
export * from './counter-store';
export * from './rate-limit-store';
