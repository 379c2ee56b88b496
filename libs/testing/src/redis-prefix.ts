import { randomBytes } from 'node:crypto';

/**
 * The Redis key prefix for the API processes and CLI runs of one test file (jest loads this module
 * once per file). Suites share the machine's Redis in the served run; without their own prefix,
 * one file's failed sign-ins, rate-limit windows and revocations would count in another's.
 */
export const PROCESS_REDIS_KEY_PREFIX = `test:p${randomBytes(6).toString('hex')}:`;
