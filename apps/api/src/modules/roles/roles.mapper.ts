import { iso } from '../organizations/organizations.mapper';
import { RoleEntity } from './entities/role.entity';

export function mapRole(role: RoleEntity) {
  return {
    id: role.id,
    name: role.name,
    display_name: role.displayName,
    description: role.description,
    permissions: role.permissions,
    system: role.system,
    created_at: iso(role.createdAt),
    updated_at: iso(role.updatedAt),
  };
}
