import { Logger } from '@nestjs/common';

/**
 * A background pass that runs on a timer and whenever it is kicked, never twice at once: kicks
 * that arrive while a pass runs are folded into one more pass. The API's background jobs run on
 * one (the outbox dispatcher, the webhook delivery worker, the cleanups, prunes and samplers).
 */
export class WorkLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly pass: () => Promise<void>,
    private readonly options: { pollMs: number; coalesceMs?: number; logger: Logger; what: string },
  ) {}

  get isStopped(): boolean {
    return this.stopped;
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.options.pollMs);
    this.timer.unref();
    this.kick();
  }

  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    const wait = this.options.coalesceMs ? new Promise((resolve) => setTimeout(resolve, this.options.coalesceMs)) : Promise.resolve();
    this.running = wait
      .then(() => this.pass())
      .catch((error: unknown) => this.options.logger.error({ err: error }, `${this.options.what} failed`))
      .finally(() => {
        this.running = undefined;
        if (this.again && !this.stopped) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Waits for the pass in flight (if any), then runs one to completion: tests wait on it. */
  async settle(): Promise<void> {
    await this.running;
    await this.pass();
    await this.running;
  }

  /** Starts no new pass and waits for the one in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
