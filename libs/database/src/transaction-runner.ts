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
    for (const hook of this.commitHooks) hook();
    return result;
  }
}
