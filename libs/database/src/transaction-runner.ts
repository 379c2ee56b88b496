import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';

type CommitHook = () => void;

/**
 * Runs work in one database transaction and tells interested parties after it commits
 * (the outbox dispatcher wakes up then instead of waiting for its next poll).
 */
@Injectable()
export class TransactionRunner {
  private readonly commitHooks: CommitHook[] = [];

  constructor(private readonly dataSource: DataSource) {}

  onCommit(hook: CommitHook): void {
    this.commitHooks.push(hook);
  }

  async run<T>(work: (manager: EntityManager) => Promise<T>): Promise<T> {
    const result = await this.dataSource.transaction(work);
    this.committed();
    return result;
  }

  /**
   * Tells the commit hooks that a change committed outside `run`: a single statement that wrote its
   * outbox rows itself (one round trip instead of BEGIN … COMMIT).
   */
  committed(): void {
    for (const hook of this.commitHooks) hook();
  }
}
