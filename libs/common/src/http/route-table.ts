import FindMyWay, { HTTPVersion } from 'find-my-way';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
type Method = (typeof METHODS)[number];

/**
 * A copy of the routes Fastify registers, so that a path that exists with another method
 * answers 405 METHOD_NOT_ALLOWED with an Allow header instead of a plain 404.
 */
export class RouteTable {
  private readonly router = FindMyWay<HTTPVersion.V1>({ ignoreTrailingSlash: true });

  add(method: string | string[], url: string): void {
    for (const m of Array.isArray(method) ? method : [method]) {
      const upper = m.toUpperCase();
      if ((METHODS as readonly string[]).includes(upper) && !this.router.hasRoute(upper as Method, url)) {
        this.router.on(upper as Method, url, () => undefined);
      }
    }
  }

  allowedMethods(url: string): string[] {
    const path = url.split('?')[0] ?? url;
    return METHODS.filter((m) => this.router.find(m, path) !== null);
  }
}
