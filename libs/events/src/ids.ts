import { randomBytes } from 'node:crypto';

/**
 * Prefixed opaque ids (contract §2). A millisecond timestamp first keeps ids roughly time-ordered
 * (good for index locality), then 80 random bits.
 */
export function newId(prefix: string): string {
  const time = Date.now().toString(36).padStart(9, '0');
  return `${prefix}_${time}${randomBytes(10).toString('hex')}`;
}
