export * from './work-loop';
export * from './batches';
