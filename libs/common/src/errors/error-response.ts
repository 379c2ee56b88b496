import { STATUS_CODES } from 'node:http';
import { HttpException } from '@nestjs/common';
import { AppException } from './app.exception';
import { ErrorCode } from './error-codes';

export interface RenderedError {
  status: number;
  headers: Record<string, string>;
  body: { error: Record<string, unknown> };
  /** True when the failure is ours (5xx) and deserves an error log line with the stack. */
  unexpected: boolean;
}

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message?: string;
}

const FASTIFY_CODES: Record<string, { code: ErrorCode; message: string }> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: 'Request bodies must be JSON (Content-Type: application/json)',
  },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'PAYLOAD_TOO_LARGE', message: 'Request body exceeds 1 MiB' },
  FST_ERR_CTP_EMPTY_JSON_BODY: {
    code: 'MALFORMED_REQUEST',
    message: 'Body is empty but Content-Type is application/json',
  },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'MALFORMED_REQUEST', message: 'Body is not valid JSON' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'MALFORMED_REQUEST', message: 'Content-Length does not match the body' },
};

const STATUS_FALLBACK: Record<number, ErrorCode> = {
  400: 'MALFORMED_REQUEST',
  401: 'AUTH_TOKEN_INVALID',
  403: 'AUTH_INSUFFICIENT_SCOPE',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'CONCURRENT_UPDATE',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMIT_EXCEEDED',
  503: 'SERVICE_UNAVAILABLE',
};

/** Turns any thrown value into the contract's error envelope. Never leaks a stack, SQL or a secret. */
export function renderError(exception: unknown, requestId: string): RenderedError {
  const timestamp = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const headers: Record<string, string> = {};
  let status = 500;
  let code: ErrorCode = 'INTERNAL_ERROR';
  let message = 'An unexpected error occurred. Quote the request_id when contacting support.';
  let details: unknown;
  let retryAfter: number | undefined;

  if (exception instanceof AppException) {
    status = exception.status;
    code = exception.code;
    message = exception.message;
    details = exception.options.details;
    retryAfter = exception.options.retryAfter;
    Object.assign(headers, exception.options.headers ?? {});
  } else if (isStatementTimeout(exception)) {
    status = 503;
    code = 'SERVICE_UNAVAILABLE';
    message = 'The database did not finish this request in time (DATABASE_STATEMENT_TIMEOUT_MS); the step it cancelled changed nothing. Retry, or narrow the query';
  } else if (isConcurrencyAbort(exception)) {
    status = 503;
    code = 'SERVICE_UNAVAILABLE';
    message = 'The database aborted this request to resolve a conflict with a concurrent one (a deadlock); nothing of it was written. Retry';
    retryAfter = 1;
  } else if (exception instanceof HttpException) {
    status = exception.getStatus();
    code = STATUS_FALLBACK[status] ?? (status >= 500 ? 'INTERNAL_ERROR' : 'MALFORMED_REQUEST');
    message = status === 404 ? 'No route matches this path' : (STATUS_CODES[status] ?? message);
  } else if (isFastifyError(exception)) {
    const known = exception.code ? FASTIFY_CODES[exception.code] : undefined;
    if (known) {
      code = known.code;
      message = known.message;
      status = code === 'PAYLOAD_TOO_LARGE' ? 413 : code === 'UNSUPPORTED_MEDIA_TYPE' ? 415 : 400;
    } else if (exception.statusCode && exception.statusCode >= 400 && exception.statusCode < 500) {
      status = exception.statusCode;
      code = STATUS_FALLBACK[status] ?? 'MALFORMED_REQUEST';
      message = exception.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || exception instanceof SyntaxError
        ? 'Body is not valid JSON'
        : (STATUS_CODES[status] ?? 'Bad request');
      if (/__proto__|constructor/.test(exception.message ?? '')) {
        message = 'Body contains a forbidden key (__proto__ or constructor.prototype)';
      }
    }
  }

  if (retryAfter !== undefined) headers['Retry-After'] = String(retryAfter);
  const error: Record<string, unknown> = { code, message };
  if (details !== undefined) error.details = details;
  if (retryAfter !== undefined) error.retry_after = retryAfter;
  error.request_id = requestId;
  error.timestamp = timestamp;
  return { status, headers, body: { error }, unexpected: status >= 500 };
}

/**
 * The SQLSTATE PostgreSQL answered a statement with (five digits or capitals), as node-postgres
 * reports it or wrapped by TypeORM (driverError); undefined for any other error, such as a lost
 * connection, after which the statement may or may not have committed.
 */
export function sqlState(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const withCode = value as { code?: unknown; driverError?: { code?: unknown } };
  const code = withCode.code ?? withCode.driverError?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** PostgreSQL cancelled the statement (SQLSTATE 57014: statement_timeout, or an operator's pg_cancel_backend). */
function isStatementTimeout(value: unknown): boolean {
  return sqlState(value) === '57014';
}

/**
 * PostgreSQL aborted the transaction to break a deadlock (SQLSTATE 40P01) or a serialization
 * conflict (40001): it wrote nothing, and the same request may succeed when retried.
 */
function isConcurrencyAbort(value: unknown): boolean {
  const state = sqlState(value);
  return state === '40P01' || state === '40001';
}

function isFastifyError(value: unknown): value is FastifyLikeError {
  return (
    value instanceof Error &&
    (typeof (value as FastifyLikeError).statusCode === 'number' ||
      (typeof (value as FastifyLikeError).code === 'string' && (value as FastifyLikeError).code!.startsWith('FST_')))
  );
}
