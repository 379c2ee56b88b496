import { QueryRunner } from 'typeorm';
import { TestApp } from './test-app';

/**
 * Runs `work` while another transaction (`blocker`) holds the rows `lockSql` locks, as a
 * concurrent writer would. `work` may write through the blocker and commit it; otherwise it is
 * rolled back. The connection is released either way.
 */
export async function whileHeld<T>(t: TestApp, lockSql: string, params: unknown[], work: (blocker: QueryRunner) => Promise<T>): Promise<T> {
  const blocker = t.dataSource.createQueryRunner();
  await blocker.connect();
  await blocker.startTransaction();
  try {
    await blocker.query(lockSql, params);
    return await work(blocker);
  } finally {
    if (blocker.isTransactionActive) await blocker.rollbackTransaction();
    await blocker.release();
  }
}

/** Waits until some backend waits for a lock while running a statement LIKE `queryLike`. */
export async function untilWaitingForLock(t: TestApp, queryLike: string, what: string, timeoutMs = 5000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; ; ) {
    const waiting = await t.sql(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`, [queryLike]);
    if (waiting.length > 0) return;
    if (Date.now() > deadline) throw new Error(`${what} never waited for a lock`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
