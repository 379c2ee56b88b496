export * from './app-validation.pipe';
