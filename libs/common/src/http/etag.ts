import { AppException } from '../errors';

/**
 * ETags of versioned resources (CONTRACT §2): `"<id>.v<version>"`, where the version is an integer
 * column that every write increments. Users, roles, webhooks and organizations use them.
 */
export function versionEtag(id: string, version: number): string {
  return `"${id}.v${version}"`;
}

/**
 * The versions of resource `id` an If-Match names; undefined when there is no If-Match or it is "*"
 * (the write is unconditional). A list of ETags (RFC 9110 §13.1.1) names each of them; only strong
 * ETags of ours count (If-Match compares strongly, so `W/"…"` matches nothing), written as we write
 * them (`v4`, not `v04`). An empty array: nothing listed can match.
 */
export function ifMatchVersions(ifMatch: string | undefined, id: string): number[] | undefined {
  if (ifMatch === undefined || ifMatch.trim() === '*') return undefined;
  const versions: number[] = [];
  for (const tag of ifMatch.split(',').map((t) => t.trim())) {
    const match = /^"([^"]+)\.v(0|[1-9]\d{0,9})"$/.exec(tag);
    // Versions are PostgreSQL integers: a larger number can match no version (and must not reach SQL).
    if (match && match[1] === id && Number(match[2]) <= 2_147_483_647) versions.push(Number(match[2]));
  }
  return versions;
}

/**
 * The version a conditional write must find for resource `id`: undefined without a condition; with
 * one, `current` when the If-Match lists it, else a version that matches nothing (-1). Without
 * `current` (a write that reads nothing first), the one version listed for `id`, or -1 when none is;
 * a caller that may meet several (ifMatchVersions) reads the current version first.
 */
export function expectedVersion(ifMatch: string | undefined, id: string, current?: number): number | undefined {
  const versions = ifMatchVersions(ifMatch, id);
  if (!versions) return undefined;
  if (current !== undefined) return versions.includes(current) ? current : -1;
  return versions.length === 1 ? versions[0] : -1;
}

/**
 * The version a conditional write of `current` must still find when it writes: undefined without
 * If-Match; 409 CONCURRENT_UPDATE (staleIfMatch) when the If-Match lists no current ETag of it.
 */
export function assertIfMatch(ifMatch: string | undefined, current: { id: string; version: number }, what: string): number | undefined {
  const expected = expectedVersion(ifMatch, current.id, current.version);
  if (expected !== undefined && expected !== current.version) throw staleIfMatch(what);
  return expected;
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
