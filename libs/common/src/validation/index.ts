export * from './app-validation.pipe';
export * from './json-size.validator';
export * from './omittable.validator';
export * from './canonical-json';
