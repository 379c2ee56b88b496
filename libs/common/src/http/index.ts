export * from './request-id';
export * from './route-table';
export * from './configure-http';
export * from './etag';
export * from './framework-errors';
