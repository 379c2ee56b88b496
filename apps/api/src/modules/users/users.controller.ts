import { Body, Controller, Delete, Get, Headers, HttpCode, Param, Patch, Post, Put, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuthContext, CurrentAuth, IF_MATCH_API_HEADER, Scopes, withEtag } from '@app/common';
import type { FastifyReply } from 'fastify';
import {
  AssignRolesDto,
  BulkCreateUsersDto,
  CreateUserDto,
  DeleteUserQuery,
  GetUserQuery,
  ListUsersQuery,
  SearchUsersQuery,
  UpdateOwnProfileDto,
  UpdateUserDto,
} from './dto/user.dto';
import { AccountTokensService } from './account-tokens.service';
import { etagOf, mapUserDetail } from './users.mapper';
import { UsersService } from './users.service';
import { RolesService } from '../roles/roles.service';
import { DEFAULT_ROLE_NAME } from '../roles/built-in-roles';
import { Idempotent } from '../idempotency/idempotency.decorators';

/** If-Match on user writes: the shared description, and what happens without it. */
const IF_MATCH_HEADER = {
  ...IF_MATCH_API_HEADER,
  description: `${IF_MATCH_API_HEADER.description}. Without it, concurrent updates of one user are applied one after another and none is lost.`,
};

@ApiTags('Users')
@ApiBearerAuth()
@Controller('users')
export class UsersController {
  constructor(
    private readonly users: UsersService,
    private readonly accountTokens: AccountTokensService,
    private readonly roles: RolesService,
  ) {}

  @Get()
  @Scopes('user:read')
  @ApiOperation({ summary: 'List users (offset mode, or keyset mode with `cursor`)' })
  list(@CurrentAuth() auth: AuthContext, @Query() query: ListUsersQuery) {
    return this.users.list(auth.organizationId, query);
  }

  @Get('search')
  @Scopes('user:read')
  @ApiOperation({
    summary: 'Advanced search: q, filters, multi-key sort, fields, cursor (seed §7.4)',
    description:
      '`q` (every word must appear in the names or the email) and `contains` on first_name, last_name or email are case-insensitive ' +
      '(PostgreSQL lower-cases both sides) and use the trigram index. For a printable-ASCII word the index may look up only its rare part (trigram frequencies sampled every ' +
      'SEARCH_STATS_REFRESH_SECONDS), and each row found is checked for the whole word: the results are the same. ' +
      '`total_estimate` is exact below 1,000 matches and when the first page holds every match; cursor pages repeat the first page\'s.',
  })
  search(@CurrentAuth() auth: AuthContext, @Query() query: SearchUsersQuery) {
    return this.users.search(auth.organizationId, query);
  }

  @Get('me')
  @Scopes('read:own_profile')
  @ApiOperation({ summary: "An end user's own profile (end-user tokens)" })
  async me(@CurrentAuth() auth: AuthContext, @Res({ passthrough: true }) reply: FastifyReply) {
    const user = await this.users.get(auth.organizationId, auth.subject);
    void reply.header('ETag', etagOf(user));
    return mapUserDetail(user, { preferences: true });
  }

  @Patch('me')
  @Scopes('update:own_profile')
  @ApiHeader(IF_MATCH_HEADER)
  @ApiOperation({ summary: 'Same as PUT /users/me' })
  patchMe(@CurrentAuth() auth: AuthContext, @Body() body: UpdateOwnProfileDto, @Headers('if-match') ifMatch: string | undefined, @Res({ passthrough: true }) reply: FastifyReply) {
    return this.updateMe(auth, body, ifMatch, reply);
  }

  @Put('me')
  @Scopes('update:own_profile')
  @ApiHeader(IF_MATCH_HEADER)
  @ApiOperation({ summary: 'Update your own names, metadata and preferences (never role, status or email_verified); PATCH is the same' })
  async updateMe(@CurrentAuth() auth: AuthContext, @Body() body: UpdateOwnProfileDto, @Headers('if-match') ifMatch: string | undefined, @Res({ passthrough: true }) reply: FastifyReply) {
    const user = await this.users.update(auth.organizationId, auth.subject, body, ifMatch);
    void reply.header('ETag', etagOf(user));
    return mapUserDetail(user, { preferences: true });
  }

  @Post()
  @Idempotent()
  @Scopes('user:write')
  @ApiOperation({ summary: 'Create a user (seed §4.2); 409 USER_ALREADY_EXISTS on a taken email' })
  async create(@CurrentAuth() auth: AuthContext, @Body() body: CreateUserDto, @Res({ passthrough: true }) reply: FastifyReply) {
    // No role means the default one, which is checked like any other.
    await this.roles.assertAssignable(auth, [body.role ?? DEFAULT_ROLE_NAME]);
    const user = await this.users.create(auth.organizationId, body);
    void reply.header('ETag', etagOf(user)).header('Location', `/v2/users/${user.id}`);
    return mapUserDetail(user);
  }

  @Post('bulk')
  @Idempotent()
  @HttpCode(200)
  @Scopes('user:write')
  @ApiOperation({ summary: 'Create 1-100 users in one transaction (seed §7.1); 422 when fail_on_error rolls back' })
  async bulk(@CurrentAuth() auth: AuthContext, @Body() body: BulkCreateUsersDto, @Res({ passthrough: true }) reply: FastifyReply) {
    // Each item's role, or the default one; malformed items fail on their own in the service.
    const itemRoles = body.users.map((u) => (u as { role?: unknown } | null)?.role);
    await this.roles.assertAssignable(auth, itemRoles.map((r) => (typeof r === 'string' ? r : DEFAULT_ROLE_NAME)));
    const { status, body: result } = await this.users.bulkCreate(auth.organizationId, body);
    void reply.status(status);
    return result;
  }

  @Get(':id')
  @Scopes('user:read')
  @ApiOperation({ summary: 'A user with roles and permissions (seed §4.3)' })
  async get(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Query() query: GetUserQuery, @Res({ passthrough: true }) reply: FastifyReply) {
    const user = await this.users.get(auth.organizationId, id, { includeDeleted: query.include_deleted });
    void reply.header('ETag', etagOf(user));
    return mapUserDetail(user, { preferences: (query.include ?? '').split(',').includes('preferences') });
  }

  @Put(':id')
  @Scopes('user:write')
  @ApiHeader(IF_MATCH_HEADER)
  @ApiOperation({ summary: 'Change only the fields sent (seed §4.4); metadata, when sent, replaces the object; null clears nothing (422)' })
  updatePut(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Body() body: UpdateUserDto, @Headers('if-match') ifMatch: string | undefined, @Res({ passthrough: true }) reply: FastifyReply) {
    return this.doUpdate(auth, id, body, ifMatch, reply);
  }

  @Patch(':id')
  @Scopes('user:write')
  @ApiHeader(IF_MATCH_HEADER)
  @ApiOperation({ summary: 'Same as PUT' })
  updatePatch(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Body() body: UpdateUserDto, @Headers('if-match') ifMatch: string | undefined, @Res({ passthrough: true }) reply: FastifyReply) {
    return this.doUpdate(auth, id, body, ifMatch, reply);
  }

  private async doUpdate(auth: AuthContext, id: string, body: UpdateUserDto, ifMatch: string | undefined, reply: FastifyReply) {
    await this.roles.assertAssignable(auth, ['role' in body ? body.role : undefined]);
    const user = await this.users.update(auth.organizationId, id, body, ifMatch);
    void reply.header('ETag', etagOf(user));
    return mapUserDetail(user);
  }

  @Delete(':id')
  @Scopes('user:delete')
  @ApiHeader(IF_MATCH_HEADER)
  @ApiOperation({ summary: 'Delete permanently, or with soft_delete=true keep it restorable (seed §4.5)' })
  async delete(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Query() query: DeleteUserQuery, @Headers('if-match') ifMatch: string | undefined) {
    const soft = query.soft_delete ?? false;
    const { deleted_at } = await this.users.delete(auth.organizationId, id, soft, ifMatch);
    return { message: 'User successfully deleted', deleted_at, soft_delete: soft };
  }

  @Post(':id/restore')
  @ApiHeader(IF_MATCH_HEADER)
  @Idempotent()
  @HttpCode(200)
  @Scopes('user:write')
  @ApiOperation({ summary: 'Bring a soft-deleted user back' })
  async restore(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Headers('if-match') ifMatch: string | undefined, @Res({ passthrough: true }) reply: FastifyReply) {
    return withEtag(reply, await this.users.restore(auth.organizationId, id, ifMatch), mapUserDetail);
  }

  @Post(':id/roles')
  @Idempotent()
  @HttpCode(200)
  @Scopes('user:write')
  @ApiOperation({ summary: 'Assign more roles (names or ids); publishes user.role_changed' })
  async addRoles(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Body() body: AssignRolesDto, @Res({ passthrough: true }) reply: FastifyReply) {
    await this.roles.assertAssignable(auth, body.roles);
    return withEtag(reply, await this.users.addRoles(auth.organizationId, id, body.roles), mapUserDetail);
  }

  @Delete(':id/roles/:role')
  @Scopes('user:write')
  @ApiHeader(IF_MATCH_HEADER)
  @ApiOperation({ summary: 'Remove a role (name or id) from the user' })
  async removeRole(
    @CurrentAuth() auth: AuthContext,
    @Param('id') id: string,
    @Param('role') role: string,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    return withEtag(reply, await this.users.removeRole(auth.organizationId, id, role, ifMatch), mapUserDetail);
  }

  @Post(':id/verification-email')
  @Idempotent()
  @HttpCode(202)
  @Scopes('user:write')
  @ApiOperation({ summary: 'Mail the user a single-use link (24 h) that POST /auth/verify-email redeems' })
  async sendVerification(@CurrentAuth() auth: AuthContext, @Param('id') id: string) {
    await this.accountTokens.sendVerification(auth.organizationId, id);
    return { message: 'Verification email queued' };
  }

  @Get(':id/preferences')
  @Scopes('user:read')
  @ApiOperation({ summary: "A user's preferences (the ETag is the user's)" })
  async preferences(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Res({ passthrough: true }) reply: FastifyReply) {
    return withEtag(reply, await this.users.get(auth.organizationId, id), (user) => user.preferences);
  }

  @Put(':id/preferences')
  @Scopes('user:write')
  @ApiHeader(IF_MATCH_HEADER)
  @ApiOperation({ summary: 'Replace preferences' })
  async replacePreferences(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Body() body: Record<string, unknown>, @Headers('if-match') ifMatch: string | undefined, @Res({ passthrough: true }) reply: FastifyReply) {
    return withEtag(reply, await this.users.replacePreferences(auth.organizationId, id, body, false, ifMatch), (user) => user.preferences);
  }

  @Patch(':id/preferences')
  @Scopes('user:write')
  @ApiHeader(IF_MATCH_HEADER)
  @ApiOperation({ summary: 'Merge into preferences (RFC 7396: null removes a key); concurrent merges never lose one another' })
  async mergePreferences(@CurrentAuth() auth: AuthContext, @Param('id') id: string, @Body() body: Record<string, unknown>, @Headers('if-match') ifMatch: string | undefined, @Res({ passthrough: true }) reply: FastifyReply) {
    return withEtag(reply, await this.users.replacePreferences(auth.organizationId, id, body, true, ifMatch), (user) => user.preferences);
  }
}

