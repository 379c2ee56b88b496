import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { TransactionRunner } from '@app/database';
import { DataSource } from 'typeorm';
import { DispatchedEvent, DomainEvent, DomainEventName } from './event-map';
import { OutboxEventEntity } from './outbox-event.entity';

const BATCH_SIZE = 100;
const POLL_INTERVAL_MS = 1000;
const MAX_BACKOFF_MS = 5 * 60_000;

/**
 * Hands committed outbox events to their listeners. Rows are claimed with FOR UPDATE SKIP LOCKED,
 * so several API processes share the work and each event is dispatched by one of them. A listener
 * failure rolls back that event's listeners only (a savepoint) and retries it later with backoff.
 */
@Injectable()
export class OutboxDispatcher implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(OutboxDispatcher.name);
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly dataSource: DataSource,
    private readonly emitter: EventEmitter2,
    transactions: TransactionRunner,
  ) {
    transactions.onCommit(() => this.kick());
  }

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => this.kick(), POLL_INTERVAL_MS);
    this.timer.unref();
    this.kick();
  }

  /** Before the database pool closes: finish the batch in hand, start no other. */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** Wakes the dispatcher; coalesces calls that arrive while a pass is running. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain()
      .catch((error: unknown) => this.logger.error({ err: error }, 'Outbox dispatch failed'))
      .finally(() => {
        this.running = undefined;
        if (this.again && !this.stopped) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Waits for the pass in flight (if any), then works until nothing is due: tests wait on it. */
  async settle(): Promise<void> {
    await this.running;
    await this.drain();
    await this.running;
  }

  /** Dispatches until nothing is due. Resolves when done; used by tests to wait for side effects. */
  async drain(): Promise<void> {
    while (!this.stopped && (await this.dispatchBatch()) === BATCH_SIZE) {
      /* keep going while batches come back full */
    }
  }

  private async dispatchBatch(): Promise<number> {
    return this.dataSource.transaction(async (manager) => {
      const rows: OutboxEventEntity[] = await manager
        .getRepository(OutboxEventEntity)
        .createQueryBuilder('e')
        .where('e.dispatched_at IS NULL AND e.next_attempt_at <= now()')
        .orderBy('e.occurred_at', 'ASC')
        .addOrderBy('e.id', 'ASC')
        .limit(BATCH_SIZE)
        .setLock('pessimistic_write')
        .setOnLocked('skip_locked')
        .getMany();
      for (const row of rows) {
        const event: DomainEvent = {
          id: row.id,
          type: row.type as DomainEventName,
          organizationId: row.organizationId,
          occurredAt: row.occurredAt,
          data: row.data as DomainEvent['data'],
        };
        await manager.query('SAVEPOINT outbox_event');
        try {
          const payload: DispatchedEvent = { event, manager };
          await this.emitter.emitAsync(row.type, payload);
          await manager.query('RELEASE SAVEPOINT outbox_event');
          await manager.update(OutboxEventEntity, { id: row.id }, { dispatchedAt: () => 'now()', attempts: row.attempts + 1 });
        } catch (error) {
          await manager.query('ROLLBACK TO SAVEPOINT outbox_event');
          const attempts = row.attempts + 1;
          const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempts);
          this.logger.warn({ err: error, event_id: row.id, attempts }, 'Outbox listener failed; will retry');
          await manager.update(
            OutboxEventEntity,
            { id: row.id },
            {
              attempts,
              lastError: error instanceof Error ? error.message.slice(0, 1000) : String(error),
              nextAttemptAt: new Date(Date.now() + delay),
            },
          );
        }
      }
      return rows.length;
    });
  }
}
