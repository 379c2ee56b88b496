import { AppException } from '../errors';

/**
 * ETags of versioned resources (CONTRACT §2): `"<id>.v<version>"`, where the version is an integer
 * column that every write increments. Users, roles, webhooks and organizations use them.
 */
export function versionEtag(id: string, version: number): string {
  return `"${id}.v${version}"`;
}

/**
 * The resource id and version an If-Match names; undefined when there is no If-Match or it is "*".
 * One that is no ETag of ours can match no version: id "" and version -1.
 */
export function parseIfMatch(ifMatch: string | undefined): { id: string; version: number } | undefined {
  if (ifMatch === undefined || ifMatch.trim() === '*') return undefined;
  const match = /^(?:W\/)?"([^"]+)\.v(\d{1,10})"$/.exec(ifMatch.trim());
  const version = match ? Number(match[2]) : -1;
  // Versions are PostgreSQL integers: a larger number can match no version (and must not reach SQL).
  return match && version <= 2_147_483_647 ? { id: match[1]!, version } : { id: match?.[1] ?? '', version: -1 };
}

/**
 * The version a conditional write must find for resource `id`: undefined without a condition,
 * -1 (matches nothing) when the If-Match names another resource or is not one of our ETags.
 */
export function expectedVersion(ifMatch: string | undefined, id: string): number | undefined {
  const expected = parseIfMatch(ifMatch);
  if (!expected) return undefined;
  return expected.id === id ? expected.version : -1;
}

/** 409 CONCURRENT_UPDATE for a stale If-Match on `what` ("user", "role"…). */
export function staleIfMatch(what: string): AppException {
  return new AppException('CONCURRENT_UPDATE', `If-Match does not match the current version; fetch the ${what} again`);
}

/** The OpenAPI description of If-Match on conditional writes (for @ApiHeader). */
export const IF_MATCH_API_HEADER = {
  name: 'If-Match',
  required: false,
  description: 'The ETag you read; when it is no longer current the write is refused with 409 CONCURRENT_UPDATE and nothing changes',
};

/** Sets the resource's ETag on the reply and returns the resource in its API shape. */
export function withEtag<T extends { id: string; version: number }, R>(reply: { header(name: string, value: string): unknown }, resource: T, toApi: (resource: T) => R): R {
  void reply.header('ETag', versionEtag(resource.id, resource.version));
  return toApi(resource);
}
