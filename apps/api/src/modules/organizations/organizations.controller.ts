import { Body, Controller, Get, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { OffsetPaginationQuery, offsetPage, Scopes } from '@app/common';
import { mapCreatedApiKey } from '../api-keys/api-keys.mapper';
import { CreateOrganizationDto, UpdateOrganizationDto } from './dto/organization.dto';
import { mapOrganization } from './organizations.mapper';
import { OrganizationsService } from './organizations.service';
import { ReplayOmits } from '../idempotency/idempotency.decorators';

@ApiTags('Platform administration')
@ApiBearerAuth()
@Controller('admin/organizations')
@Scopes('platform:admin')
export class OrganizationsController {
  constructor(private readonly organizations: OrganizationsService) {}

  @Post()
  @ReplayOmits('api_key.key')
  @ApiOperation({ summary: 'Create an organization and its first API key (shown once)' })
  @ApiCreatedResponse({ description: '`{organization: {id, name, plan, limits, created_at}, api_key: {id, name, key, scopes, created_at}}`' })
  async create(@Body() body: CreateOrganizationDto) {
    const { organization, key, secret } = await this.organizations.create(body.name, body.plan, body.limits);
    return { organization: mapOrganization(organization), api_key: mapCreatedApiKey(key, secret) };
  }

  @Get()
  @ApiOperation({ summary: 'List organizations' })
  async list(@Query() query: OffsetPaginationQuery) {
    const { rows, total } = await this.organizations.list(query.limit, query.offset);
    return offsetPage(rows.map(mapOrganization), total, query.limit, query.offset);
  }

  @Get(':id')
  @ApiOperation({ summary: 'Get an organization' })
  async get(@Param('id') id: string) {
    return mapOrganization(await this.organizations.get(id));
  }

  @Patch(':id')
  @ApiOperation({ summary: 'Change name, plan or (enterprise) limits; effective on the next request' })
  async update(@Param('id') id: string, @Body() body: UpdateOrganizationDto) {
    return mapOrganization(await this.organizations.update(id, body));
  }
}
