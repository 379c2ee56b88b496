import { ArgumentsHost, Catch, ExceptionFilter, Logger, NotFoundException } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RouteTable } from '../http/route-table';
import { AppException } from './app.exception';
import { renderError } from './error-response';

/** The one place where every exception becomes the contract's error envelope. */
@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  constructor(private readonly routes?: RouteTable) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    const rendered = renderError(this.refine(exception, request), String(request.id));
    if (rendered.unexpected) {
      this.logger.error({ err: exception, request_id: request.id }, 'Unhandled error');
    }
    if (reply.sent) return;
    void reply.status(rendered.status).headers(rendered.headers).send(rendered.body);
  }

  /** An unmatched route whose path exists with other methods is a 405, not a 404. */
  private refine(exception: unknown, request: FastifyRequest): unknown {
    if (!(exception instanceof NotFoundException) || !this.routes) return exception;
    const allowed = this.routes.allowedMethods(request.url);
    if (allowed.length === 0) return exception;
    return new AppException('METHOD_NOT_ALLOWED', `${request.method} is not allowed on this path`, {
      headers: { Allow: allowed.join(', ') },
    });
  }
}
