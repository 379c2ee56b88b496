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

/** End users' own-profile permissions (seed §4.3). */
export const OWN_PROFILE_PERMISSIONS = ['read:own_profile', 'update:own_profile'] as const;

export function isApiScope(value: string): value is ApiScope {
  return (API_SCOPES as readonly string[]).includes(value);
}
