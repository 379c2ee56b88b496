import { versionEtag } from '@app/common';
import type { UserEventSnapshot } from '@app/events';
import { iso } from '../organizations/organizations.mapper';
import { UserRecord } from './users.repository';

/** The compact form lists return. */
export function mapUserSummary(u: UserRecord) {
  return {
    id: u.id,
    email: u.email,
    first_name: u.first_name,
    last_name: u.last_name,
    role: u.role_name,
    status: u.status,
    email_verified: u.email_verified,
    created_at: iso(u.created_at),
    updated_at: iso(u.updated_at),
    last_login: iso(u.last_login),
  };
}

/** The full form of GET /users/{id} (seed §4.3): roles with permissions and their union. */
export function mapUserDetail(u: UserRecord, options: { preferences?: boolean } = {}) {
  const roles = u.roles ?? [];
  const body: Record<string, unknown> = {
    ...mapUserSummary(u),
    login_count: u.login_count,
    metadata: u.metadata,
    roles: roles.map((r) => ({ id: r.id, name: r.name, display_name: r.display_name, permissions: r.permissions })),
    permissions: [...new Set(roles.flatMap((r) => r.permissions))].sort(),
  };
  if (u.deleted_at) body.deleted_at = iso(u.deleted_at);
  if (options.preferences) body.preferences = u.preferences;
  return body;
}

/** `fields` projection for search results (`id` always included). */
export function projectUser(u: UserRecord, fields: string[]) {
  const full: Record<string, unknown> = {
    ...mapUserSummary(u),
    login_count: u.login_count,
    metadata: u.metadata,
    roles: (u.roles ?? []).map((r) => ({ id: r.id, name: r.name, display_name: r.display_name, permissions: r.permissions })),
  };
  return Object.fromEntries(fields.map((f) => [f, full[f]]));
}

export function etagOf(u: Pick<UserRecord, 'id' | 'version'>): string {
  return versionEtag(u.id, u.version);
}

export function userSnapshot(u: UserRecord): UserEventSnapshot {
  return {
    id: u.id,
    email: u.email,
    first_name: u.first_name,
    last_name: u.last_name,
    role: u.role_name,
    status: u.status,
    email_verified: u.email_verified,
    created_at: iso(u.created_at)!,
    updated_at: iso(u.updated_at)!,
  };
}
