import 'reflect-metadata';
import { drainRequests } from '@app/common';
import { ConfigValidationError, loadConfig } from '@app/config';
import { RunningDatabase, startEmbeddedPostgres } from '@app/database';
import { join } from 'node:path';
import { createApp } from './create-app';

let embedded: RunningDatabase | undefined;

async function main(): Promise<void> {
  const config = loadConfig();
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres({ dir: join(config.dataDir, 'postgres'), database: 'user_management' });
    databaseUrl = embedded.url;
  }
  const app = await createApp(config, databaseUrl);

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    const force = setTimeout(() => {
      process.stderr.write(`Shutdown took longer than ${config.shutdownTimeoutMs} ms; exiting\n`);
      process.exit(1);
    }, config.shutdownTimeoutMs);
    force.unref();
    process.stdout.write(`${JSON.stringify({ level: 30, msg: `${signal} received: draining requests` })}\n`);
    // Fastify stops accepting, finishes in-flight requests, then Nest runs the shutdown hooks
    // (background workers drain, database pool closes); the embedded database stops last.
    await drainRequests(app, 250, config.shutdownTimeoutMs / 2);
    await app.close();
    await embedded?.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  await app.listen({ port: config.port, host: config.host });
  // The bound port, not the configured one: with PORT=0 the system picks a free port, and this
  // line is how a supervisor (or the test harness) learns which.
  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  process.stdout.write(
    `${JSON.stringify({ level: 30, msg: `User Management API listening on http://${config.host}:${port}`, port, database: embedded ? 'embedded' : 'external' })}\n`,
  );
}

main().catch((error: unknown) => {
  if (error instanceof ConfigValidationError) {
    process.stderr.write(`${error.message}\n`);
  } else {
    process.stderr.write(`Failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  }
  void (embedded?.stop() ?? Promise.resolve()).finally(() => process.exit(1));
});
