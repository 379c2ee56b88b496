import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AppException, AuthenticatedRequest, canonicalJson } from '@app/common';
import type { FastifyReply } from 'fastify';
import { createHash } from 'node:crypto';
import { from, lastValueFrom, Observable, of } from 'rxjs';
import { IDEMPOTENCY_REPLAY_OMITS } from './idempotency.constants';
import { IdempotencyRepository, ReplayHeaders } from './idempotency.repository';

const KEY = /^[\x21-\x7e]{1,255}$/;
export const IDEMPOTENCY_TTL_HOURS = 24;
/** A claim whose request has not finished after this long is taken to be abandoned (its process died). */
const ABANDONED_AFTER_SECONDS = 120;
/** Response headers that describe the result, kept and replayed; per-request ones (X-Request-Id, rate limits) are not. */
const REPLAYED_HEADERS = ['content-type', 'etag', 'location', 'content-location', 'last-modified'];

/**
 * CONTRACT §2: an authenticated POST with an Idempotency-Key (routes marked @Idempotent()) is done at most once per organization
 * and key for 24 hours. A retry with the same method, path and body (compared as parsed JSON: key
 * order and whitespace do not matter) gets the first status, body and REPLAYED_HEADERS again
 * (Idempotent-Replayed: true); the same key with another request is 422 IDEMPOTENCY_KEY_REUSED; a
 * retry while the first is still running is 409. Failed requests (4xx/5xx thrown) are not
 * remembered, so they can be retried. Secrets shown once (@Idempotent({ replayOmits })) are never stored.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  constructor(
    private readonly records: IdempotencyRepository,
    private readonly reflector: Reflector,
  ) {}

  async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const header = request.headers['idempotency-key'];
    if (header === undefined || !request.auth) return next.handle();
    const omits = this.reflector.get<string[] | undefined>(IDEMPOTENCY_REPLAY_OMITS, context.getHandler()) ?? [];
    const reply = context.switchToHttp().getResponse<FastifyReply>();
    const key = Array.isArray(header) ? header[0]! : header;
    if (!KEY.test(key)) {
      throw new AppException('VALIDATION_ERROR', 'Idempotency-Key must be 1-255 printable characters', {
        status: 400,
        details: [{ field: 'Idempotency-Key', issue: 'Invalid header', code: 'INVALID_HEADER' }],
      });
    }
    const org = request.auth.organizationId;
    const target = `${request.method} ${request.url.split('?')[0]}\n`;
    const hash = sha256(target + canonicalJson(request.body ?? null));

    const claim = await this.records.claim(org, key, hash, IDEMPOTENCY_TTL_HOURS, ABANDONED_AFTER_SECONDS);
    if (claim === undefined) {
      const row = await this.records.find(org, key);
      if (!row) return this.intercept(context, next);
      if (row.request_hash !== hash && row.request_hash !== legacyHash(target, request.body)) {
        throw new AppException('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was used with a different request body');
      }
      if (row.response_status === null) {
        throw new AppException('CONCURRENT_UPDATE', 'A request with this Idempotency-Key is still in progress');
      }
      void reply.status(row.response_status);
      for (const [name, value] of Object.entries(row.response_headers)) void reply.header(name, value);
      void reply.header('Idempotent-Replayed', 'true');
      return of(row.response_body);
    }
    return from(
      (async () => {
        try {
          const body = await lastValueFrom(next.handle(), { defaultValue: undefined });
          // An error answered without throwing (a rolled-back all-or-nothing bulk is a 422) is a
          // failure too: forgotten, so that the corrected request may use the same key.
          if (reply.statusCode >= 400) await this.records.release(org, key, claim);
          else await this.records.complete(org, key, claim, reply.statusCode, withoutPaths(body, omits), replayedHeaders(reply));
          return body;
        } catch (error) {
          await this.records.release(org, key, claim);
          throw error;
        }
      })(),
    );
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * The hash of records stored before canonical hashing (at most 24 h old): over the body's key order
 * as sent. Matching it too is sound: it equals a canonical hash only for the same parsed body.
 */
function legacyHash(target: string, body: unknown): string | undefined {
  try {
    return sha256(target + JSON.stringify(body ?? null));
  } catch {
    return undefined; // Too deep for JSON.stringify: such a body was never stored with this hash.
  }
}

/** The REPLAYED_HEADERS the handler set on the reply. */
function replayedHeaders(reply: FastifyReply): ReplayHeaders {
  const headers: ReplayHeaders = {};
  for (const name of REPLAYED_HEADERS) {
    const value = reply.getHeader(name);
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return headers;
}

/** A copy of `body` without the given dotted paths (the original, sent to the client, keeps them). */
function withoutPaths(body: unknown, paths: string[]): unknown {
  if (paths.length === 0 || body === null || typeof body !== 'object') return body;
  const copy = structuredClone(body) as Record<string, unknown>;
  for (const path of paths) {
    const parts = path.split('.');
    let node: unknown = copy;
    for (const part of parts.slice(0, -1)) node = node && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined;
    if (node && typeof node === 'object') delete (node as Record<string, unknown>)[parts.at(-1)!];
  }
  return copy;
}
