import { Injectable } from '@nestjs/common';
import { preparedQuery } from '@app/database';
import { DataSource, EntityManager } from 'typeorm';
import { RoleEntity } from './entities/role.entity';

export interface RoleSummary {
  id: string;
  name: string;
  display_name: string;
  permissions: string[];
}

/** Roles, always within one organization. */
@Injectable()
export class RolesRepository {
  constructor(private readonly dataSource: DataSource) {}

  async insertMany(manager: EntityManager, roles: RoleEntity[]): Promise<void> {
    await manager.insert(RoleEntity, roles);
  }

  async list(organizationId: string): Promise<RoleEntity[]> {
    return this.dataSource.getRepository(RoleEntity).find({ where: { organizationId }, order: { system: 'DESC', name: 'ASC' } });
  }

  async findById(organizationId: string, id: string): Promise<RoleEntity | null> {
    return this.dataSource.getRepository(RoleEntity).findOneBy({ organizationId, id });
  }

  /** Inserts unless the name is taken in the organization; false when it is. */
  async insertIfNameFree(role: RoleEntity): Promise<boolean> {
    const rows: unknown[] = await this.dataSource.query(
      `INSERT INTO roles (id, organization_id, name, display_name, description, permissions, system)
       VALUES ($1, $2, $3, $4, $5, $6, false) ON CONFLICT (organization_id, name) DO NOTHING RETURNING id`,
      [role.id, role.organizationId, role.name, role.displayName, role.description, role.permissions],
    );
    return rows.length > 0;
  }

  /** Applies `changes` and a new version; false when `expectedVersion` is given and is not current. */
  async update(manager: EntityManager, organizationId: string, id: string, changes: Partial<RoleEntity>, expectedVersion?: number): Promise<boolean> {
    const where = { organizationId, id, ...(expectedVersion === undefined ? {} : { version: expectedVersion }) };
    const result = await manager.update(RoleEntity, where, { ...changes, updatedAt: () => 'now()', version: () => 'version + 1' });
    return (result.affected ?? 0) > 0;
  }

  /** The role's version, its row locked until the transaction ends (undefined: no such role). */
  async lockVersion(manager: EntityManager, organizationId: string, id: string): Promise<number | undefined> {
    const rows: { version: number }[] = await manager.query(`SELECT version FROM roles WHERE organization_id = $1 AND id = $2 FOR UPDATE`, [organizationId, id]);
    return rows[0]?.version;
  }

  /**
   * Users holding the role (primary or extra), their rows locked in id order, so that none changes
   * roles between this read and the deletion. Call it holding the role (lockVersion): assignments and
   * removals hold the role before the user (UsersService.changeRoles), so none can add or drop a
   * holder meanwhile; a primary role changed while this waited for the row is read as it is now.
   */
  async lockHolders(manager: EntityManager, organizationId: string, roleId: string): Promise<string[]> {
    const rows: { id: string }[] = await manager.query(
      `SELECT id FROM users
        WHERE organization_id = $1
          AND (role_id = $2 OR id IN (SELECT user_id FROM user_roles WHERE organization_id = $1 AND role_id = $2))
        ORDER BY id FOR NO KEY UPDATE`,
      [organizationId, roleId],
    );
    return rows.map((r) => r.id);
  }

  /** Deletes the role; each of `holders` (lockHolders) loses it and gets a new version (ETag). */
  async delete(manager: EntityManager, organizationId: string, roleId: string, holders: string[]): Promise<void> {
    await manager.query(
      `UPDATE users SET role_id = CASE WHEN role_id = $2 THEN NULL ELSE role_id END, version = version + 1, updated_at = now()
        WHERE organization_id = $1 AND id = ANY($3::text[])`,
      [organizationId, roleId, holders],
    );
    await manager.query(`DELETE FROM user_roles WHERE organization_id = $1 AND role_id = $2`, [organizationId, roleId]);
    await manager.query(`DELETE FROM roles WHERE organization_id = $1 AND id = $2`, [organizationId, roleId]);
  }

  async permissionsInUse(organizationId: string): Promise<string[]> {
    const rows: { p: string }[] = await this.dataSource.query(
      `SELECT DISTINCT unnest(permissions) AS p FROM roles WHERE organization_id = $1 ORDER BY 1`,
      [organizationId],
    );
    return rows.map((r) => r.p);
  }

  /**
   * The roles these references name. With `lock` (in the caller's transaction), each is held FOR
   * KEY SHARE until the commit: a deletion of the role (which holds it FOR UPDATE) waits for the
   * caller, or the caller waits for the deletion and then finds no such role.
   */
  async findByRefs(organizationId: string, refs: string[], manager?: EntityManager, options: { lock?: boolean } = {}): Promise<RoleSummary[]> {
    if (refs.length === 0) return [];
    const { rows } = await preparedQuery<RoleSummary>(this.dataSource, manager, options.lock ? 'roles_find_by_refs_locked' : 'roles_find_by_refs',
      `SELECT id, name, display_name, permissions FROM roles
        WHERE organization_id = $1 AND (name = ANY($2::text[]) OR id = ANY($2::text[]))${options.lock ? ' FOR KEY SHARE' : ''}`,
      [organizationId, refs],
    );
    return rows;
  }
}
