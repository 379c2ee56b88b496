import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const CLIENT_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Echoes a well-formed client X-Request-Id, otherwise makes a new req_… id (contract §2). */
export function requestIdFor(req: IncomingMessage): string {
  const header = req.headers['x-request-id'];
  const candidate = Array.isArray(header) ? header[0] : header;
  if (candidate && CLIENT_REQUEST_ID.test(candidate)) return candidate;
  return newRequestId();
}

/** A new req_… id. */
export function newRequestId(): string {
  return `req_${randomBase64url(12)}`;
}

const POOL_SIZE = 4096;
let pool = Buffer.alloc(0);
let offset = POOL_SIZE;

/** Random bytes drawn from a pooled buffer: one getrandom call per few hundred ids, not one each. */
export function randomBase64url(bytes: number): string {
  if (offset + bytes > pool.length) {
    pool = randomBytes(POOL_SIZE);
    offset = 0;
  }
  const out = pool.subarray(offset, offset + bytes).toString('base64url');
  offset += bytes;
  return out;
}
