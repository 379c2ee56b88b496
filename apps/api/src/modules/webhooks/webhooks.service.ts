import { Injectable } from '@nestjs/common';
import { AppException, assertIfMatch, expectedVersion, staleIfMatch } from '@app/common';
import { MasterKeyService } from '@app/config';
import { isId, newId } from '@app/events';
import { randomBytes } from 'node:crypto';
import { CreateWebhookDto, UpdateWebhookDto } from './dto/webhook.dto';
import { WebhookEntity } from './entities/webhook.entities';
import { webhookPayload } from './webhook-fanout.listener';
import { WEBHOOK_SECRET_PURPOSE, WebhookDeliveryWorker } from './webhook-delivery.worker';
import { WebhookSender } from './webhook-sender';
import { WebhooksRepository } from './webhooks.repository';

const WEBHOOK_ID = /^wh_[a-z0-9]{1,64}$/;

@Injectable()
export class WebhooksService {
  constructor(
    private readonly repository: WebhooksRepository,
    private readonly masterKey: MasterKeyService,
    private readonly sender: WebhookSender,
    private readonly worker: WebhookDeliveryWorker,
  ) {}

  async create(organizationId: string, dto: CreateWebhookDto): Promise<{ webhook: WebhookEntity; secret: string }> {
    this.assertUrl(dto.url);
    const secret = dto.secret ?? `whsec_${randomBytes(32).toString('base64')}`;
    const webhook: WebhookEntity = {
      id: newId('wh'),
      organizationId,
      url: dto.url,
      events: normalizeEvents(dto.events),
      secretEncrypted: this.masterKey.encrypt(WEBHOOK_SECRET_PURPOSE, secret),
      active: dto.active ?? true,
      disabledReason: null,
      failingSince: null,
      createdAt: new Date(),
      updatedAt: new Date(),
      version: 1,
    };
    await this.repository.insert(webhook);
    return { webhook: (await this.repository.find(organizationId, webhook.id))!, secret };
  }

  list(organizationId: string): Promise<WebhookEntity[]> {
    return this.repository.list(organizationId);
  }

  async get(organizationId: string, id: string): Promise<WebhookEntity> {
    const webhook = WEBHOOK_ID.test(id) ? await this.repository.find(organizationId, id) : null;
    if (!webhook) throw new AppException('WEBHOOK_NOT_FOUND', 'Webhook not found');
    return webhook;
  }

  /** Changes an endpoint; with If-Match, only if it names the current version (else 409 CONCURRENT_UPDATE). */
  async update(organizationId: string, id: string, dto: UpdateWebhookDto, ifMatch?: string): Promise<WebhookEntity> {
    const webhook = await this.get(organizationId, id);
    const expected = assertIfMatch(ifMatch, webhook, 'webhook');
    if (dto.url !== undefined) this.assertUrl(dto.url);
    const changes: Partial<WebhookEntity> = {};
    if (dto.url !== undefined) changes.url = dto.url;
    if (dto.events !== undefined) changes.events = normalizeEvents(dto.events);
    if (dto.secret !== undefined) changes.secretEncrypted = this.masterKey.encrypt(WEBHOOK_SECRET_PURPOSE, dto.secret);
    if (dto.active !== undefined) {
      changes.active = dto.active;
      if (dto.active) Object.assign(changes, { disabledReason: null, failingSince: null });
    }
    if (!(await this.repository.update(organizationId, id, changes, expected)) && expected !== undefined) throw staleIfMatch('webhook');
    return this.get(organizationId, id);
  }

  async delete(organizationId: string, id: string, ifMatch?: string): Promise<void> {
    const webhook = await this.get(organizationId, id);
    const expected = expectedVersion(ifMatch, webhook.id, webhook.version);
    if (!(await this.repository.delete(organizationId, id, expected)) && expected !== undefined) throw staleIfMatch('webhook');
  }

  async deliveries(organizationId: string, id: string, limit: number, offset: number) {
    await this.get(organizationId, id);
    return this.repository.listDeliveries(organizationId, id, limit, offset);
  }

  /** Queues a `webhook.test` ping to the endpoint, sent like any other delivery. */
  async test(organizationId: string, id: string): Promise<string> {
    const webhook = await this.get(organizationId, id);
    const deliveryId = newId('whd');
    await this.repository.insertDeliveries(undefined, [
      {
        id: deliveryId,
        organizationId,
        webhookId: webhook.id,
        eventId: null,
        eventType: 'webhook.test',
        orderKey: deliveryId,
        payload: webhookPayload('webhook.test', new Date(), { message: 'This is a test delivery' }, webhook.id),
      },
    ]);
    this.worker.kick();
    return deliveryId;
  }

  async retry(organizationId: string, id: string, deliveryId: string): Promise<void> {
    await this.get(organizationId, id);
    const delivery = isId('whd', deliveryId) ? await this.repository.findDelivery(organizationId, id, deliveryId) : undefined;
    if (!delivery) throw new AppException('NOT_FOUND', 'Delivery not found');
    await this.repository.requeue(organizationId, deliveryId);
    this.worker.kick();
  }

  private assertUrl(url: string): void {
    const refused = this.sender.guard.refuseUrl(url);
    if (refused) {
      throw new AppException('INVALID_WEBHOOK_URL', refused, {
        details: [{ field: 'url', issue: refused, provided: url, code: 'INVALID_WEBHOOK_URL' }],
      });
    }
  }
}

function normalizeEvents(events: string[]): string[] {
  return events.includes('*') ? ['*'] : [...new Set(events)];
}
