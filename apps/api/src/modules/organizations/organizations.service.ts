import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { API_SCOPES, AppException, assertIfMatch, PlanFeature, staleIfMatch } from '@app/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { TransactionRunner } from '@app/database';
import { isId, newId } from '@app/events';
import { EntityManager } from 'typeorm';
import { ApiKeysService, DEFAULT_KEY_SCOPES } from '../api-keys/api-keys.service';
import { ApiKeyEntity } from '../api-keys/entities/api-key.entity';
import { OrganizationEntity } from './entities/organization.entity';
import { OrganizationsRepository } from './organizations.repository';
import { effectiveLimits, Plan, PLAN_DEFINITIONS, PlanLimits, planHasFeature, plansWithFeature } from './plans';

/** Emitted inside the creating transaction, so listeners (built-in roles) commit with the organization. */
export const ORGANIZATION_CREATED = 'organization.created';
export interface OrganizationCreated {
  organizationId: string;
  manager: EntityManager;
}

export interface CreatedOrganization {
  organization: OrganizationEntity;
  key: ApiKeyEntity;
  secret: string;
}

@Injectable()
export class OrganizationsService implements OnApplicationBootstrap {
  private readonly logger = new Logger(OrganizationsService.name);
  /** Limits are read on every request: kept for a second here, dropped at once when changed through this instance. */
  private readonly limitsCache = new Map<string, { limits: PlanLimits; plan: Plan; at: number }>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly organizations: OrganizationsRepository,
    private readonly apiKeys: ApiKeysService,
    private readonly transactions: TransactionRunner,
    private readonly emitter: EventEmitter2,
  ) {}

  /** CONTRACT §1: the first start on an empty database creates `Default` (enterprise) and a key with every scope. */
  async onApplicationBootstrap(): Promise<void> {
    const created = await this.transactions.run(async (manager) => {
      await this.organizations.lockBootstrap(manager);
      if ((await this.organizations.count(manager)) > 0) return undefined;
      return this.createInTransaction(manager, 'Default', 'enterprise', undefined, API_SCOPES, this.config.bootstrapApiKey);
    });
    if (created && !this.config.bootstrapApiKey) {
      // Printed once, on purpose, outside the redacting logger: this is the only time it exists in clear.
      process.stdout.write(
        `\nCreated organization ${created.organization.id} (Default, enterprise) and its first API key.\n` +
          `API key (shown once, store it now): ${created.secret}\n\n`,
      );
    } else if (created) {
      this.logger.log({ organization_id: created.organization.id }, 'Created organization Default with BOOTSTRAP_API_KEY');
    } else if (this.config.bootstrapApiKey && !(await this.apiKeys.findByHash(this.apiKeys.hash(this.config.bootstrapApiKey)))) {
      this.logger.warn('BOOTSTRAP_API_KEY is ignored: the database already has organizations (use `npm run cli -- apikey:create`)');
    }
  }

  async create(name: string, plan: Plan, limits: Partial<PlanLimits> | undefined): Promise<CreatedOrganization> {
    return this.transactions.run((manager) => this.createInTransaction(manager, name, plan, limits, DEFAULT_KEY_SCOPES));
  }

  async get(id: string): Promise<OrganizationEntity> {
    const org = isId('org', id) ? await this.organizations.findById(id) : null;
    if (!org) throw new AppException('ORGANIZATION_NOT_FOUND', 'Organization not found');
    return org;
  }

  list(limit: number, offset: number) {
    return this.organizations.list(limit, offset);
  }

  /** Changes an organization; with If-Match, only if it names the current version (else 409 CONCURRENT_UPDATE). */
  async update(id: string, changes: { name?: string; plan?: Plan; limits?: Partial<PlanLimits> }, ifMatch?: string): Promise<OrganizationEntity> {
    const org = await this.get(id);
    const expected = assertIfMatch(ifMatch, org, 'organization');
    const plan = changes.plan ?? org.plan;
    if (changes.limits) this.assertCustomLimitsAllowed(plan);
    // Moving off enterprise drops custom limits: other plans have fixed ones.
    const limits = PLAN_DEFINITIONS[plan].customLimits ? mergeLimits(org.limits, changes.limits) : {};
    const written = await this.transactions.run((manager) =>
      this.organizations.update(manager, id, { name: changes.name ?? org.name, plan, limits }, expected),
    );
    if (!written && expected !== undefined) throw staleIfMatch('organization');
    this.limitsCache.delete(id);
    return this.get(id);
  }

  /** The effective limits and plan of an organization (cached for at most a second). */
  async limitsFor(organizationId: string): Promise<PlanLimits & { plan: Plan }> {
    const cached = this.limitsCache.get(organizationId);
    if (cached && Date.now() - cached.at < 1000) return { ...cached.limits, plan: cached.plan };
    const org = await this.get(organizationId);
    const limits = effectiveLimits(org.plan, org.limits);
    if (this.limitsCache.size > 10_000) this.limitsCache.clear();
    this.limitsCache.set(organizationId, { limits, plan: org.plan, at: Date.now() });
    return { ...limits, plan: org.plan };
  }

  /** 403 PLAN_FEATURE_UNAVAILABLE unless the organization's current plan has the feature. */
  async assertFeature(organizationId: string, feature: PlanFeature): Promise<void> {
    const org = await this.limitsFor(organizationId);
    if (!planHasFeature(org.plan, feature)) {
      throw new AppException('PLAN_FEATURE_UNAVAILABLE', `Your plan (${org.plan}) does not include ${feature}`, {
        details: { feature, current_plan: org.plan, available_on: plansWithFeature(feature) },
      });
    }
  }

  private async createInTransaction(
    manager: EntityManager,
    name: string,
    plan: Plan,
    limits: Partial<PlanLimits> | undefined,
    scopes: readonly string[],
    secret?: string,
  ): Promise<CreatedOrganization> {
    if (limits && Object.keys(limits).length > 0) this.assertCustomLimitsAllowed(plan);
    const now = new Date();
    const organization: OrganizationEntity = {
      id: newId('org'),
      name,
      plan,
      limits: mergeLimits({}, limits),
      createdAt: now,
      updatedAt: now,
      version: 1,
    };
    await this.organizations.insert(manager, organization);
    const payload: OrganizationCreated = { organizationId: organization.id, manager };
    await this.emitter.emitAsync(ORGANIZATION_CREATED, payload);
    const { key, secret: created } = await this.apiKeys.create(manager, organization.id, 'default', scopes, secret);
    return { organization, key, secret: created };
  }

  private assertCustomLimitsAllowed(plan: Plan): void {
    if (!PLAN_DEFINITIONS[plan].customLimits) {
      throw new AppException('VALIDATION_ERROR', 'Custom limits are available on the enterprise plan only', {
        details: [{ field: 'limits', issue: `The ${plan} plan has fixed limits`, code: 'CUSTOM_LIMITS_ENTERPRISE_ONLY' }],
      });
    }
  }
}

/**
 * Custom limits after a change: a limit left out keeps its value, one set to null goes back to the
 * plan's default (for monthly active users on enterprise: unlimited), a number replaces it.
 */
function mergeLimits(current: Partial<PlanLimits>, changes: Partial<Record<keyof PlanLimits, number | null>> | undefined): Partial<PlanLimits> {
  const merged: Partial<Record<keyof PlanLimits, number | null>> = { ...current };
  for (const [key, value] of Object.entries(changes ?? {}) as [keyof PlanLimits, number | null | undefined][]) {
    if (value === null) delete merged[key];
    else if (value !== undefined) merged[key] = value;
  }
  return merged as Partial<PlanLimits>;
}
