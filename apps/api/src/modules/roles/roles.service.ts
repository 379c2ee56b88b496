import { Injectable } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { AppException, AuthContext, isApiScope, ROLE_SCOPES } from '@app/common';
import { newId } from '@app/events';
import { EntityManager } from 'typeorm';
import { ORGANIZATION_CREATED, OrganizationCreated } from '../organizations/organizations.service';
import { BUILT_IN_ROLES } from './built-in-roles';
import { RoleSummary, RolesRepository } from './roles.repository';

@Injectable()
export class RolesService {
  constructor(private readonly roles: RolesRepository) {}

  /** Every new organization gets the built-in roles, in the transaction that creates it. */
  @OnEvent(ORGANIZATION_CREATED, { promisify: true, suppressErrors: false })
  async seedBuiltInRoles({ organizationId, manager }: OrganizationCreated): Promise<void> {
    const now = new Date();
    await this.roles.insertMany(
      manager,
      BUILT_IN_ROLES.map((r) => ({
        id: newId('role'),
        organizationId,
        name: r.name,
        displayName: r.displayName,
        description: r.description,
        permissions: [...r.permissions],
        system: true,
        createdAt: now,
        updatedAt: now,
        version: 1,
      })),
    );
  }

  /**
   * Resolves role names or ids of one organization, in the order given; any unknown one is
   * 422 INVALID_ROLE naming it (the field is `role` or `roles`).
   */
  async resolve(organizationId: string, refs: string[], field: string, manager?: EntityManager, options: { lock?: boolean } = {}): Promise<RoleSummary[]> {
    const unique = [...new Set(refs)];
    const found = await this.roles.findByRefs(organizationId, unique, manager, options);
    const byRef = new Map<string, RoleSummary>();
    for (const role of found) {
      byRef.set(role.name, role);
      byRef.set(role.id, role);
    }
    const missing = unique.filter((r) => !byRef.has(r));
    if (missing.length > 0) throw RolesService.unknownRoles(missing, field);
    return unique.map((r) => byRef.get(r)!);
  }

  /**
   * Holds the roles these references name (those that exist) FOR KEY SHARE in the caller's
   * transaction, before it locks a user to give or take one: a concurrent deletion of a role then
   * either waits for the change or makes it find no such role.
   */
  async holdRoles(organizationId: string, refs: string[], manager: EntityManager): Promise<void> {
    // A reference PostgreSQL cannot store (U+0000, from a path) names no role: nothing to hold.
    const storable = [...new Set(refs)].filter((r) => !r.includes('\u0000'));
    await this.roles.findByRefs(organizationId, storable, manager, { lock: true });
  }

  /** The roles these references (names or ids) name, by reference; unknown ones are absent. One query. */
  async findAll(organizationId: string, refs: string[]): Promise<Map<string, RoleSummary>> {
    const found = await this.roles.findByRefs(organizationId, [...new Set(refs)]);
    const byRef = new Map<string, RoleSummary>();
    // As in resolve: a reference that is some role's id means that role, even if another is named so.
    for (const role of found) byRef.set(role.name, role);
    for (const role of found) byRef.set(role.id, role);
    return byRef;
  }

  /**
   * Nobody grants what they do not hold: the API scopes that the roles named in `refs` carry must
   * all be among the caller's scopes (403 AUTH_INSUFFICIENT_SCOPE naming the missing ones), so a
   * moderator cannot make anyone an admin and a narrow key cannot hand out a wide role. Your own
   * permission strings (not API scopes) are not checked. Unknown roles are left to the write's own
   * INVALID_ROLE. A caller holding every scope a role may carry skips the lookup.
   */
  async assertAssignable(caller: AuthContext, refs: (string | undefined)[]): Promise<void> {
    const wanted = refs.filter((r): r is string => r !== undefined);
    if (wanted.length === 0 || ROLE_SCOPES.every((s) => caller.scopes.has(s))) return;
    const roles = await this.findAll(caller.organizationId, wanted);
    RolesService.assertGrantable(caller, [...roles.values()].flatMap((r) => r.permissions));
  }

  /** 403 AUTH_INSUFFICIENT_SCOPE when `permissions` include API scopes the caller lacks. */
  static assertGrantable(caller: AuthContext, permissions: string[]): void {
    const beyond = [...new Set(permissions.filter((p) => isApiScope(p) && !caller.scopes.has(p)))].sort();
    if (beyond.length > 0) {
      throw new AppException('AUTH_INSUFFICIENT_SCOPE', 'You cannot grant API scopes you do not hold', { details: { scopes: beyond } });
    }
  }

  /** 422 INVALID_ROLE naming the references that match no role of the organization. */
  static unknownRoles(refs: string[], field: string): AppException {
    return new AppException('INVALID_ROLE', `Unknown role: ${refs.join(', ')}`, {
      details: refs.map((r) => ({ field, issue: 'Role does not exist in this organization', provided: r, code: 'INVALID_ROLE' })),
    });
  }
}
