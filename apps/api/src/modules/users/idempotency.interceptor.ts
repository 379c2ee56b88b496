import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { AppException, AuthenticatedRequest } from '@app/common';
import type { FastifyReply } from 'fastify';
import { createHash } from 'node:crypto';
import { from, lastValueFrom, Observable, of } from 'rxjs';
import { IdempotencyRepository } from './idempotency.repository';

const KEY = /^[\x21-\x7e]{1,255}$/;
const TTL_HOURS = 24;

/**
 * CONTRACT §2: a POST with an Idempotency-Key is done at most once per organization and key for
 * 24 hours. A retry with the same body gets the first response again (Idempotent-Replayed: true);
 * the same key with another body is 422 IDEMPOTENCY_KEY_REUSED; a retry while the first is still
 * running is 409. Failed requests are not remembered, so they can be retried.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  constructor(private readonly records: IdempotencyRepository) {}

  async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const reply = context.switchToHttp().getResponse<FastifyReply>();
    const header = request.headers['idempotency-key'];
    if (header === undefined || !request.auth) return next.handle();
    const key = Array.isArray(header) ? header[0]! : header;
    if (!KEY.test(key)) {
      throw new AppException('VALIDATION_ERROR', 'Idempotency-Key must be 1-255 printable characters', {
        status: 400,
        details: [{ field: 'Idempotency-Key', issue: 'Invalid header', code: 'INVALID_HEADER' }],
      });
    }
    const org = request.auth.organizationId;
    const hash = createHash('sha256').update(`${request.method} ${request.url.split('?')[0]}\n${JSON.stringify(request.body ?? null)}`).digest('hex');

    if (!(await this.records.claim(org, key, hash, TTL_HOURS))) {
      const row = await this.records.find(org, key);
      if (!row) return this.intercept(context, next);
      if (row.request_hash !== hash) {
        throw new AppException('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was used with a different request body');
      }
      if (row.response_status === null) {
        throw new AppException('CONCURRENT_UPDATE', 'A request with this Idempotency-Key is still in progress');
      }
      void reply.status(row.response_status).header('Idempotent-Replayed', 'true');
      return of(row.response_body);
    }
    return from(
      (async () => {
        try {
          const body = await lastValueFrom(next.handle(), { defaultValue: undefined });
          await this.records.complete(org, key, reply.statusCode, body);
          return body;
        } catch (error) {
          await this.records.release(org, key);
          throw error;
        }
      })(),
    );
  }
}
