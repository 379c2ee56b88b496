import { Logger, OnApplicationShutdown } from '@nestjs/common';
import { sqlState } from '@app/common';

/** How a SharedStatements makes its requests. */
export interface SharedStatementsOptions<Req, Res> {
  /** For its log lines: what it makes ("update", "create"). */
  what: string;
  /** How many shared statements may run at once; 0: every request is made alone. */
  inFlight: number;
  /** The most requests one statement carries. */
  maxPerStatement: number;
  /** Requests with one key are made one after the other, in the order they came (none: no order between requests). */
  key?: (request: Req) => string;
  /**
   * One statement for all of `requests`, answering each in order. It must never wait for a row
   * lock: a request it cannot make without waiting (or may not make in a shared statement) comes
   * back as null and is made alone.
   */
  shared: (requests: Req[]) => Promise<(Res | null)[]>;
  /** The request on its own statement, as before statements were shared (it may wait for locks). */
  alone: (request: Req) => Promise<Res>;
}

interface Waiting<Req, Res> {
  request: Req;
  key: string | undefined;
  settled: boolean;
  /** Being made alone: only that statement may answer it. */
  alone: boolean;
  resolve: (result: Res) => void;
  reject: (error: unknown) => void;
}

/**
 * Gathers the writes of concurrent requests into shared statements: under load, one statement,
 * one round trip and one commit serve many requests, where each used to pay for its own
 * (PostgreSQL sets up the whole plan, and flushes the WAL, per statement).
 *
 * At most `inFlight` shared statements run at once. A request that finds a free slot goes at once,
 * with no added wait; the others queue, and the next free slot takes the queued requests (up to
 * `maxPerStatement`) in one statement. Requests with one `key` are made one after the other, in
 * the order they came: while one is being made, the next ones wait in the queue.
 *
 * A request the shared statement did not make (null: a row held elsewhere, nothing to write to) is
 * made alone, outside the slots. If PostgreSQL refuses a shared statement (a statement timeout, a
 * deadlock), it wrote nothing, and each of its requests is made alone, so that one request's
 * failure is never another's. If the connection is lost, the statement may have committed: its
 * requests fail and nothing is made again. Each statement commits on its own: a request is
 * answered after its write committed, and every request is answered exactly once.
 *
 * A batcher is a provider that extends this class with its statements (UserUpdateBatcher,
 * UserCreateBatcher); at shutdown it logs what it ran.
 */
export class SharedStatements<Req, Res> implements OnApplicationShutdown {
  private readonly logger: Logger;
  private readonly queue: Waiting<Req, Res>[] = [];
  private running = 0;
  /** Keys with a request being made: their next requests stay queued until it is answered. */
  private readonly busyKeys = new Set<string>();
  /**
   * Statements that succeeded or were tried alone, the requests they carried, the most in one
   * shared statement, and the requests made alone after a shared statement.
   */
  readonly stats = { statements: 0, requests: 0, largest: 0, madeAlone: 0 };

  constructor(private readonly options: SharedStatementsOptions<Req, Res>) {
    this.logger = new Logger(`SharedStatements(${options.what})`);
  }

  /** Requests waiting for a statement. */
  get queued(): number {
    return this.queue.length;
  }

  onApplicationShutdown(): void {
    if (this.stats.statements > 0) this.logger.log({ ...this.stats }, `${this.options.what} statements run by this process`);
  }

  /** Makes `request` (with others, or alone) and resolves with its own result. */
  run(request: Req): Promise<Res> {
    if (this.options.inFlight === 0) return this.alone(request);
    return new Promise((resolve, reject) => {
      this.queue.push({ request, key: this.options.key?.(request), settled: false, alone: false, resolve, reject });
      this.startStatements();
    });
  }

  private startStatements(): void {
    while (this.running < this.options.inFlight) {
      const batch = this.takeBatch();
      if (batch.length === 0) return;
      this.running++;
      this.runBatch(batch)
        .finally(() => {
          this.running--;
          this.startStatements();
        })
        .catch((error: unknown) => this.logger.error({ err: error }, 'Shared statement failure'));
    }
  }

  /** The oldest queued requests whose key has no request being made, one per key, up to the statement's limit. */
  private takeBatch(): Waiting<Req, Res>[] {
    const batch: Waiting<Req, Res>[] = [];
    for (let i = 0; i < this.queue.length && batch.length < this.options.maxPerStatement; ) {
      const waiting = this.queue[i]!;
      if (waiting.key !== undefined) {
        if (this.busyKeys.has(waiting.key)) {
          i++;
          continue;
        }
        this.busyKeys.add(waiting.key);
      }
      batch.push(waiting);
      this.queue.splice(i, 1);
    }
    return batch;
  }

  private async runBatch(batch: Waiting<Req, Res>[]): Promise<void> {
    try {
      let results: (Res | null)[];
      try {
        results = await this.options.shared(batch.map((w) => w.request));
      } catch (error) {
        // PostgreSQL answered with an error (a SQLSTATE: a statement timeout, a deadlock, a
        // constraint): the statement rolled back and wrote nothing. Without one, it may have committed.
        if (sqlState(error) === undefined) {
          // The connection was lost: the statement may have committed, so nothing is made again
          // (an update made twice would bump the version twice; one made with If-Match would come
          // back as a conflict; a create made twice would find its own email taken). Each request
          // fails, as a request alone did.
          for (const waiting of batch) this.settle(waiting, () => waiting.reject(error));
          return;
        }
        this.logger.warn({ err: error, requests: batch.length }, `A shared ${this.options.what} statement failed; its requests are made one by one`);
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

  /** Outside the slots: it may wait for a row lock, as a request did before statements were shared. */
  private makeAlone(waiting: Waiting<Req, Res>): void {
    waiting.alone = true;
    this.stats.madeAlone++;
    this.alone(waiting.request).then(
      (result) => this.settle(waiting, () => waiting.resolve(result)),
      (error: unknown) => this.settle(waiting, () => waiting.reject(error)),
    );
  }

  private settle(waiting: Waiting<Req, Res>, answer: () => void): void {
    if (waiting.settled) return;
    waiting.settled = true;
    if (waiting.key !== undefined) this.busyKeys.delete(waiting.key);
    answer();
    // The key's next request, if one is queued, may go now.
    if (this.queue.length > 0) this.startStatements();
  }

  private alone(request: Req): Promise<Res> {
    this.count(1);
    return this.options.alone(request);
  }

  private count(requests: number): void {
    this.stats.statements++;
    this.stats.requests += requests;
    if (requests > this.stats.largest) this.stats.largest = requests;
  }
}
