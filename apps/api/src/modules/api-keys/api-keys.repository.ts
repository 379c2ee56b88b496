import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { preparedQuery } from '@app/database';
import { EntityManager, IsNull, Repository } from 'typeorm';
import { ApiKeyEntity } from './entities/api-key.entity';

@Injectable()
export class ApiKeysRepository {
  constructor(@InjectRepository(ApiKeyEntity) private readonly repo: Repository<ApiKeyEntity>) {}

  /** The hot path of POST /auth/token: a prepared statement on the unique hash index. */
  async findByHash(keyHash: string): Promise<ApiKeyEntity | null> {
    const { rows } = await preparedQuery<ApiKeyEntity>(this.repo.manager.connection, undefined, 'api_keys_by_hash',
      `SELECT id, organization_id AS "organizationId", name, key_prefix AS "keyPrefix", key_hash AS "keyHash", scopes,
              created_at AS "createdAt", last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"
         FROM api_keys WHERE key_hash = $1`,
      [keyHash],
    );
    return rows[0] ?? null;
  }

  findActive(organizationId: string, id: string): Promise<ApiKeyEntity | null> {
    return this.repo.findOneBy({ organizationId, id, revokedAt: IsNull() });
  }

  /** Operators only (CLI): a key by id in any organization. */
  findAnyActive(id: string): Promise<ApiKeyEntity | null> {
    return this.repo.findOneBy({ id, revokedAt: IsNull() });
  }

  listActive(organizationId: string): Promise<ApiKeyEntity[]> {
    return this.repo.find({ where: { organizationId, revokedAt: IsNull() }, order: { createdAt: 'ASC', id: 'ASC' } });
  }

  async insert(manager: EntityManager | undefined, key: ApiKeyEntity): Promise<void> {
    await (manager ?? this.repo.manager).insert(ApiKeyEntity, key);
  }

  async revoke(organizationId: string, id: string): Promise<boolean> {
    const result = await this.repo.update({ organizationId, id, revokedAt: IsNull() }, { revokedAt: () => 'now()' });
    return (result.affected ?? 0) > 0;
  }

  /** Best effort and cheap: at most one write per key per minute. */
  async touchLastUsed(id: string): Promise<void> {
    await this.repo.query(
      `UPDATE api_keys SET last_used_at = now() WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`,
      [id],
    );
  }
}
