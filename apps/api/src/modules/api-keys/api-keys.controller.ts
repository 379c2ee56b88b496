import { Body, Controller, Delete, Get, HttpCode, Param, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiNoContentResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuthContext, CurrentAuth, Scopes } from '@app/common';
import { mapApiKey, mapCreatedApiKey } from './api-keys.mapper';
import { ApiKeysService } from './api-keys.service';
import { CreateApiKeyDto } from './dto/create-api-key.dto';
import { Idempotent } from '../idempotency/idempotency.decorators';

@ApiTags('API keys')
@ApiBearerAuth()
@Controller('api-keys')
export class ApiKeysController {
  constructor(private readonly apiKeys: ApiKeysService) {}

  @Get()
  @Scopes('apikey:manage')
  @ApiOperation({ summary: "List the organization's active API keys (never their secrets)" })
  async list(@CurrentAuth() auth: AuthContext) {
    return { data: (await this.apiKeys.list(auth.organizationId)).map(mapApiKey) };
  }

  @Post()
  @Scopes('apikey:manage')
  @Idempotent({ replayOmits: ['key'] })
  @ApiOperation({ summary: 'Create an API key; `key` is shown in this response only' })
  @ApiCreatedResponse({ description: '`{id, name, key, scopes, created_at}`' })
  async create(@CurrentAuth() auth: AuthContext, @Body() body: CreateApiKeyDto) {
    const { key, secret } = await this.apiKeys.createFor(auth, body.name, body.scopes);
    return mapCreatedApiKey(key, secret);
  }

  @Delete(':id')
  @HttpCode(204)
  @Scopes('apikey:manage')
  @ApiOperation({ summary: 'Revoke an API key: it and every token it obtained stop working at once' })
  @ApiNoContentResponse()
  async revoke(@CurrentAuth() auth: AuthContext, @Param('id') id: string): Promise<void> {
    await this.apiKeys.revokeFor(auth, id);
  }
}
