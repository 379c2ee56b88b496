import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { FieldsUpdate, FieldsUpdateResult, UsersRepository } from './users.repository';

/** The most updates one statement carries. */
export const MAX_UPDATES_PER_STATEMENT = 64;

interface Waiting {
  update: FieldsUpdate;
  resolve: (result: FieldsUpdateResult) => void;
  reject: (error: unknown) => void;
}

/**
 * Gathers the PUT/PATCH /users/{id} of concurrent requests into shared statements
 * (UsersRepository.updateFieldsBatch): under load, one statement, one round trip and one commit
 * serve many updates, where each used to pay for its own (PostgreSQL sets up the whole plan, and
 * flushes the WAL, per statement).
 *
 * At most USERS_UPDATE_BATCH_IN_FLIGHT statements run at once. An update that finds a free slot
 * goes at once, alone, with no added wait; the others queue, and the next free slot takes all the
 * queued updates (up to 64, one per user) in one statement. A second update of a user already in
 * the statement being gathered waits for the next one (a statement updates each row once); as
 * without batching, concurrent updates of one user queue on the row's lock and none is lost. Each
 * statement commits on its own: a request is answered only after its update is committed.
 *
 * If a shared statement fails (a deadlock, a statement timeout), each of its updates runs again
 * alone, so that one update's failure is never another's: every request gets its own answer, and
 * a failed statement left nothing written.
 */
@Injectable()
export class UserUpdateBatcher implements OnApplicationShutdown {
  private readonly logger = new Logger(UserUpdateBatcher.name);
  private readonly queue: Waiting[] = [];
  private inFlight = 0;
  /** Statements run and updates carried, for the tests and the bench's report. */
  readonly stats = { statements: 0, updates: 0, largest: 0, retriedAlone: 0 };

  constructor(
    private readonly users: UsersRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationShutdown(): void {
    if (this.stats.statements > 0) this.logger.log({ ...this.stats }, 'User update statements run by this process (statements, updates carried, the largest, updates run again alone)');
  }

  /** Runs `update` (alone or with others) and resolves with its own result. */
  run(update: FieldsUpdate): Promise<FieldsUpdateResult> {
    if (this.config.usersUpdateBatchInFlight === 0) return this.alone(update);
    return new Promise((resolve, reject) => {
      this.queue.push({ update, resolve, reject });
      this.startStatements();
    });
  }

  private startStatements(): void {
    while (this.inFlight < this.config.usersUpdateBatchInFlight && this.queue.length > 0) {
      const batch = this.takeBatch();
      this.inFlight++;
      void this.runBatch(batch).finally(() => {
        this.inFlight--;
        this.startStatements();
      });
    }
  }

  /** The queued updates of distinct users, oldest first, up to the statement's limit. */
  private takeBatch(): Waiting[] {
    const batch: Waiting[] = [];
    const users = new Set<string>();
    for (let i = 0; i < this.queue.length && batch.length < MAX_UPDATES_PER_STATEMENT; ) {
      const waiting = this.queue[i]!;
      const key = `${waiting.update.organizationId}/${waiting.update.id}`;
      if (users.has(key)) {
        i++;
        continue;
      }
      users.add(key);
      batch.push(waiting);
      this.queue.splice(i, 1);
    }
    return batch;
  }

  private async runBatch(batch: Waiting[]): Promise<void> {
    if (batch.length === 1) {
      const [only] = batch;
      await this.alone(only!.update).then(only!.resolve, only!.reject);
      return;
    }
    let results: FieldsUpdateResult[];
    try {
      results = await this.users.updateFieldsBatch(batch.map((w) => w.update));
    } catch (error) {
      this.logger.warn({ err: error, updates: batch.length }, 'A shared update statement failed; its updates run again one by one');
      this.stats.retriedAlone += batch.length;
      await Promise.all(batch.map((w) => this.alone(w.update).then(w.resolve, w.reject)));
      return;
    }
    this.count(batch.length);
    batch.forEach((w, i) => w.resolve(results[i]));
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
