import { createHmac, timingSafeEqual } from 'node:crypto';
import { AppException } from '../errors/app.exception';

/**
 * Opaque, tamper-evident cursors: base64url(JSON) + "." + HMAC-SHA256. A cursor is bound to the
 * query it was made for (`binding`): presented with other sort or filters it is 400 INVALID_CURSOR.
 */
export class CursorCodec {
  constructor(private readonly key: Buffer) {}

  encode(binding: string, position: unknown): string {
    const body = Buffer.from(JSON.stringify({ b: binding, p: position })).toString('base64url');
    return `${body}.${this.sign(body)}`;
  }

  decode<T>(cursor: string, binding: string): T {
    const invalid = () => new AppException('INVALID_CURSOR', 'The cursor is not valid for this query');
    if (cursor.length > 4096) throw invalid();
    // Exactly body "." signature: anything appended is an altered cursor, even if the first two parts verify.
    const parts = cursor.split('.');
    if (parts.length !== 2) throw invalid();
    const [body, signature] = parts as [string, string];
    if (!body || !signature) throw invalid();
    const expected = Buffer.from(this.sign(body));
    const given = Buffer.from(signature);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw invalid();
    let parsed: { b?: unknown; p?: unknown };
    try {
      parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as { b?: unknown; p?: unknown };
    } catch {
      throw invalid();
    }
    if (parsed.b !== binding) throw invalid();
    return parsed.p as T;
  }

  private sign(body: string): string {
    return createHmac('sha256', this.key).update(body).digest('base64url');
  }
}
