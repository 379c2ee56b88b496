export * from './app-validation.pipe';
export * from './json-size.validator';
