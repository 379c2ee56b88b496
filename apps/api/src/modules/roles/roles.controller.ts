import { Body, Controller, Delete, Get, Headers, HttpCode, Param, Post, Put, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuthContext, CurrentAuth, IF_MATCH_API_HEADER, RequiresFeature, Scopes, withEtag } from '@app/common';
import type { FastifyReply } from 'fastify';
import { CreateRoleDto, UpdateRoleDto } from './dto/role.dto';
import { RoleManagementService } from './role-management.service';
import { mapRole } from './roles.mapper';
import { Idempotent } from '../idempotency/idempotency.decorators';

@ApiTags('Roles')
@ApiBearerAuth()
@Controller()
export class RolesController {
  constructor(private readonly roles: RoleManagementService) {}

  @Get('roles')
  @Scopes('role:manage')
  @ApiOperation({ summary: "The organization's roles, built-in (system: true) first" })
  async list(@CurrentAuth() auth: AuthContext) {
    return { data: (await this.roles.list(auth.organizationId)).map(mapRole) };
  }

  @Post('roles')
  @Idempotent()
  @Scopes('role:manage')
  @RequiresFeature('advanced_rbac')
  @ApiOperation({ summary: 'Create a custom role (professional and enterprise plans); 409 ROLE_ALREADY_EXISTS on a taken name' })
  async create(@CurrentAuth() auth: AuthContext, @Body() body: CreateRoleDto, @Res({ passthrough: true }) reply: FastifyReply) {
    return withEtag(reply, await this.roles.create(auth.organizationId, body, auth), mapRole);
  }

  @Get('roles/:id')
  @Scopes('role:manage')
  @ApiOperation({ summary: 'A role' })
  async get(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Res({ passthrough: true }) reply: FastifyReply) {
    return withEtag(reply, await this.roles.get(auth.organizationId, id), mapRole);
  }

  @Put('roles/:id')
  @ApiHeader(IF_MATCH_API_HEADER)
  @Scopes('role:manage')
  @RequiresFeature('advanced_rbac')
  @ApiOperation({
    summary: 'Change a role; built-in roles keep their name',
    description: 'Permission changes reach the role\'s holders with their next token (a sign-in, the refresh_token grant or POST /auth/refresh, which re-read the roles); tokens already issued keep their scopes until they expire (at most 24 h). Taking a role away from a user, or deleting the role, revokes the access tokens of those who lose permissions at once.',
  })
  async update(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Body() body: UpdateRoleDto, @Headers('if-match') ifMatch: string | undefined, @Res({ passthrough: true }) reply: FastifyReply) {
    return withEtag(reply, await this.roles.update(auth.organizationId, id, body, auth, ifMatch), mapRole);
  }

  @Delete('roles/:id')
  @ApiHeader(IF_MATCH_API_HEADER)
  @HttpCode(204)
  @Scopes('role:manage')
  @RequiresFeature('advanced_rbac')
  @ApiOperation({ summary: 'Delete a custom role; its holders lose it (user.role_changed each)' })
  async delete(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Headers('if-match') ifMatch: string | undefined): Promise<void> {
    await this.roles.delete(auth.organizationId, id, ifMatch);
  }

  @Get('permissions')
  @Scopes('role:manage')
  @ApiOperation({ summary: "The permission catalog: the API's scopes plus every permission used by the organization's roles" })
  catalog(@CurrentAuth() auth: AuthContext) {
    return this.roles.catalog(auth.organizationId);
  }
}
