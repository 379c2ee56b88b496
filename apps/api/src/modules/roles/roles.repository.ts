import { Injectable } from '@nestjs/common';
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

  /** Roles matched by name or id, in one query. */
  async findByRefs(organizationId: string, refs: string[], manager?: EntityManager): Promise<RoleSummary[]> {
    if (refs.length === 0) return [];
    return (manager ?? this.dataSource).query(
      `SELECT id, name, display_name, permissions FROM roles
        WHERE organization_id = $1 AND (name = ANY($2::text[]) OR id = ANY($2::text[]))`,
      [organizationId, refs],
    );
  }
}
