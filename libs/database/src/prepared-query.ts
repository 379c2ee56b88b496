import { DataSource, EntityManager } from 'typeorm';

type PgQueryable = { query: (q: { name?: string; text: string; values: unknown[] }) => Promise<{ rows: unknown[]; rowCount: number | null }> };

/**
 * Runs a fixed SQL text as a named prepared statement on the connection at hand (the transaction's
 * when a manager is given, the pool's otherwise): PostgreSQL parses and plans it once per
 * connection instead of on every call. Only for static SQL texts: the name identifies the text.
 * Without a name the statement is unnamed: PostgreSQL plans it for its values on every call.
 */
export async function preparedQuery<T>(
  dataSource: DataSource,
  manager: Pick<EntityManager, 'query'> | undefined,
  name: string | undefined,
  text: string,
  values: unknown[],
): Promise<{ rows: T[]; rowCount: number }> {
  const runner = (manager as EntityManager | undefined)?.queryRunner as { databaseConnection?: PgQueryable } | undefined;
  const target: PgQueryable | undefined = manager ? runner?.databaseConnection : (dataSource.driver as unknown as { master: PgQueryable }).master;
  if (!target) {
    const rows = (await manager!.query(text, values)) as T[];
    return { rows, rowCount: rows.length };
  }
  const result = await target.query(name === undefined ? { text, values } : { name, text, values });
  return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
}
