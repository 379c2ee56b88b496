import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { WorkLoop } from '@app/common';
import { APP_CONFIG, AppConfig, MasterKeyService } from '@app/config';
import { idsBefore, newId } from '@app/events';
import { WebhookSender } from './webhook-sender';
import { ClaimedDelivery, WebhooksRepository } from './webhooks.repository';

/** The Standard Webhooks retry schedule: the wait after each failed attempt. */
export const RETRY_SCHEDULE_MS = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];
const DISABLE_AFTER_FAILING_MS = 5 * 86_400_000;
const POLL_INTERVAL_MS = 1000;
// Longer than a send can take (10 s timeout); a process that dies mid-send frees its claims this soon.
const LEASE_SECONDS = 15;
export const WEBHOOK_SECRET_PURPOSE = 'webhook-secret';
const PRUNE_INTERVAL_MS = 60_000;
const PRUNE_BATCH = 2000;
const PRUNE_MAX_BATCHES = 20;

/**
 * Sends due deliveries: claims them with a lease (so several processes share the work and each
 * attempt is made once), sends, records the attempt, and schedules the next one. On shutdown it
 * finishes the sends in flight.
 */
@Injectable()
export class WebhookDeliveryWorker implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(WebhookDeliveryWorker.name);
  private lastPrune = 0;
  private readonly loop = new WorkLoop(() => this.drain(), { pollMs: POLL_INTERVAL_MS, logger: this.logger, what: 'Webhook delivery pass' });

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: WebhooksRepository,
    private readonly sender: WebhookSender,
    private readonly masterKey: MasterKeyService,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.webhookWorkers > 0) this.loop.start();
  }

  /** Finishes the sends in flight before the database closes. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.loop.stop();
  }

  /**
   * Deletes deliveries that succeeded or failed more than WEBHOOK_DELIVERY_RETENTION_DAYS ago (by
   * creation time), with their attempts, in bounded batches. Returns how many went.
   */
  async pruneFinished(): Promise<number> {
    const before = idsBefore('whd', Date.now() - this.config.webhookDeliveryRetentionDays * 86_400_000);
    let deleted = 0;
    for (let i = 0; i < PRUNE_MAX_BATCHES && !this.loop.isStopped; i++) {
      const n = await this.repository.pruneFinished(before, PRUNE_BATCH);
      deleted += n;
      if (n < PRUNE_BATCH) break;
    }
    return deleted;
  }

  kick(): void {
    if (this.config.webhookWorkers > 0) this.loop.kick();
  }

  /** Sends everything due now, waiting for a pass in flight first (tests). */
  settle(): Promise<void> {
    return this.loop.settle();
  }

  /** Claims and sends due deliveries until none is due; once a minute, prunes old finished ones first. */
  async drain(): Promise<void> {
    if (Date.now() - this.lastPrune >= PRUNE_INTERVAL_MS) {
      this.lastPrune = Date.now();
      await this.pruneFinished();
    }
    while (!this.loop.isStopped) {
      const batch = await this.repository.claimDue(this.config.webhookWorkers || 4, LEASE_SECONDS);
      if (batch.length === 0) return;
      await Promise.all(batch.map((d) => this.deliver(d)));
    }
  }

  private async deliver(d: ClaimedDelivery): Promise<void> {
    const secret = this.masterKey.decrypt(WEBHOOK_SECRET_PURPOSE, d.secret_encrypted);
    const result = await this.sender.send(d.url, secret, d.id, JSON.stringify(d.payload));
    const attempt = d.attempts + 1;
    const ok = result.statusCode !== null && result.statusCode >= 200 && result.statusCode < 300;
    let disable: string | undefined;
    if (result.statusCode === 410) disable = 'The endpoint answered 410 Gone';
    else if (!ok && d.failing_since && Date.now() - new Date(d.failing_since).getTime() > DISABLE_AFTER_FAILING_MS) {
      disable = 'The endpoint has been failing for more than 5 days';
    }
    const retryIn = RETRY_SCHEDULE_MS[attempt - 1];
    const status = ok ? 'succeeded' : disable || retryIn === undefined ? 'failed' : 'pending';
    await this.repository.recordAttempt(
      {
        id: newId('wha'),
        deliveryId: d.id,
        organizationId: d.organization_id,
        attempt,
        statusCode: result.statusCode,
        error: ok ? null : (result.error ?? `HTTP ${result.statusCode}`),
        durationMs: result.durationMs,
        createdAt: new Date(),
      },
      { status, nextAttemptAt: status === 'pending' ? new Date(Date.now() + retryIn!) : null },
      { succeeded: ok, disable },
    );
    if (disable) this.logger.warn({ webhook_id: d.webhook_id, reason: disable }, 'Webhook endpoint disabled');
  }
}
