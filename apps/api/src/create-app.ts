import compress from '@fastify/compress';
import helmet from '@fastify/helmet';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { LogController } from 'fastify';
import { configureHttp, requestIdFor } from '@app/common';
import { AppConfig } from '@app/config';
import { Logger } from 'nestjs-pino';
import type { IncomingMessage } from 'node:http';
import { AppModule, loggerOptions } from './app.module';
import { setupOpenApi } from './openapi';

export const BODY_LIMIT_BYTES = 1024 * 1024;

/**
 * Builds the fully configured application (not yet listening). main.ts, the CLI and the
 * tests all go through here, so the tests drive exactly the app users run.
 */
export async function createApp(config: AppConfig, databaseUrl: string): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    logger: { ...loggerOptions(config), serializers: { req: (req: { method: string; url: string }) => ({ method: req.method, url: req.url }) } },
    // Fastify's own two lines per request are replaced by one (the onResponse hook below).
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: config.trustProxy,
    return503OnClosing: false,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    genReqId: (req: IncomingMessage) => {
      const id = requestIdFor(req);
      (req as IncomingMessage & { id: string }).id = id;
      return id;
    },
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config, databaseUrl), adapter, {
    bufferLogs: true,
    bodyParser: false,
  });
  app.useLogger(app.get(Logger));
  configureHttp(app, { docsUrl: `${config.publicBaseUrl}/docs` });
  // One line per request, after the answer: method, url, status, time.
  app.getHttpAdapter().getInstance().addHook('onResponse', (request, reply, done) => {
    request.log.info({ req: request, status_code: reply.statusCode, response_time_ms: Math.round(reply.elapsedTime * 100) / 100 }, 'request completed');
    done();
  });
  await app.register(helmet, {
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
      },
    },
  });
  await app.register(compress, { threshold: 1024 });
  setupOpenApi(app, config);
  await app.init();
  await app.getHttpAdapter().getInstance().ready();
  return app;
}
