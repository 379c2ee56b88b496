import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const CLIENT_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Echoes a well-formed client X-Request-Id, otherwise makes a new req_… id (contract §2). */
export function requestIdFor(req: IncomingMessage): string {
  const header = req.headers['x-request-id'];
  const candidate = Array.isArray(header) ? header[0] : header;
  if (candidate && CLIENT_REQUEST_ID.test(candidate)) return candidate;
  return `req_${randomBytes(12).toString('base64url')}`;
}
