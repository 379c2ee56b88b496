export * from './offset-pagination.dto';
export * from './cursor-codec';
