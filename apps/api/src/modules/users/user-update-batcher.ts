import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { FieldsUpdate, FieldsUpdateResult, UsersRepository } from './users.repository';

/** The most updates one statement carries. */
export const MAX_UPDATES_PER_STATEMENT = 64;

interface Waiting {
  update: FieldsUpdate;
  key: string;
  settled: boolean;
  /** Being made alone: only that statement may answer it. */
  alone: boolean;
  resolve: (result: FieldsUpdateResult) => void;
  reject: (error: unknown) => void;
}

/**
 * Gathers the PUT/PATCH /users/{id} of concurrent requests into shared statements
 * (UsersRepository.updateFieldsBatch): under load, one statement, one round trip and one commit
 * serve many updates, where each used to pay for its own (PostgreSQL sets up the whole plan, and
 * flushes the WAL, per statement).
 *
 * At most USERS_UPDATE_BATCH_IN_FLIGHT shared statements run at once. An update that finds a free
 * slot goes at once, with no added wait; the others queue, and the next free slot takes the queued
 * updates (up to 64) in one statement. A user's updates are made one after the other, in the order
 * they came: while one is being made, the user's next ones wait in the queue.
 *
 * A shared statement never waits for a row lock. An update whose row another transaction holds (a
 * sign-in, a role change), or whose user does not exist, comes back unmade and is made alone
 * (UsersRepository.updateFields), outside the slots, waiting for the row as every update did before
 * statements were shared. If PostgreSQL refuses a shared statement (a statement timeout, a
 * deadlock), it wrote nothing, and each of its updates is made alone, so that one update's failure
 * is never another's. If the connection is lost, the statement may have committed: its requests
 * fail (503/500) and nothing is made again. Each statement commits on its own: a request is
 * answered after its update committed.
 */
@Injectable()
export class UserUpdateBatcher implements OnApplicationShutdown {
  private readonly logger = new Logger(UserUpdateBatcher.name);
  private readonly queue: Waiting[] = [];
  private inFlight = 0;
  /** Users with an update being made: their next updates stay queued until it is answered. */
  private readonly busyUsers = new Set<string>();
  /**
   * Statements that succeeded or were tried alone, the updates they carried, the most in one shared
   * statement, and the updates made alone after a shared statement (row held elsewhere, no such
   * user, or the statement failed).
   */
  readonly stats = { statements: 0, updates: 0, largest: 0, madeAlone: 0 };

  constructor(
    private readonly users: UsersRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Updates waiting for a statement. */
  get queued(): number {
    return this.queue.length;
  }

  onApplicationShutdown(): void {
    if (this.stats.statements > 0) this.logger.log({ ...this.stats }, 'User update statements run by this process');
  }

  /** Makes `update` (with others, or alone) and resolves with its own result. */
  run(update: FieldsUpdate): Promise<FieldsUpdateResult> {
    if (this.config.usersUpdateBatchInFlight === 0) return this.alone(update);
    return new Promise((resolve, reject) => {
      this.queue.push({ update, key: `${update.organizationId}/${update.id}`, settled: false, alone: false, resolve, reject });
      this.startStatements();
    });
  }

  private startStatements(): void {
    while (this.inFlight < this.config.usersUpdateBatchInFlight) {
      const batch = this.takeBatch();
      if (batch.length === 0) return;
      this.inFlight++;
      this.runBatch(batch)
        .finally(() => {
          this.inFlight--;
          this.startStatements();
        })
        .catch((error: unknown) => this.logger.error({ err: error }, 'Update batcher failure'));
    }
  }

  /** The oldest queued updates of users with no update being made, one per user, up to the statement's limit. */
  private takeBatch(): Waiting[] {
    const batch: Waiting[] = [];
    for (let i = 0; i < this.queue.length && batch.length < MAX_UPDATES_PER_STATEMENT; ) {
      const waiting = this.queue[i]!;
      if (this.busyUsers.has(waiting.key)) {
        i++;
        continue;
      }
      this.busyUsers.add(waiting.key);
      batch.push(waiting);
      this.queue.splice(i, 1);
    }
    return batch;
  }

  private async runBatch(batch: Waiting[]): Promise<void> {
    try {
      let results: (FieldsUpdateResult | null)[];
      try {
        results = await this.users.updateFieldsBatch(batch.map((w) => w.update));
      } catch (error) {
        if (!UserUpdateBatcher.refusedByDatabase(error)) {
          // The connection was lost: the statement may have committed, so nothing is made again
          // (an update made twice would bump the version twice; one made with If-Match would come
          // back as a conflict). Each request fails, as a single update's request did.
          for (const waiting of batch) this.settle(waiting, () => waiting.reject(error));
          return;
        }
        this.logger.warn({ err: error, updates: batch.length }, 'A shared update statement failed; its updates are made one by one');
        for (const waiting of batch) this.makeAlone(waiting);
        return;
      }
      this.count(batch.length);
      batch.forEach((waiting, i) => {
        const result = results[i];
        if (result === null || result === undefined) this.makeAlone(waiting);
        else this.settle(waiting, () => waiting.resolve(result));
      });
    } catch (error) {
      // Nothing above should throw; if it does, no request may be left waiting (those being made
      // alone are answered by their own statement).
      for (const waiting of batch) if (!waiting.alone) this.settle(waiting, () => waiting.reject(error));
    }
  }

  /**
   * Whether PostgreSQL answered the statement with an error (a SQLSTATE: a statement timeout, a
   * deadlock, a constraint): then it rolled back and wrote nothing. Without one (a lost
   * connection), it may have committed.
   */
  private static refusedByDatabase(error: unknown): boolean {
    const code = (error as { code?: unknown } | null)?.code;
    return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
  }

  /** Outside the slots: it may wait for a row lock, as an update did before statements were shared. */
  private makeAlone(waiting: Waiting): void {
    waiting.alone = true;
    this.stats.madeAlone++;
    this.alone(waiting.update).then(
      (result) => this.settle(waiting, () => waiting.resolve(result)),
      (error: unknown) => this.settle(waiting, () => waiting.reject(error)),
    );
  }

  private settle(waiting: Waiting, answer: () => void): void {
    if (waiting.settled) return;
    waiting.settled = true;
    this.busyUsers.delete(waiting.key);
    answer();
    // The user's next update, if one is queued, may go now.
    if (this.queue.length > 0) this.startStatements();
  }

  private alone(update: FieldsUpdate): Promise<FieldsUpdateResult> {
    this.count(1);
    return this.users.updateFields(update.organizationId, update.id, update.fields, update);
  }

  private count(updates: number): void {
    this.stats.statements++;
    this.stats.updates += updates;
    if (updates > this.stats.largest) this.stats.largest = updates;
  }
}
