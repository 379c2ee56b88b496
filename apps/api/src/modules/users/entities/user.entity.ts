import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

export const USER_STATUSES = ['active', 'suspended', 'inactive'] as const;
export type UserStatus = (typeof USER_STATUSES)[number] | 'deleted';

@Entity('users')
@Index('UQ_users_organization_email', ['organizationId', 'emailLower'], { unique: true })
@Index('IDX_users_org_created', ['organizationId', 'createdAt', 'id'])
@Index('IDX_users_org_updated', ['organizationId', 'updatedAt', 'id'])
@Index('IDX_users_org_last_name', ['organizationId', 'lastName', 'id'])
@Index('IDX_users_org_first_name', ['organizationId', 'firstName', 'id'])
@Index('IDX_users_org_role', ['organizationId', 'roleId'])
// Only the soft-deleted users: status=deleted lists and filters (migration UsersSoftDeletedIndex).
@Index('IDX_users_org_soft_deleted', ['organizationId', 'deletedAt'], { where: '"deleted_at" IS NOT NULL' })
// Trigram index over names and email for `search`, `q` and `contains` (created in the migration).
@Index('IDX_users_search_trgm', { synchronize: false })
export class UserEntity {
  @PrimaryColumn('text')
  id!: string;

  @Column('text')
  organizationId!: string;

  /** As given, trimmed. */
  @Column('text')
  email!: string;

  /** Lower-cased email: uniqueness per organization is case-insensitive. */
  @Column('text')
  emailLower!: string;

  @Column('text')
  firstName!: string;

  @Column('text')
  lastName!: string;

  /** The primary role (its name is the user's `role`). */
  @Column('text', { nullable: true })
  roleId!: string | null;

  @Column('text', { default: 'active' })
  status!: UserStatus;

  @Column('boolean', { default: false })
  emailVerified!: boolean;

  /** argon2id (PHC string). Never leaves the service layer. */
  @Column('text', { nullable: true })
  passwordHash!: string | null;

  @Column('jsonb', { default: {} })
  metadata!: Record<string, unknown>;

  @Column('jsonb', { default: {} })
  preferences!: Record<string, unknown>;

  @Column('integer', { default: 0 })
  loginCount!: number;

  @Column('timestamp with time zone', { nullable: true })
  lastLogin!: Date | null;

  /** Incremented on every change; the ETag. */
  @Column('integer', { default: 1 })
  version!: number;

  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;

  @Column('timestamp with time zone', { default: () => 'now()' })
  updatedAt!: Date;

  @Column('timestamp with time zone', { nullable: true })
  deletedAt!: Date | null;

  /** While soft-deleted: the status to restore. */
  @Column('text', { nullable: true })
  statusBeforeDelete!: string | null;
}

/** Roles beyond the primary one. */
@Entity('user_roles')
@Index('IDX_user_roles_role', ['roleId'])
export class UserRoleEntity {
  @PrimaryColumn('text')
  userId!: string;

  @PrimaryColumn('text')
  roleId!: string;

  @Column('text')
  organizationId!: string;

  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;
}

/** Monthly active users (CONTRACT §5): one row per user per UTC month in which they were active. */
@Entity('user_activity_months')
export class UserActivityMonthEntity {
  @PrimaryColumn('text')
  organizationId!: string;

  @PrimaryColumn('text')
  month!: string;

  @PrimaryColumn('text')
  userId!: string;
}

/**
 * Each user's sign-in sort keys, which `sort=last_login` and `sort=login_count` read in index order
 * (migration UserLoginSortKeys says why they are not indexed on users). Written with the users row
 * by UsersRepository; `-infinity` for a user who never signed in.
 */
@Entity('user_login_sort_keys')
@Index('IDX_user_login_sort_keys_org_last_login', ['organizationId', 'lastLogin', 'userId'])
@Index('IDX_user_login_sort_keys_org_login_count', ['organizationId', 'loginCount', 'userId'])
export class UserLoginSortKeyEntity {
  @PrimaryColumn('text', { primaryKeyConstraintName: 'PK_user_login_sort_keys' })
  userId!: string;

  @Column('text')
  organizationId!: string;

  @Column('timestamp with time zone')
  lastLogin!: Date;

  @Column('integer')
  loginCount!: number;
}
