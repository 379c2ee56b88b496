import { randomBytes } from 'node:crypto';

const POOL_BYTES = 4096;
const RANDOM_BYTES = 10;
let pool = Buffer.alloc(0);
let offset = POOL_BYTES;

/** 80 random bits as hex, cut from a pool refilled 4 KiB at a time (one CSPRNG call per ~400 ids, not per id). */
function randomHex(): string {
  if (offset + RANDOM_BYTES > pool.length) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  const hex = pool.toString('hex', offset, offset + RANDOM_BYTES);
  offset += RANDOM_BYTES;
  return hex;
}

/**
 * Prefixed opaque ids (contract §2). A millisecond timestamp first keeps ids roughly time-ordered
 * (good for index locality), then 80 random bits.
 */
export function newId(prefix: string): string {
  const time = Date.now().toString(36).padStart(9, '0');
  return `${prefix}_${time}${randomHex()}`;
}
