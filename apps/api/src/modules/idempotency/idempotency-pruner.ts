import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { deleteInBatches, WorkLoop } from '@app/common';
import { IDEMPOTENCY_TTL_HOURS } from './idempotency.interceptor';
import { IdempotencyRepository } from './idempotency.repository';

const PRUNE_INTERVAL_MS = 10 * 60_000;
const PRUNE_BATCH = 1000;
const PRUNE_MAX_BATCHES = 100;

/** Deletes Idempotency-Key records once their 24 hours are over: at start, then every ten minutes, in bounded batches. */
@Injectable()
export class IdempotencyPruner implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(IdempotencyPruner.name);
  private readonly loop = new WorkLoop(() => this.pass(), { pollMs: PRUNE_INTERVAL_MS, logger: this.logger, what: 'Idempotency-Key pruning' });
  private lastDeleted = 0;

  constructor(private readonly records: IdempotencyRepository) {}

  onApplicationBootstrap(): void {
    this.loop.start();
  }

  beforeApplicationShutdown(): Promise<void> {
    return this.loop.stop();
  }

  /** One pass now (one at a time); returns how many records it deleted. */
  async prune(): Promise<number> {
    await this.loop.settle();
    return this.lastDeleted;
  }

  private async pass(): Promise<void> {
    this.lastDeleted = await deleteInBatches(() => this.records.pruneExpired(IDEMPOTENCY_TTL_HOURS, PRUNE_BATCH), {
      batch: PRUNE_BATCH,
      maxBatches: PRUNE_MAX_BATCHES,
      stopped: () => this.loop.isStopped,
    });
  }
}
