import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { IDEMPOTENCY_TTL_HOURS } from './idempotency.interceptor';
import { IdempotencyRepository } from './idempotency.repository';

const PRUNE_INTERVAL_MS = 10 * 60_000;
const PRUNE_BATCH = 1000;
const PRUNE_MAX_BATCHES = 100;

/** Deletes Idempotency-Key records once their 24 hours are over, every ten minutes, in bounded batches. */
@Injectable()
export class IdempotencyPruner implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(IdempotencyPruner.name);
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  private stopped = false;

  constructor(private readonly records: IdempotencyRepository) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => void this.prune().catch((e: unknown) => this.logger.warn({ err: e }, 'Idempotency-Key pruning failed')), PRUNE_INTERVAL_MS);
    this.timer.unref();
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** One pass (one at a time); returns how many records went. */
  prune(): Promise<number> {
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<number> {
    let deleted = 0;
    for (let i = 0; i < PRUNE_MAX_BATCHES && !this.stopped; i++) {
      const n = await this.records.pruneExpired(IDEMPOTENCY_TTL_HOURS, PRUNE_BATCH);
      deleted += n;
      if (n < PRUNE_BATCH) break;
    }
    return deleted;
  }
}
