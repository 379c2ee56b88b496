import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { deleteInBatches, WorkLoop } from '@app/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { preparedQuery, TransactionRunner } from '@app/database';
import { DataSource, EntityManager } from 'typeorm';
import { DispatchedEvent, DomainEvent, DomainEventName } from './event-map';
import { idsBefore } from './ids';

const BATCH_SIZE = 100;
const POLL_INTERVAL_MS = 1000;
const MAX_BACKOFF_MS = 5 * 60_000;
/** How often dispatched events past their retention are deleted, and how many per statement. */
const PRUNE_INTERVAL_MS = 60_000;
const PRUNE_BATCH = 5000;
const PRUNE_MAX_BATCHES = 20;
/**
 * After a commit the dispatcher waits this long before claiming, so that under load one dispatch
 * transaction (BEGIN, claim, listeners, COMMIT) carries many events instead of one or two.
 */
const COALESCE_MS = 40;

/**
 * Hands committed outbox events to their listeners. Rows are claimed with FOR UPDATE SKIP LOCKED,
 * so several API processes share the work and each event is dispatched by one of them. A listener
 * failure rolls back that event's listeners only (a savepoint) and retries it later with backoff.
 */
@Injectable()
export class OutboxDispatcher implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(OutboxDispatcher.name);
  private readonly loop = new WorkLoop(() => this.drain(), { pollMs: POLL_INTERVAL_MS, coalesceMs: COALESCE_MS, logger: this.logger, what: 'Outbox dispatch' });

  private lastPrune = 0;

  constructor(
    private readonly dataSource: DataSource,
    private readonly emitter: EventEmitter2,
    transactions: TransactionRunner,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    transactions.onCommit(() => this.kick());
  }

  onApplicationBootstrap(): void {
    this.loop.start();
  }

  /** Before the database pool closes: finish the batch in hand, start no other. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.loop.stop();
  }

  kick(): void {
    this.loop.kick();
  }

  /** Waits until every committed event has been dispatched (tests). */
  settle(): Promise<void> {
    return this.loop.settle();
  }

  /** Dispatches until nothing is due. */
  async drain(): Promise<void> {
    while (!this.loop.isStopped && (await this.dispatchBatch()) === BATCH_SIZE) {
      /* keep going while batches come back full */
    }
    if (Date.now() - this.lastPrune >= PRUNE_INTERVAL_MS) {
      this.lastPrune = Date.now();
      await this.pruneDispatched();
    }
  }

  /**
   * Deletes events dispatched and older than OUTBOX_RETENTION_HOURS, a bounded number per call, so
   * the outbox does not grow without end. Undispatched events are never deleted. "Older than" is a
   * range of the primary key (idsBefore).
   * Returns how many were deleted.
   */
  async pruneDispatched(): Promise<number> {
    const before = idsBefore('evt', Date.now() - this.config.outboxRetentionHours * 3_600_000);
    const step = async () =>
      (
        await preparedQuery(this.dataSource, undefined, 'outbox_prune',
          `DELETE FROM outbox_events WHERE id IN (
             SELECT id FROM outbox_events WHERE id < $1 AND dispatched_at IS NOT NULL ORDER BY id LIMIT ${PRUNE_BATCH})`,
          [before])
      ).rowCount;
    return deleteInBatches(step, { batch: PRUNE_BATCH, maxBatches: PRUNE_MAX_BATCHES, stopped: () => this.loop.isStopped });
  }

  private async dispatchBatch(): Promise<number> {
    try {
      // Common case: every listener succeeds. The batch is claimed and marked dispatched by one
      // statement; a listener's failure rolls the marking back with everything else.
      return await this.dataSource.transaction(async (manager) => {
        const { rows } = await preparedQuery<OutboxRow & { seq: string }>(this.dataSource, manager, 'outbox_claim_and_mark',
          `UPDATE outbox_events o SET dispatched_at = now(), attempts = o.attempts + 1
             FROM (SELECT id FROM outbox_events
                    WHERE dispatched_at IS NULL AND next_attempt_at <= now()
                    ORDER BY seq LIMIT ${BATCH_SIZE} FOR UPDATE SKIP LOCKED) due
            WHERE o.id = due.id
        RETURNING o.id, o.organization_id, o.type, o.data, o.occurred_at, o.attempts - 1 AS attempts, o.seq`, []);
        rows.sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1));
        for (const row of rows) await this.emitter.emitAsync(row.type, { event: toEvent(row), manager } satisfies DispatchedEvent);
        return rows.length;
      });
    } catch (error) {
      this.logger.warn({ err: error }, 'An outbox listener failed; dispatching that batch event by event');
      return this.dispatchBatchOneByOne();
    }
  }

  /** A listener failed: isolate each event in a savepoint, so one bad event does not hold back the others. */
  private async dispatchBatchOneByOne(): Promise<number> {
    return this.dataSource.transaction(async (manager) => {
      const rows = await this.claim(manager);
      for (const row of rows) {
        await manager.query('SAVEPOINT outbox_event');
        try {
          await this.emitter.emitAsync(row.type, { event: toEvent(row), manager } satisfies DispatchedEvent);
          await manager.query('RELEASE SAVEPOINT outbox_event');
          await manager.query(`UPDATE outbox_events SET dispatched_at = now(), attempts = attempts + 1 WHERE id = $1`, [row.id]);
        } catch (error) {
          await manager.query('ROLLBACK TO SAVEPOINT outbox_event');
          const attempts = row.attempts + 1;
          const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempts);
          this.logger.warn({ err: error, event_id: row.id, attempts }, 'Outbox listener failed; will retry');
          await manager.query(
            `UPDATE outbox_events SET attempts = $2, last_error = $3, next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1`,
            [row.id, attempts, error instanceof Error ? error.message.slice(0, 1000) : String(error), delay / 1000],
          );
        }
      }
      return rows.length;
    });
  }

  private async claim(manager: EntityManager): Promise<OutboxRow[]> {
    const { rows } = await preparedQuery<OutboxRow>(this.dataSource, manager, 'outbox_claim',
      `SELECT id, organization_id, type, data, occurred_at, attempts FROM outbox_events
        WHERE dispatched_at IS NULL AND next_attempt_at <= now()
        ORDER BY seq LIMIT ${BATCH_SIZE} FOR UPDATE SKIP LOCKED`, []);
    return rows;
  }
}

interface OutboxRow {
  id: string;
  organization_id: string;
  type: string;
  data: unknown;
  occurred_at: Date;
  attempts: number;
}

function toEvent(row: OutboxRow): DomainEvent {
  return {
    id: row.id,
    type: row.type as DomainEventName,
    organizationId: row.organization_id,
    occurredAt: row.occurred_at,
    data: row.data as DomainEvent['data'],
  };
}
