export * from './offset-pagination.dto';
