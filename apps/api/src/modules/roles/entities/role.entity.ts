import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

@Entity('roles')
@Index('UQ_roles_organization_name', ['organizationId', 'name'], { unique: true })
export class RoleEntity {
  @PrimaryColumn('text')
  id!: string;

  @Column('text')
  organizationId!: string;

  /** A slug unique in the organization: `admin`, `user`, `moderator`, or the customer's own. */
  @Column('text')
  name!: string;

  @Column('text')
  displayName!: string;

  @Column('text', { default: '' })
  description!: string;

  @Column('text', { array: true, default: '{}' })
  permissions!: string[];

  /** Built-in roles cannot be deleted or renamed. */
  @Column('boolean', { default: false })
  system!: boolean;

  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;

  @Column('timestamp with time zone', { default: () => 'now()' })
  updatedAt!: Date;

  /** Incremented by every write: the ETag's version (If-Match). */
  @Column('integer', { default: 1 })
  version!: number;
}
