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
 * A list of ETags (RFC 9110 §13.1.1) names each of them; only strong ETags of ours count (If-Match
 * compares strongly, so `W/"…"` matches nothing). One that names nothing of ours can match no
 * version: id "" and version -1.
 */
export function parseIfMatch(ifMatch: string | undefined): { id: string; version: number } | undefined {
  const named = parseIfMatchList(ifMatch);
  if (!named) return undefined;
  // Several versions of one resource: the current version is never below one a client has seen, so
  // when the list holds it, it is the highest listed.
  const best = named.filter((n) => n.id === named[0]?.id).sort((a, b) => b.version - a.version)[0];
  return best ?? { id: '', version: -1 };
}

/** Every strong ETag of ours an If-Match lists; undefined without one or for "*". */
function parseIfMatchList(ifMatch: string | undefined): { id: string; version: number }[] | undefined {
  if (ifMatch === undefined || ifMatch.trim() === '*') return undefined;
  const named: { id: string; version: number }[] = [];
  for (const tag of ifMatch.split(',').map((t) => t.trim())) {
    const match = /^"([^"]+)\.v(0|[1-9]\d{0,9})"$/.exec(tag);
    // Versions are PostgreSQL integers: a larger number can match no version (and must not reach SQL).
    if (match && Number(match[2]) <= 2_147_483_647) named.push({ id: match[1]!, version: Number(match[2]) });
  }
  return named;
}

/**
 * The version a conditional write must find for resource `id`: undefined without a condition,
 * -1 (matches nothing) when the If-Match names another resource or is not one of our ETags.
 */
export function expectedVersion(ifMatch: string | undefined, id: string): number | undefined {
  const named = parseIfMatchList(ifMatch);
  if (!named) return undefined;
  // The highest listed version of this resource (see parseIfMatch).
  return named.filter((n) => n.id === id).reduce((highest, n) => Math.max(highest, n.version), -1);
}

/** 409 CONCURRENT_UPDATE for a stale If-Match on `what` ("user", "role"…). */
export function staleIfMatch(what: string): AppException {
  return new AppException('CONCURRENT_UPDATE', `If-Match does not match the current version; fetch the ${what} again`);
}

/** The OpenAPI description of If-Match on conditional writes (for @ApiHeader). */
export const IF_MATCH_API_HEADER = {
  name: 'If-Match',
  required: false,
  description:
    'The ETag you read (or a comma-separated list: the write goes ahead if one of them is current; a weak W/"…" ETag never matches); when it is no longer current the write is refused with 409 CONCURRENT_UPDATE and nothing changes',
};

/** Sets the resource's ETag on the reply and returns the resource in its API shape. */
export function withEtag<T extends { id: string; version: number }, R>(reply: { header(name: string, value: string): unknown }, resource: T, toApi: (resource: T) => R): R {
  void reply.header('ETag', versionEtag(resource.id, resource.version));
  return toApi(resource);
}
