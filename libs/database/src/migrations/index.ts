import { CreateOutbox1764230400000 } from './1764230400000-CreateOutbox';

/** Every migration, in order. Listed explicitly so that the compiled app and the tests run the same set. */
export const MIGRATIONS = [CreateOutbox1764230400000];
