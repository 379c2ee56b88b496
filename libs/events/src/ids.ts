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
  return `${idTime(prefix, Date.now())}${randomHex()}`;
}

/**
 * Whether `value` has the shape of an id with this prefix (`<prefix>_` and 1-64 of [a-z0-9]).
 * Path ids are checked with it before any query: a malformed one is a 404 for its resource (CONTRACT
 * §2) and never reaches SQL (a U+0000 in it would make PostgreSQL fail).
 */
export function isId(prefix: string, value: string): boolean {
  return value.length <= prefix.length + 65 && value.startsWith(`${prefix}_`) && /^[a-z0-9]{1,64}$/.test(value.slice(prefix.length + 1));
}

/**
 * A bound for "ids made before `time`": every id newId(prefix) made earlier sorts below it (the
 * time part is fixed-width base 36, and digits sort before letters in every collation), so a
 * primary-key range finds old rows without an index on their creation time.
 */
export function idsBefore(prefix: string, time: number): string {
  return idTime(prefix, time);
}

function idTime(prefix: string, time: number): string {
  return `${prefix}_${time.toString(36).padStart(9, '0')}`;
}
