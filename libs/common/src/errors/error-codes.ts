/**
 * Every error code the API can answer with, and its HTTP status.
 * The type of ERROR_STATUS makes the mapping exhaustive: a code that is thrown
 * but not listed here does not compile.
 */
export const ERROR_STATUS = {
  MALFORMED_REQUEST: 400,
  MISSING_REQUIRED_FIELD: 400,
  VALIDATION_ERROR: 422,
  INVALID_FILTER: 400,
  INVALID_CURSOR: 400,
  INVALID_ROLE: 422,
  IDEMPOTENCY_KEY_REUSED: 422,
  INVALID_WEBHOOK_URL: 422,
  AUTH_TOKEN_MISSING: 401,
  AUTH_TOKEN_INVALID: 401,
  AUTH_TOKEN_EXPIRED: 401,
  AUTH_INVALID_CREDENTIALS: 401,
  AUTH_INSUFFICIENT_SCOPE: 403,
  PLAN_FEATURE_UNAVAILABLE: 403,
  QUOTA_EXCEEDED: 403,
  NOT_FOUND: 404,
  USER_NOT_FOUND: 404,
  ROLE_NOT_FOUND: 404,
  ORGANIZATION_NOT_FOUND: 404,
  API_KEY_NOT_FOUND: 404,
  WEBHOOK_NOT_FOUND: 404,
  SSO_CONNECTION_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  USER_ALREADY_EXISTS: 409,
  ROLE_ALREADY_EXISTS: 409,
  CONCURRENT_UPDATE: 409,
  API_VERSION_SUNSET: 410,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  ACCOUNT_LOCKED: 429,
  RATE_LIMIT_EXCEEDED: 429,
  INTERNAL_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** One entry of error.details: which field, what is wrong, what was sent, and a machine code. */
export interface ErrorDetail {
  field: string;
  issue: string;
  provided?: unknown;
  code: string;
}
