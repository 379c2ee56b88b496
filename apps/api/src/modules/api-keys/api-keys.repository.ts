import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { EntityManager, IsNull, Repository } from 'typeorm';
import { ApiKeyEntity } from './entities/api-key.entity';

@Injectable()
export class ApiKeysRepository {
  constructor(@InjectRepository(ApiKeyEntity) private readonly repo: Repository<ApiKeyEntity>) {}

  findByHash(keyHash: string): Promise<ApiKeyEntity | null> {
    return this.repo.findOneBy({ keyHash });
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
