import { Body, Controller, Delete, Get, Headers, HttpCode, Param, Post, Put, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuthContext, CurrentAuth, IF_MATCH_API_HEADER, offsetPage, Scopes, withEtag } from '@app/common';
import type { FastifyReply } from 'fastify';
import { CreateWebhookDto, DeliveriesQuery, UpdateWebhookDto } from './dto/webhook.dto';
import { mapDelivery, mapWebhook } from './webhooks.mapper';
import { WebhooksService } from './webhooks.service';
import { Idempotent } from '../idempotency/idempotency.decorators';

@ApiTags('Webhooks')
@ApiBearerAuth()
@Controller('webhooks')
@Scopes('webhook:manage')
export class WebhooksController {
  constructor(private readonly webhooks: WebhooksService) {}

  @Post()
  @Idempotent({ replayOmits: ['secret'] })
  @ApiOperation({
    summary: 'Register an endpoint; `secret` appears in this response only',
    description:
      'Deliveries are POSTs of `{event, timestamp, data, webhook_id}` signed per Standard Webhooks 1.0 ' +
      '(`webhook-id`, `webhook-timestamp`, `webhook-signature`). Retries after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; ' +
      'a 410 disables the endpoint, and so do 5 days of failures. Private, loopback, link-local and metadata ' +
      'addresses are refused (422 INVALID_WEBHOOK_URL for literal ones, a failed delivery for names resolving to one) ' +
      'unless listed in OUTBOUND_ALLOWED_HOSTS.',
  })
  async create(@CurrentAuth() auth: AuthContext, @Body() body: CreateWebhookDto, @Res({ passthrough: true }) reply: FastifyReply) {
    const { webhook, secret } = await this.webhooks.create(auth.organizationId, body);
    return { ...withEtag(reply, webhook, mapWebhook), secret };
  }

  @Get()
  @ApiOperation({ summary: "The organization's endpoints (never their secrets)" })
  async list(@CurrentAuth() auth: AuthContext) {
    return { data: (await this.webhooks.list(auth.organizationId)).map(mapWebhook) };
  }

  @Get(':id')
  @ApiOperation({ summary: 'An endpoint' })
  async get(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Res({ passthrough: true }) reply: FastifyReply) {
    return withEtag(reply, await this.webhooks.get(auth.organizationId, id), mapWebhook);
  }

  @Put(':id')
  @ApiHeader(IF_MATCH_API_HEADER)
  @ApiOperation({ summary: 'Change url, events, secret or active (true re-enables a disabled endpoint)' })
  async update(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Body() body: UpdateWebhookDto, @Headers('if-match') ifMatch: string | undefined, @Res({ passthrough: true }) reply: FastifyReply) {
    return withEtag(reply, await this.webhooks.update(auth.organizationId, id, body, ifMatch), mapWebhook);
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiHeader(IF_MATCH_API_HEADER)
  @ApiOperation({ summary: 'Remove an endpoint; its pending deliveries are cancelled' })
  async delete(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Headers('if-match') ifMatch: string | undefined): Promise<void> {
    await this.webhooks.delete(auth.organizationId, id, ifMatch);
  }

  @Get(':id/deliveries')
  @ApiOperation({ summary: 'Deliveries, newest first, with status, response code, duration, next retry and every attempt' })
  async deliveries(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Query() query: DeliveriesQuery) {
    const { rows, total } = await this.webhooks.deliveries(auth.organizationId, id, query.limit, query.offset);
    return offsetPage(rows.map(mapDelivery), total, query.limit, query.offset);
  }

  @Post(':id/test')
  @Idempotent()
  @HttpCode(202)
  @ApiOperation({ summary: 'Send a `webhook.test` ping' })
  async test(@CurrentAuth() auth: AuthContext, @Param('id') id: string) {
    return { delivery_id: await this.webhooks.test(auth.organizationId, id) };
  }

  @Post(':id/deliveries/:deliveryId/retry')
  @Idempotent()
  @HttpCode(202)
  @ApiOperation({ summary: 'Send a delivery again now' })
  async retry(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Param('deliveryId') deliveryId: string) {
    await this.webhooks.retry(auth.organizationId, id, deliveryId);
    return { delivery_id: deliveryId, status: 'pending' };
  }
}
