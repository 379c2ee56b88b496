import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { ConfigValidationError, loadConfig } from '@app/config';
import { RunningDatabase, startEmbeddedPostgres } from '@app/database';
import { join } from 'node:path';
import { AppModule } from './app.module';

/**
 * Background work without the HTTP API: the outbox dispatcher and the webhook delivery workers.
 * Run it beside API processes started with WEBHOOK_WORKERS=0 (`npm run worker`).
 */
async function main(): Promise<void> {
  const env = { ...process.env };
  if (!env.WEBHOOK_WORKERS || env.WEBHOOK_WORKERS === '0') env.WEBHOOK_WORKERS = '4';
  const config = loadConfig(env);
  let embedded: RunningDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres({ dir: join(config.dataDir, 'postgres'), database: 'user_management' });
    databaseUrl = embedded.url;
  }
  const app = await NestFactory.createApplicationContext(AppModule.forRoot(config, databaseUrl), { bufferLogs: true });
  let closing = false;
  const shutdown = async () => {
    if (closing) return;
    closing = true;
    // Finishes the sends in flight, then closes the database.
    await app.close();
    await embedded?.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown());
  process.on('SIGINT', () => void shutdown());
  process.stdout.write(`${JSON.stringify({ level: 30, msg: 'Worker started', webhook_workers: config.webhookWorkers })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof ConfigValidationError || error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
