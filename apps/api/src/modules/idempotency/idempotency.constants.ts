/** Route metadata: response fields (dotted paths) shown once and never stored for a replay. */
export const IDEMPOTENCY_REPLAY_OMITS = 'idempotency:replay-omits';
