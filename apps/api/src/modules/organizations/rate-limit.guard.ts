import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { AppException, AuthenticatedRequest } from '@app/common';
import { RateLimitStore } from '@app/database';
import type { FastifyReply } from 'fastify';
import { OrganizationsService } from './organizations.service';

const HOUR_MS = 3_600_000;

/**
 * CONTRACT §5 / seed §6: per organization, across its keys and every instance, an hourly limit, a
 * per-second burst limit and a limit on concurrent requests. Every authenticated response carries
 * X-RateLimit-Limit / -Remaining / -Reset / -Window; going over any limit is 429 RATE_LIMIT_EXCEEDED.
 */
@Injectable()
export class RateLimitGuard implements CanActivate {
  constructor(
    private readonly organizations: OrganizationsService,
    private readonly store: RateLimitStore,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    if (!request.auth) return true;
    const reply = context.switchToHttp().getResponse<FastifyReply>();
    const org = request.auth.organizationId;
    const limits = await this.organizations.limitsFor(org);
    const now = Date.now();
    const hourStart = Math.floor(now / HOUR_MS) * HOUR_MS;
    const reset = Math.floor((hourStart + HOUR_MS) / 1000);
    const hit = await this.store.hit(org, hourStart, Math.floor(now / 1000));
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      void this.store.release(org);
    };
    reply.raw.once('close', release);

    void reply.headers({
      'X-RateLimit-Limit': String(limits.requests_per_hour),
      'X-RateLimit-Remaining': String(Math.max(0, limits.requests_per_hour - hit.hourCount)),
      'X-RateLimit-Reset': String(reset),
      'X-RateLimit-Window': '3600',
    });
    const refuse = (what: string, retryAfter: number) => {
      release();
      return new AppException('RATE_LIMIT_EXCEEDED', `Rate limit exceeded (${what}). Please try again later.`, {
        retryAfter,
        details: { limit: what },
      });
    };
    if (hit.hourCount > limits.requests_per_hour) throw refuse('requests_per_hour', Math.max(1, reset - Math.floor(now / 1000)));
    if (hit.secondCount > limits.burst_per_second) throw refuse('burst_per_second', 1);
    if (hit.concurrent > limits.concurrent_requests) throw refuse('concurrent_requests', 1);
    return true;
  }
}
