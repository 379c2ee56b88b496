import type { PlanFeature } from '@app/common';

export const PLANS = ['basic', 'professional', 'enterprise'] as const;
export type Plan = (typeof PLANS)[number];

export interface PlanLimits {
  /** null: unlimited. */
  monthly_active_users: number | null;
  requests_per_hour: number;
  burst_per_second: number;
  concurrent_requests: number;
}

interface PlanDefinition {
  limits: PlanLimits;
  features: readonly PlanFeature[];
  /** Whether `limits` may be overridden per organization. */
  customLimits: boolean;
}

/** CONTRACT §5, as data. */
export const PLAN_DEFINITIONS: Record<Plan, PlanDefinition> = {
  basic: {
    limits: { monthly_active_users: 1_000, requests_per_hour: 1_000, burst_per_second: 50, concurrent_requests: 5 },
    features: [],
    customLimits: false,
  },
  professional: {
    limits: { monthly_active_users: 10_000, requests_per_hour: 10_000, burst_per_second: 200, concurrent_requests: 20 },
    features: ['advanced_rbac', 'sso'],
    customLimits: false,
  },
  enterprise: {
    limits: { monthly_active_users: null, requests_per_hour: 100_000, burst_per_second: 1_000, concurrent_requests: 100 },
    features: ['advanced_rbac', 'sso', 'audit_log'],
    customLimits: true,
  },
};

export function effectiveLimits(plan: Plan, overrides: Partial<PlanLimits>): PlanLimits {
  const base = PLAN_DEFINITIONS[plan].limits;
  return PLAN_DEFINITIONS[plan].customLimits ? { ...base, ...overrides } : { ...base };
}

export function planHasFeature(plan: Plan, feature: PlanFeature): boolean {
  return PLAN_DEFINITIONS[plan].features.includes(feature);
}

export function plansWithFeature(feature: PlanFeature): Plan[] {
  return PLANS.filter((p) => planHasFeature(p, feature));
}
