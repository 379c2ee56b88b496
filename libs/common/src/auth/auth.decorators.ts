import { createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { AppException } from '../errors/app.exception';
import type { ApiScope } from './scopes';

export const REQUIRED_SCOPES = 'auth:scopes';
export const REQUIRED_FEATURE = 'plan:feature';

export type PlanFeature = 'advanced_rbac' | 'sso' | 'audit_log';

/** Who is calling: resolved from the bearer token by the global auth guard. */
export interface AuthContext {
  organizationId: string;
  /** key_… for machine tokens, user_… for end users. */
  subject: string;
  subjectType: 'api_key' | 'user';
  scopes: ReadonlySet<string>;
  tokenId: string;
  /** End users: the login session (ses_…) the token belongs to. */
  sessionId?: string;
  issuedAt: number;
  expiresAt: number;
}

/** The token must carry every one of these scopes (403 AUTH_INSUFFICIENT_SCOPE otherwise). */
export const Scopes = (...scopes: (ApiScope | 'read:own_profile' | 'update:own_profile')[]) =>
  SetMetadata(REQUIRED_SCOPES, scopes);

/** The caller's organization's plan must include this feature (403 PLAN_FEATURE_UNAVAILABLE otherwise). */
export const RequiresFeature = (feature: PlanFeature) => SetMetadata(REQUIRED_FEATURE, feature);

export type AuthenticatedRequest = FastifyRequest & { auth?: AuthContext };

/** Injects the caller's AuthContext into a handler. */
export const CurrentAuth = createParamDecorator((_data: unknown, ctx: ExecutionContext): AuthContext => {
  const request = ctx.switchToHttp().getRequest<AuthenticatedRequest>();
  if (!request.auth) throw new AppException('AUTH_TOKEN_MISSING', 'Authentication required');
  return request.auth;
});
