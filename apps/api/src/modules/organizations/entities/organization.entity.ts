import { Column, Entity, PrimaryColumn } from 'typeorm';
import type { Plan, PlanLimits } from '../plans';

@Entity('organizations')
export class OrganizationEntity {
  @PrimaryColumn('text')
  id!: string;

  @Column('text')
  name!: string;

  @Column('text')
  plan!: Plan;

  /** Overrides of the plan's limits (enterprise only). */
  @Column('jsonb', { default: {} })
  limits!: Partial<PlanLimits>;

  @Column('timestamp with time zone', { default: () => 'now()' })
  createdAt!: Date;

  @Column('timestamp with time zone', { default: () => 'now()' })
  updatedAt!: Date;

  /** Incremented by every write: the ETag's version (If-Match). */
  @Column('integer', { default: 1 })
  version!: number;
}
