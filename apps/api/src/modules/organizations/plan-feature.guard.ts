import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthenticatedRequest, PlanFeature, REQUIRED_FEATURE } from '@app/common';
import { OrganizationsService } from './organizations.service';

/** Runs after the auth guard: routes marked @RequiresFeature(...) need the caller's plan to include it. */
@Injectable()
export class PlanFeatureGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly organizations: OrganizationsService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const feature = this.reflector.getAllAndOverride<PlanFeature | undefined>(REQUIRED_FEATURE, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (!feature) return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    if (request.auth) await this.organizations.assertFeature(request.auth.organizationId, feature);
    return true;
  }
}
