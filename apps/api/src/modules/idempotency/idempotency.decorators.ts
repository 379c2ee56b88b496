import { SetMetadata } from '@nestjs/common';

export const IDEMPOTENCY_OPT_OUT = 'idempotency:opt-out';
export const IDEMPOTENCY_REPLAY_OMITS = 'idempotency:replay-omits';

/**
 * This POST ignores Idempotency-Key: the token endpoints, whose answers are credentials that are
 * never stored and whose retries OAuth clients handle themselves.
 */
export const WithoutIdempotency = () => SetMetadata(IDEMPOTENCY_OPT_OUT, true);

/**
 * Fields of the response (dotted paths) that are shown once and never stored, such as a new API
 * key's secret: the remembered response leaves them out, so a replay answers without them.
 */
export const ReplayOmits = (...paths: string[]) => SetMetadata(IDEMPOTENCY_REPLAY_OMITS, paths);
