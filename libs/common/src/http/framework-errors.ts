import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Socket } from 'node:net';
import { AppException } from '../errors/app.exception';
import { renderError } from '../errors/error-response';
import { newRequestId } from './request-id';

/**
 * Answers that Fastify or Node's HTTP parser give before a request reaches the application, in the
 * same error envelope as every other error (CONTRACT §3).
 */

/** Path parameters longer than this are taken to the application (a malformed id is its 404), not refused as 414. */
export const MAX_PARAM_LENGTH = 1024;

/** Fastify's `frameworkErrors`: a URL whose percent-encoding is broken, and the like. */
export function frameworkErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const exception =
    (error.statusCode ?? 500) < 500
      ? new AppException('MALFORMED_REQUEST', 'The request URL is not valid (check its percent-encoding)', { status: error.statusCode ?? 400 })
      : error;
  const rendered = renderError(exception, String(request.id));
  void reply.status(rendered.status).headers({ ...rendered.headers, 'x-request-id': String(request.id) }).send(rendered.body);
}

/** Node's `clientError`: headers too large (431) or a request that cannot be parsed (400). */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
  const requestId = newRequestId();
  const rendered = renderError(
    tooLarge
      ? new AppException('MALFORMED_REQUEST', 'The request headers are too large (at most 16 KiB in all)', { status: 431 })
      : new AppException('MALFORMED_REQUEST', 'The request could not be parsed as HTTP'),
    requestId,
  );
  const body = JSON.stringify(rendered.body);
  const reason = tooLarge ? 'Request Header Fields Too Large' : 'Bad Request';
  socket.end(
    `HTTP/1.1 ${rendered.status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
  );
}
