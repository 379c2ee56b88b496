import { ERROR_STATUS, ErrorCode, ErrorDetail } from './error-codes';

export interface AppExceptionOptions {
  details?: ErrorDetail[] | Record<string, unknown>;
  /** Overrides the code's usual status (a VALIDATION_ERROR on a query parameter is a 400). */
  status?: number;
  /** Seconds until a retry can succeed; also sent as the Retry-After header. */
  retryAfter?: number;
  headers?: Record<string, string>;
}

/** The one exception type modules throw; the global filter renders it as the contract's envelope. */
export class AppException extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly options: AppExceptionOptions = {},
  ) {
    super(message);
    this.name = 'AppException';
    this.status = options.status ?? ERROR_STATUS[code];
  }
}
