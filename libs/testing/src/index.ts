export * from './test-app';
export * from './test-database';
export * from './api-process';
export * from './cli-process';
export * from './webhook-receiver';
export * from './query-string';
export * from './row-locks';
export * from './slow-writes';
