export * from './errors';
export * from './http';
export * from './validation';
export * from './auth';
export * from './pagination';
export * from './outbound';
export * from './background';
