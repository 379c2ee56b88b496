export * from './outbound-guard';
