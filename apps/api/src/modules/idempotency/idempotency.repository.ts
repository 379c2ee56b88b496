import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

export type ReplayHeaders = Record<string, string | string[]>;

export interface IdempotencyRecord {
  request_hash: string;
  response_status: number | null;
  response_body: unknown;
  /** Headers of the first response that a replay repeats (ETag, Location…); {} for older records. */
  response_headers: ReplayHeaders;
}

/**
 * The response_body column holds { "$replay": 1, body, headers }; records written before headers
 * were kept hold the bare body. No top-level field of an API response starts with "$", so the two
 * cannot be confused.
 */
const ENVELOPE = '$replay';

function unwrap(stored: unknown): { body: unknown; headers: ReplayHeaders } {
  if (stored !== null && typeof stored === 'object' && !Array.isArray(stored) && (stored as Record<string, unknown>)[ENVELOPE] === 1) {
    const { body, headers } = stored as { body?: unknown; headers?: unknown };
    return { body: body ?? null, headers: headers && typeof headers === 'object' ? (headers as ReplayHeaders) : {} };
  }
  return { body: stored, headers: {} };
}

/** SQL of the Idempotency-Key records (CONTRACT §2). */
@Injectable()
export class IdempotencyRepository {
  constructor(private readonly dataSource: DataSource) {}

  /**
   * Claims the key for this request; false when a record already holds it. A record older than
   * `ttlHours` no longer counts, nor does a claim whose request never finished within
   * `abandonedAfterSeconds` (its process died mid-request): the retry then runs. Returns the
   * claim's identity (its creation time, to the microsecond), which complete() and release() need:
   * a request whose claim was taken over as abandoned can then no longer touch the new one.
   */
  async claim(organizationId: string, key: string, requestHash: string, ttlHours: number, abandonedAfterSeconds: number): Promise<string | undefined> {
    await this.dataSource.query(
      `DELETE FROM idempotency_keys WHERE organization_id = $1 AND key = $2
          AND (created_at < now() - make_interval(hours => $3)
               OR (response_status IS NULL AND created_at < now() - make_interval(secs => $4)))`,
      [organizationId, key, ttlHours, abandonedAfterSeconds],
    );
    const claimed: { claim: string }[] = await this.dataSource.query(
      `INSERT INTO idempotency_keys (organization_id, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING created_at::text AS claim`,
      [organizationId, key, requestHash],
    );
    return claimed[0]?.claim;
  }

  /** Deletes up to `limit` records older than `ttlHours`, oldest first; returns how many went. */
  async pruneExpired(ttlHours: number, limit: number): Promise<number> {
    const rows: { n: number }[] = await this.dataSource.query(
      `WITH gone AS (
         DELETE FROM idempotency_keys WHERE ctid IN (
           SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1) ORDER BY created_at LIMIT $2)
         RETURNING 1)
       SELECT count(*)::int AS n FROM gone`,
      [ttlHours, limit],
    );
    return rows[0]!.n;
  }

  async find(organizationId: string, key: string): Promise<IdempotencyRecord | undefined> {
    const rows = (await this.dataSource.query(
      `SELECT request_hash, response_status, response_body FROM idempotency_keys WHERE organization_id = $1 AND key = $2`,
      [organizationId, key],
    )) as { request_hash: string; response_status: number | null; response_body: unknown }[];
    const row = rows[0];
    if (!row) return undefined;
    const { body, headers } = unwrap(row.response_body);
    return { request_hash: row.request_hash, response_status: row.response_status, response_body: body, response_headers: headers };
  }

  async complete(organizationId: string, key: string, claim: string, status: number, body: unknown, headers: ReplayHeaders = {}): Promise<void> {
    await this.dataSource.query(
      `UPDATE idempotency_keys SET response_status = $4, response_body = $5::jsonb
        WHERE organization_id = $1 AND key = $2 AND created_at = $3::timestamptz AND response_status IS NULL`,
      [organizationId, key, claim, status, JSON.stringify({ [ENVELOPE]: 1, body: body ?? null, headers })],
    );
  }

  async release(organizationId: string, key: string, claim: string): Promise<void> {
    await this.dataSource.query(
      `DELETE FROM idempotency_keys WHERE organization_id = $1 AND key = $2 AND created_at = $3::timestamptz AND response_status IS NULL`,
      [organizationId, key, claim],
    );
  }
}
