export * from './public.decorator';
export * from './scopes';
export * from './auth.decorators';
