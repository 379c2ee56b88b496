import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AppException, AuthenticatedRequest, IS_PUBLIC, REQUIRED_SCOPES } from '@app/common';
import { TokenService } from './token.service';

/**
 * The first global guard: every route needs a valid bearer token unless it is @Public(). What the
 * token may do is checked by ScopesGuard, after the rate limiter has counted the request, so that
 * a refused request carries the X-RateLimit-* headers like any other authenticated answer.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly tokens: TokenService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()])) return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const header = request.headers.authorization;
    if (!header) throw new AppException('AUTH_TOKEN_MISSING', 'The Authorization header is missing');
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw new AppException('AUTH_TOKEN_INVALID', 'The Authorization header must be "Bearer <token>"');
    request.auth = await this.tokens.verify(match[1]!);
    return true;
  }
}

/** The token must carry the route's @Scopes() (403 AUTH_INSUFFICIENT_SCOPE naming the missing ones). */
@Injectable()
export class ScopesGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    if (!request.auth) return true;
    const required = this.reflector.getAllAndOverride<string[] | undefined>(REQUIRED_SCOPES, [context.getHandler(), context.getClass()]) ?? [];
    const missing = required.filter((scope) => !request.auth!.scopes.has(scope));
    if (missing.length > 0) {
      throw new AppException('AUTH_INSUFFICIENT_SCOPE', `This operation requires the scope ${missing.join(', ')}`, {
        details: { required_scopes: required, missing_scopes: missing },
      });
    }
    return true;
  }
}
