import { OWN_PROFILE_PERMISSIONS, ROLE_SCOPES } from '@app/common';

/** The roles every organization has from its creation; they cannot be deleted or renamed. */
export const BUILT_IN_ROLES = [
  {
    name: 'admin',
    displayName: 'Administrator',
    description: 'Manages users, roles, keys and settings of the organization',
    permissions: [...ROLE_SCOPES, ...OWN_PROFILE_PERMISSIONS],
  },
  {
    name: 'moderator',
    displayName: 'Moderator',
    description: 'Reads and updates users',
    permissions: ['user:read', 'user:write', ...OWN_PROFILE_PERMISSIONS],
  },
  {
    name: 'user',
    displayName: 'Standard User',
    description: 'Reads and updates their own profile',
    permissions: [...OWN_PROFILE_PERMISSIONS],
  },
] as const;

export const DEFAULT_ROLE_NAME = 'user';
