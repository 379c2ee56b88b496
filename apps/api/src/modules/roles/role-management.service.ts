import { Injectable } from '@nestjs/common';
import { AppException, assertIfMatch, AuthContext, expectedVersion, OWN_PROFILE_PERMISSIONS, ROLE_SCOPES, staleIfMatch } from '@app/common';
import { TransactionRunner } from '@app/database';
import { EventPublisher, newId } from '@app/events';
import { userSnapshot } from '../users/users.mapper';
import { UsersRepository } from '../users/users.repository';
import { CreateRoleDto, UpdateRoleDto } from './dto/role.dto';
import { RoleEntity } from './entities/role.entity';
import { RolesRepository } from './roles.repository';
import { RolesService } from './roles.service';
import { TokenDenylist } from '../auth/denylist/token-denylist.service';

const ROLE_ID = /^role_[a-z0-9]{1,64}$/;

/** Custom roles (advanced RBAC): create, change, delete; the built-in ones are protected. */
@Injectable()
export class RoleManagementService {
  constructor(
    private readonly roles: RolesRepository,
    private readonly users: UsersRepository,
    private readonly transactions: TransactionRunner,
    private readonly events: EventPublisher,
    private readonly denylist: TokenDenylist,
  ) {}

  list(organizationId: string): Promise<RoleEntity[]> {
    return this.roles.list(organizationId);
  }

  async get(organizationId: string, id: string): Promise<RoleEntity> {
    const role = ROLE_ID.test(id) ? await this.roles.findById(organizationId, id) : null;
    if (!role) throw new AppException('ROLE_NOT_FOUND', 'Role not found');
    return role;
  }

  async create(organizationId: string, dto: CreateRoleDto, caller: AuthContext): Promise<RoleEntity> {
    assertRolePermissions(caller, dto.permissions);
    const role: RoleEntity = {
      id: newId('role'),
      organizationId,
      name: dto.name,
      displayName: dto.display_name ?? dto.name,
      description: dto.description ?? '',
      permissions: [...new Set(dto.permissions)],
      system: false,
      createdAt: new Date(),
      updatedAt: new Date(),
      version: 1,
    };
    if (!(await this.roles.insertIfNameFree(role))) {
      throw new AppException('ROLE_ALREADY_EXISTS', `A role named "${dto.name}" already exists`);
    }
    return this.get(organizationId, role.id);
  }

  /** Changes a role; with If-Match, only if it names the current version (else 409 CONCURRENT_UPDATE). */
  async update(organizationId: string, id: string, dto: UpdateRoleDto, caller: AuthContext, ifMatch?: string): Promise<RoleEntity> {
    if (dto.permissions !== undefined) assertRolePermissions(caller, dto.permissions);
    const role = await this.get(organizationId, id);
    const expected = assertIfMatch(ifMatch, role, 'role');
    if (role.system && dto.name !== undefined && dto.name !== role.name) {
      throw new AppException('VALIDATION_ERROR', 'Built-in roles cannot be renamed', {
        details: [{ field: 'name', issue: 'Built-in roles cannot be renamed', provided: dto.name, code: 'SYSTEM_ROLE' }],
      });
    }
    const changes: Partial<RoleEntity> = {};
    if (dto.name !== undefined) changes.name = dto.name;
    if (dto.display_name !== undefined) changes.displayName = dto.display_name;
    if (dto.description !== undefined) changes.description = dto.description;
    if (dto.permissions !== undefined) changes.permissions = [...new Set(dto.permissions)];
    try {
      const written = await this.transactions.run((manager) => this.roles.update(manager, organizationId, id, changes, expected));
      if (!written && expected !== undefined) throw staleIfMatch('role');
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw new AppException('ROLE_ALREADY_EXISTS', `A role named "${dto.name}" already exists`);
      throw error;
    }
    return this.get(organizationId, id);
  }

  /** Deletes a custom role; its holders lose it (each publishes user.role_changed). */
  async delete(organizationId: string, id: string, ifMatch?: string): Promise<void> {
    const role = await this.get(organizationId, id);
    const expected = expectedVersion(ifMatch, role.id, role.version);
    if (role.system) {
      throw new AppException('VALIDATION_ERROR', 'Built-in roles cannot be deleted', {
        details: [{ field: 'id', issue: 'Built-in roles cannot be deleted', provided: id, code: 'SYSTEM_ROLE' }],
      });
    }
    const holders = await this.transactions.run(async (manager) => {
      const current = await this.roles.lockVersion(manager, organizationId, id);
      if (current === undefined) throw new AppException('ROLE_NOT_FOUND', 'Role not found');
      if (expected !== undefined && expected !== current) throw staleIfMatch('role');
      const holders = await this.roles.lockHolders(manager, organizationId, id);
      const before = [...(await this.users.findManyDetailed(organizationId, holders, manager)).values()];
      await this.roles.delete(manager, organizationId, id, holders);
      const after = await this.users.findManyDetailed(organizationId, holders, manager);
      // One statement for every holder's event: the role (and so its creates and assignments)
      // is held for as short a time as a deletion can be.
      await this.events.publishMany(
        manager,
        organizationId,
        'user.role_changed',
        // A holder deleted for good meanwhile (its own user.deleted tells) has no role change to report.
        before.flatMap((previous) => {
          const updated = after.get(previous.id);
          return updated ? [{ user: userSnapshot(updated), previous_roles: (previous.roles ?? []).map((r) => r.name), roles: (updated.roles ?? []).map((r) => r.name) }] : [];
        }),
      );
      return holders;
    });
    // Its holders' access tokens carried its permissions: they stop now (a refresh or sign-in gives the new ones).
    await this.denylist.revokeSubjects(holders, organizationId);
  }

  /** The catalog: the API scopes a role may carry, the own-profile permissions, and every permission the org's roles use. */
  async catalog(organizationId: string): Promise<{ api: string[]; custom: string[]; all: string[] }> {
    const builtIn = [...ROLE_SCOPES, ...OWN_PROFILE_PERMISSIONS] as string[];
    const used = await this.roles.permissionsInUse(organizationId);
    const custom = used.filter((p) => !builtIn.includes(p));
    return { api: builtIn, custom, all: [...builtIn, ...custom] };
  }
}

/**
 * A role's permissions: never `platform:admin` (422: it belongs to the platform's operators), and
 * no API scope its author lacks (403), so role:manage cannot widen its own holders' access.
 */
function assertRolePermissions(caller: AuthContext, permissions: string[]): void {
  if (permissions.includes('platform:admin')) {
    throw new AppException('VALIDATION_ERROR', 'Roles cannot carry platform:admin', {
      details: [{ field: 'permissions', issue: 'platform:admin is reserved for the platform operators\' API keys', provided: 'platform:admin', code: 'RESERVED_PERMISSION' }],
    });
  }
  RolesService.assertGrantable(caller, permissions);
}
