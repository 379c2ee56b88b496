import { OrganizationEntity } from './entities/organization.entity';
import { effectiveLimits, PlanLimits } from './plans';

export interface OrganizationResponse {
  id: string;
  name: string;
  plan: string;
  limits: PlanLimits;
  created_at: string;
  updated_at: string;
}

export const iso = (d: Date | null | undefined): string | null =>
  d ? d.toISOString().replace(/\.\d{3}Z$/, 'Z') : null;

export function mapOrganization(org: OrganizationEntity): OrganizationResponse {
  return {
    id: org.id,
    name: org.name,
    plan: org.plan,
    limits: effectiveLimits(org.plan, org.limits),
    created_at: iso(org.createdAt)!,
    updated_at: iso(org.updatedAt)!,
  };
}
