import { Injectable } from '@nestjs/common';
import { AppException, AuthContext, ROLE_SCOPES } from '@app/common';
import { MasterKeyService } from '@app/config';
import { isId, newId } from '@app/events';
import { randomBytes } from 'node:crypto';
import { EntityManager } from 'typeorm';
import { TokenDenylist } from '../auth/denylist/token-denylist.service';
import { ApiKeysRepository } from './api-keys.repository';
import { ApiKeyEntity } from './entities/api-key.entity';

const KEY_FORMAT = /^sk_(live|test)_[A-Za-z0-9]{24,128}$/;
const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const HASH_PURPOSE = 'api-key-hash';

/** Every scope except platform:admin: what an organization's own keys get unless told otherwise. */
export const DEFAULT_KEY_SCOPES = ROLE_SCOPES;

/** 32 base62 characters: about 190 bits of randomness (rejection sampling keeps it unbiased). */
export function generateApiKey(mode: 'live' | 'test' = 'live'): string {
  let out = '';
  while (out.length < 32) {
    for (const byte of randomBytes(48)) {
      if (byte < 248 && out.length < 32) out += BASE62[byte % 62];
    }
  }
  return `sk_${mode}_${out}`;
}

@Injectable()
export class ApiKeysService {
  private readonly lastTouched = new Map<string, number>();

  constructor(
    private readonly keys: ApiKeysRepository,
    private readonly masterKey: MasterKeyService,
    private readonly denylist: TokenDenylist,
  ) {}

  hash(secret: string): string {
    return this.masterKey.hmac(HASH_PURPOSE, secret);
  }

  /** Creates a key; the secret is returned here and never stored or shown again. */
  async create(
    manager: EntityManager | undefined,
    organizationId: string,
    name: string,
    scopes: readonly string[],
    secret = generateApiKey(),
  ): Promise<{ key: ApiKeyEntity; secret: string }> {
    const key: ApiKeyEntity = {
      id: newId('key'),
      organizationId,
      name,
      keyPrefix: secret.slice(0, 12),
      keyHash: this.hash(secret),
      scopes: [...new Set(scopes)],
      createdAt: new Date(),
      lastUsedAt: null,
      revokedAt: null,
    };
    await this.keys.insert(manager, key);
    return { key, secret };
  }

  /** Creates a key for a caller, who cannot hand out a scope it does not hold itself. */
  async createFor(caller: AuthContext, name: string, scopes: readonly string[] | undefined) {
    const wanted = scopes ?? DEFAULT_KEY_SCOPES.filter((s) => caller.scopes.has(s));
    const beyond = wanted.filter((s) => !caller.scopes.has(s));
    if (beyond.length > 0) {
      throw new AppException('AUTH_INSUFFICIENT_SCOPE', 'A key cannot be given scopes its creator lacks', {
        details: { scopes: beyond },
      });
    }
    return this.create(undefined, caller.organizationId, name, wanted);
  }

  /** The active key for a presented secret, or null. The secret is compared as a keyed hash in constant time. */
  async authenticate(secret: string): Promise<ApiKeyEntity | null> {
    if (!KEY_FORMAT.test(secret)) return null;
    const hash = this.hash(secret);
    const key = await this.keys.findByHash(hash);
    if (!key || key.revokedAt || !MasterKeyService.safeEqual(key.keyHash, hash)) return null;
    // last_used_at has minute precision: write it at most once a minute per key and process.
    const now = Date.now();
    if ((this.lastTouched.get(key.id) ?? 0) < now - 60_000) {
      this.lastTouched.set(key.id, now);
      void this.keys.touchLastUsed(key.id).catch(() => undefined);
    }
    return key;
  }

  findByHash(hash: string): Promise<ApiKeyEntity | null> {
    return this.keys.findByHash(hash);
  }

  list(organizationId: string): Promise<ApiKeyEntity[]> {
    return this.keys.listActive(organizationId);
  }

  /**
   * DELETE /api-keys/{id} for a caller: only a key of the caller's organization (404 otherwise), and
   * only one whose scopes the caller holds, so a narrow key manager cannot take away the operators'
   * platform:admin key (403 AUTH_INSUFFICIENT_SCOPE).
   */
  async revokeFor(caller: AuthContext, id: string): Promise<void> {
    const key = isId('key', id) ? await this.keys.findAnyActive(id) : null;
    if (!key || key.organizationId !== caller.organizationId) throw new AppException('API_KEY_NOT_FOUND', 'API key not found');
    const beyond = key.scopes.filter((s) => !caller.scopes.has(s));
    if (beyond.length > 0) {
      throw new AppException('AUTH_INSUFFICIENT_SCOPE', 'You cannot revoke a key with scopes you do not hold', { details: { scopes: beyond } });
    }
    await this.revoke(caller.organizationId, id);
  }

  /** Revokes a key: it can no longer obtain tokens, and the tokens it already obtained stop working at once. */
  async revoke(organizationId: string, id: string): Promise<void> {
    const revoked = isId('key', id) && (await this.keys.revoke(organizationId, id));
    if (!revoked) throw new AppException('API_KEY_NOT_FOUND', 'API key not found');
    await this.denylist.revokeSubject(id, organizationId);
  }

  async revokeAnywhere(id: string): Promise<string> {
    const key = isId('key', id) ? await this.keys.findAnyActive(id) : null;
    if (!key) throw new AppException('API_KEY_NOT_FOUND', 'API key not found');
    await this.revoke(key.organizationId, id);
    return key.organizationId;
  }
}
