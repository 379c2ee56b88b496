import { applyDecorators, SetMetadata, UseInterceptors } from '@nestjs/common';
import { ApiHeader } from '@nestjs/swagger';
import { IDEMPOTENCY_REPLAY_OMITS } from './idempotency.constants';
import { IdempotencyInterceptor } from './idempotency.interceptor';

/**
 * This POST honours Idempotency-Key (CONTRACT §2); every authenticated POST outside /auth carries
 * it (a test reads the OpenAPI description to check). Per route, not global: requests that do not
 * need it pay nothing for it. `replayOmits` names response fields (dotted paths) that are shown
 * once, such as a new API key's secret: they are never stored, so a replay answers without them.
 */
export function Idempotent(options: { replayOmits?: string[] } = {}) {
  return applyDecorators(
    UseInterceptors(IdempotencyInterceptor),
    SetMetadata(IDEMPOTENCY_REPLAY_OMITS, options.replayOmits ?? []),
    ApiHeader({
      name: 'Idempotency-Key',
      required: false,
      description: 'Do this POST at most once (24 h); see the API description',
      schema: { type: 'string', minLength: 1, maxLength: 255 },
    }),
  );
}
