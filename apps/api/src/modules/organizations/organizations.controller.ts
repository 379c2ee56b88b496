import { Body, Controller, Get, Headers, Param, Patch, Post, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiHeader, ApiOperation, ApiTags } from '@nestjs/swagger';
import { IF_MATCH_API_HEADER, OffsetPaginationQuery, offsetPage, Scopes, withEtag } from '@app/common';
import type { FastifyReply } from 'fastify';
import { mapCreatedApiKey } from '../api-keys/api-keys.mapper';
import { CreateOrganizationDto, UpdateOrganizationDto } from './dto/organization.dto';
import { mapOrganization } from './organizations.mapper';
import { OrganizationsService } from './organizations.service';
import { Idempotent } from '../idempotency/idempotency.decorators';

@ApiTags('Platform administration')
@ApiBearerAuth()
@Controller('admin/organizations')
@Scopes('platform:admin')
export class OrganizationsController {
  constructor(private readonly organizations: OrganizationsService) {}

  @Post()
  @Idempotent({ replayOmits: ['api_key.key'] })
  @ApiOperation({ summary: 'Create an organization and its first API key (shown once)' })
  @ApiCreatedResponse({ description: '`{organization: {id, name, plan, limits, created_at}, api_key: {id, name, key, scopes, created_at}}`' })
  async create(@Body() body: CreateOrganizationDto, @Res({ passthrough: true }) reply: FastifyReply) {
    const { organization, key, secret } = await this.organizations.create(body.name, body.plan, body.limits);
    return { organization: withEtag(reply, organization, mapOrganization), api_key: mapCreatedApiKey(key, secret) };
  }

  @Get()
  @ApiOperation({ summary: 'List organizations' })
  async list(@Query() query: OffsetPaginationQuery) {
    const { rows, total } = await this.organizations.list(query.limit, query.offset);
    return offsetPage(rows.map(mapOrganization), total, query.limit, query.offset);
  }

  @Get(':id')
  @ApiOperation({ summary: 'Get an organization' })
  async get(@Param('id') id: string, @Res({ passthrough: true }) reply: FastifyReply) {
    return withEtag(reply, await this.organizations.get(id), mapOrganization);
  }

  @Patch(':id')
  @ApiHeader(IF_MATCH_API_HEADER)
  @ApiOperation({ summary: 'Change name, plan or (enterprise) limits; effective on the next request' })
  async update(@Param('id') id: string, @Body() body: UpdateOrganizationDto, @Headers('if-match') ifMatch: string | undefined, @Res({ passthrough: true }) reply: FastifyReply) {
    return withEtag(reply, await this.organizations.update(id, body, ifMatch), mapOrganization);
  }
}
