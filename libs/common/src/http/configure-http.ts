import { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyInstance } from 'fastify';
import { AllExceptionsFilter } from '../errors/all-exceptions.filter';
import { AppException } from '../errors/app.exception';
import { renderError } from '../errors/error-response';
import { AppValidationPipe } from '../validation/app-validation.pipe';
import { RouteTable } from './route-table';

export const API_PREFIX = 'v2';

const drainState = new WeakMap<object, boolean>();
const inFlight = new WeakMap<object, number>();

/**
 * Starts a graceful shutdown: from now on every answer closes its connection, and the promise
 * resolves once no request has been in flight for `quietMs` (so requests already sent on open
 * connections are still read and answered). The caller then closes the server.
 */
export async function drainRequests(app: NestFastifyApplication, quietMs = 250, maxMs = 10_000): Promise<void> {
  const fastify = app.getHttpAdapter().getInstance();
  drainState.set(fastify, true);
  const deadline = Date.now() + maxMs;
  let quietSince = Date.now();
  while (Date.now() < deadline) {
    if ((inFlight.get(fastify) ?? 0) > 0) quietSince = Date.now();
    else if (Date.now() - quietSince >= quietMs) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * The request pipeline every route shares: the X-Request-Id echo, JSON-only bodies,
 * the error envelope (also for 404/405 and body-parser failures), validation, and /v1 sunset.
 * Must run before app.init() so that it sees every route as it is registered.
 */
export function configureHttp(app: NestFastifyApplication, options: { docsUrl: string }): void {
  const fastify = app.getHttpAdapter().getInstance() as unknown as FastifyInstance;
  const routes = new RouteTable();

  fastify.addHook('onRoute', (route) => routes.add(route.method, route.url));
  fastify.addHook('onRequest', (request, reply, done) => {
    void reply.header('X-Request-Id', request.id);
    // While draining, every answer closes its connection so that keep-alive clients move on
    // and the server can finish closing as soon as the in-flight requests are answered.
    if (drainState.get(fastify)) void reply.header('Connection', 'close');
    inFlight.set(fastify, (inFlight.get(fastify) ?? 0) + 1);
    done();
  });
  fastify.addHook('onResponse', (_request, _reply, done) => {
    inFlight.set(fastify, (inFlight.get(fastify) ?? 1) - 1);
    done();
  });
  // Only JSON bodies are accepted (contract §2); the SAML ACS registers its own form parser.
  fastify.removeContentTypeParser('text/plain');
  // RFC 7396 clients send merge patches as application/merge-patch+json: the same JSON parser
  // (prototype-poisoning checks, body limit) reads them.
  fastify.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, fastify.getDefaultJsonParser('error', 'error'));

  const sunset = (request: { id: string }, reply: { status: (n: number) => { headers: (h: Record<string, string>) => { send: (b: unknown) => unknown } } }) => {
    const rendered = renderError(
      new AppException('API_VERSION_SUNSET', 'API v1 was sunset in June 2025; use /v2', {
        headers: { Link: `<${options.docsUrl}>; rel="successor-version"` },
      }),
      String(request.id),
    );
    return reply.status(rendered.status).headers(rendered.headers).send(rendered.body);
  };
  fastify.all('/v1', sunset);
  fastify.all('/v1/*', sunset);

  app.setGlobalPrefix(API_PREFIX, {
    exclude: ['health', 'openapi.json', 'openapi/v2.1.yaml', 'docs', 'docs/{*path}', '.well-known/jwks.json'],
  });
  app.useGlobalFilters(new AllExceptionsFilter(routes));
  app.useGlobalPipes(new AppValidationPipe());
}
