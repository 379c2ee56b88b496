export * from './error-codes';
export * from './app.exception';
export * from './error-response';
export * from './all-exceptions.filter';
