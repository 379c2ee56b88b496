import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { EntityManager, Repository } from 'typeorm';
import { OrganizationEntity } from './entities/organization.entity';

/** Organizations are the tenants themselves: the one table not scoped by organization_id. */
@Injectable()
export class OrganizationsRepository {
  constructor(@InjectRepository(OrganizationEntity) private readonly repo: Repository<OrganizationEntity>) {}

  findById(id: string): Promise<OrganizationEntity | null> {
    return this.repo.findOneBy({ id });
  }

  async list(limit: number, offset: number): Promise<{ rows: OrganizationEntity[]; total: number }> {
    const [rows, total] = await this.repo.findAndCount({ order: { createdAt: 'ASC', id: 'ASC' }, take: limit, skip: offset });
    return { rows, total };
  }

  count(manager?: EntityManager): Promise<number> {
    return (manager?.getRepository(OrganizationEntity) ?? this.repo).count();
  }

  async insert(manager: EntityManager, org: OrganizationEntity): Promise<void> {
    await manager.insert(OrganizationEntity, org);
  }

  /** Applies `changes` and a new version; false when `expectedVersion` is given and is not current. */
  async update(manager: EntityManager, id: string, changes: Partial<OrganizationEntity>, expectedVersion?: number): Promise<boolean> {
    const where = { id, ...(expectedVersion === undefined ? {} : { version: expectedVersion }) };
    const result = await manager.update(OrganizationEntity, where, { ...changes, updatedAt: () => 'now()', version: () => 'version + 1' });
    return (result.affected ?? 0) > 0;
  }

  /** Serializes first-start work between processes that start at the same time. */
  async lockBootstrap(manager: EntityManager): Promise<void> {
    await manager.query(`SELECT pg_advisory_xact_lock(hashtext('um:bootstrap'))`);
  }
}
