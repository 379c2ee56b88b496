/** The API's own scopes (CONTRACT §4). */
export const API_SCOPES = [
  'user:read',
  'user:write',
  'user:delete',
  'role:manage',
  'webhook:manage',
  'sso:manage',
  'audit:read',
  'analytics:read',
  'apikey:manage',
  'platform:admin',
] as const;

export type ApiScope = (typeof API_SCOPES)[number];

/**
 * The API scopes an organization may hand out: every one but `platform:admin`, which belongs to the
 * platform's operators (API keys made for them) and is never carried by a role or an end user.
 */
export const ROLE_SCOPES: readonly ApiScope[] = API_SCOPES.filter((s) => s !== 'platform:admin');

/** End users' own-profile permissions (seed §4.3). */
export const OWN_PROFILE_PERMISSIONS = ['read:own_profile', 'update:own_profile'] as const;

export function isApiScope(value: string): value is ApiScope {
  return (API_SCOPES as readonly string[]).includes(value);
}
