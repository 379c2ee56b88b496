import { Injectable } from '@nestjs/common';
import { preparedQuery } from '@app/database';
import { createHash } from 'node:crypto';
import { DataSource, EntityManager } from 'typeorm';
import { RoleSummary } from '../roles/roles.repository';
import { SqlParams } from './user-query';

/** A users row as the queries below return it (snake_case, with the primary role's name). */
export interface UserRecord {
  id: string;
  organization_id: string;
  email: string;
  first_name: string;
  last_name: string;
  role_id: string | null;
  role_name: string | null;
  status: string;
  email_verified: boolean;
  password_hash: string | null;
  metadata: Record<string, unknown>;
  preferences: Record<string, unknown>;
  login_count: number;
  last_login: Date | null;
  version: number;
  created_at: Date;
  updated_at: Date;
  deleted_at: Date | null;
  roles?: RoleSummary[];
}

export interface NewUser {
  id: string;
  email: string;
  firstName: string;
  lastName: string;
  roleId: string | null;
  passwordHash: string | null;
  metadata: Record<string, unknown>;
}

type Queryable = Pick<EntityManager, 'query'>;

const SELECT_USER = `
  SELECT u.*, pr.name AS role_name
    FROM users u LEFT JOIN roles pr ON pr.id = u.role_id`;

const ROLES_OF_USER = `
  (SELECT COALESCE(json_agg(json_build_object('id', r.id, 'name', r.name, 'display_name', r.display_name,
            'permissions', r.permissions) ORDER BY (r.id = u.role_id) DESC, r.name), '[]'::json)
     FROM roles r
    WHERE r.organization_id = u.organization_id
      AND (r.id = u.role_id OR r.id IN (SELECT ur.role_id FROM user_roles ur WHERE ur.user_id = u.id)))`;

/** All SQL on users. Every method takes the organization id: no query can forget the tenant. */
@Injectable()
export class UsersRepository {
  constructor(private readonly dataSource: DataSource) {}

  private db(manager?: Queryable): Queryable {
    return manager ?? this.dataSource;
  }

  /**
   * One user with the primary role name and every role (with permissions), in one query. Outside a
   * transaction it runs as a named prepared statement: the hot path of GET /users/{id} skips
   * PostgreSQL's parse and plan on every call.
   */
  async findDetailed(organizationId: string, id: string, manager?: Queryable): Promise<UserRecord | undefined> {
    const text = `SELECT u.*, pr.name AS role_name, ${ROLES_OF_USER} AS roles
         FROM users u LEFT JOIN roles pr ON pr.id = u.role_id
        WHERE u.organization_id = $1 AND u.id = $2`;
    return (await preparedQuery<UserRecord>(this.dataSource, manager, 'users_find_detailed', text, [organizationId, id])).rows[0];
  }

  async findManyDetailed(organizationId: string, ids: string[], manager?: Queryable): Promise<Map<string, UserRecord>> {
    if (ids.length === 0) return new Map();
    const rows: UserRecord[] = await this.db(manager).query(
      `SELECT u.*, pr.name AS role_name, ${ROLES_OF_USER} AS roles
         FROM users u LEFT JOIN roles pr ON pr.id = u.role_id
        WHERE u.organization_id = $1 AND u.id = ANY($2::text[])`,
      [organizationId, ids],
    );
    return new Map(rows.map((r) => [r.id, r]));
  }

  async findByEmail(organizationId: string, email: string, manager?: Queryable): Promise<UserRecord | undefined> {
    const rows: UserRecord[] = await this.db(manager).query(`${SELECT_USER} WHERE u.organization_id = $1 AND u.email_lower = $2`, [
      organizationId,
      email.trim().toLowerCase(),
    ]);
    return rows[0];
  }

  /**
   * Inserts users in one statement; those whose email is taken are skipped. Returns the inserted
   * rows (without roles), so a create needs no read-back.
   */
  async insertMany(manager: Queryable, organizationId: string, users: NewUser[]): Promise<Map<string, UserRecord>> {
    if (users.length === 0) return new Map();
    const { rows } = await preparedQuery<UserRecord>(this.dataSource, manager, 'users_insert_many_rows',
      `INSERT INTO users (id, organization_id, email, email_lower, first_name, last_name, role_id, password_hash, metadata)
       SELECT t.id, $1, t.email, lower(t.email), t.first_name, t.last_name, t.role_id, t.password_hash, t.metadata
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
           AS t(id, email, first_name, last_name, role_id, password_hash, metadata)
       ON CONFLICT (organization_id, email_lower) DO NOTHING
       RETURNING *`,
      [
        organizationId,
        users.map((u) => u.id),
        users.map((u) => u.email),
        users.map((u) => u.firstName),
        users.map((u) => u.lastName),
        users.map((u) => u.roleId),
        users.map((u) => u.passwordHash),
        users.map((u) => JSON.stringify(u.metadata)),
      ],
    );
    return new Map(rows.map((r) => [r.id, r]));
  }

  /** Emails (lower-cased) among these that already belong to a user of the organization. */
  async existingEmails(organizationId: string, emailsLower: string[], manager?: Queryable): Promise<Set<string>> {
    if (emailsLower.length === 0) return new Set();
    const rows: { email_lower: string }[] = await this.db(manager).query(
      `SELECT email_lower FROM users WHERE organization_id = $1 AND email_lower = ANY($2::text[])`,
      [organizationId, emailsLower],
    );
    return new Set(rows.map((r) => r.email_lower));
  }

  /**
   * Applies column changes and bumps the version; with `expectedVersion` only if nobody changed the
   * row meanwhile. Returns false when no row matched.
   */
  async update(
    manager: Queryable,
    organizationId: string,
    id: string,
    changes: Record<string, unknown>,
    expectedVersion?: number,
  ): Promise<boolean> {
    const params = new SqlParams();
    const sets = Object.entries(changes).map(([column, value]) => {
      if (column === 'metadata' || column === 'preferences') return `${column} = ${params.p(JSON.stringify(value))}::jsonb`;
      return `${column} = ${params.p(value)}`;
    });
    sets.push('version = version + 1', 'updated_at = now()');
    const where = [`organization_id = ${params.p(organizationId)}`, `id = ${params.p(id)}`];
    if (expectedVersion !== undefined) where.push(`version = ${params.p(expectedVersion)}`);
    const text = `UPDATE users SET ${sets.join(', ')} WHERE ${where.join(' AND ')}`;
    const { rowCount } = await preparedQuery(this.dataSource, manager, `u_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`, text, params.values);
    return rowCount > 0;
  }

  async recordLogin(manager: Queryable, organizationId: string, id: string): Promise<void> {
    await manager.query(
      `UPDATE users SET last_login = now(), login_count = login_count + 1 WHERE organization_id = $1 AND id = $2`,
      [organizationId, id],
    );
  }

  async delete(manager: Queryable, organizationId: string, id: string): Promise<boolean> {
    const result: [unknown[], number] = await manager.query(`DELETE FROM users WHERE organization_id = $1 AND id = $2`, [organizationId, id]);
    await manager.query(`DELETE FROM user_roles WHERE organization_id = $1 AND user_id = $2`, [organizationId, id]);
    await manager.query(`DELETE FROM refresh_tokens WHERE organization_id = $1 AND user_id = $2`, [organizationId, id]);
    await manager.query(`DELETE FROM user_activity_months WHERE organization_id = $1 AND user_id = $2`, [organizationId, id]);
    return result[1] > 0;
  }

  async addRoles(manager: Queryable, organizationId: string, userId: string, roleIds: string[]): Promise<void> {
    await manager.query(
      `INSERT INTO user_roles (user_id, role_id, organization_id) SELECT $2, unnest($3::text[]), $1 ON CONFLICT DO NOTHING`,
      [organizationId, userId, roleIds],
    );
  }

  async removeRole(manager: Queryable, organizationId: string, userId: string, roleId: string): Promise<boolean> {
    const result: [unknown[], number] = await manager.query(
      `DELETE FROM user_roles WHERE organization_id = $1 AND user_id = $2 AND role_id = $3`,
      [organizationId, userId, roleId],
    );
    return result[1] > 0;
  }

  /** Counts the user as active this UTC month (CONTRACT §5). */
  async markActive(manager: Queryable, organizationId: string, userIds: string[]): Promise<void> {
    if (userIds.length === 0) return;
    await preparedQuery(this.dataSource, manager, 'users_mark_active',
      `INSERT INTO user_activity_months (organization_id, month, user_id)
       SELECT $1, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM'), unnest($2::text[]) ON CONFLICT DO NOTHING`,
      [organizationId, userIds],
    );
  }

  /** Distinct users active this UTC month, and whether one of them is `userId`. */
  async activeThisMonth(organizationId: string, userId?: string): Promise<{ count: number; includesUser: boolean }> {
    const rows: { n: number; mine: boolean }[] = await this.dataSource.query(
      `SELECT count(*)::int AS n, coalesce(bool_or(user_id = $2), false) AS mine FROM user_activity_months
        WHERE organization_id = $1 AND month = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')`,
      [organizationId, userId ?? null],
    );
    return { count: rows[0]!.n, includesUser: rows[0]!.mine };
  }

  /**
   * A page of users: `where` and `order` are built from whitelists with bind parameters. The text
   * depends only on the query's shape, so it runs as a prepared statement named by its hash:
   * repeated list and search shapes skip PostgreSQL's (costly, for trigram predicates) planning.
   */
  async page(params: SqlParams, where: string[], order: string, extraColumns: string, limit: number, offset: number): Promise<(UserRecord & Record<string, string>)[]> {
    const extra = extraColumns ? `, ${extraColumns}` : '';
    const text = `${SELECT_USER.replace('SELECT u.*, pr.name AS role_name', `SELECT u.*, pr.name AS role_name${extra}`)}
        WHERE ${where.join(' AND ')} ORDER BY ${order} LIMIT ${params.p(limit)} OFFSET ${params.p(offset)}`;
    return (await this.shaped<UserRecord & Record<string, string>>(text, params.values)).rows;
  }

  async count(params: SqlParams, where: string[]): Promise<number> {
    const { rows } = await this.shaped<{ n: number }>(`SELECT count(*)::int AS n FROM users u WHERE ${where.join(' AND ')}`, params.values);
    return rows[0]!.n;
  }

  private shaped<T>(text: string, values: unknown[]) {
    return preparedQuery<T>(this.dataSource, undefined, `u_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`, text, values);
  }

  /** Exact count when it is below `cap`; otherwise the planner's estimate (never less than `cap`). */
  async countOrEstimate(params: SqlParams, where: string[], cap: number): Promise<number> {
    const { rows: counted } = await this.shaped<{ n: number }>(
      `SELECT count(*)::int AS n FROM (SELECT 1 FROM users u WHERE ${where.join(' AND ')} LIMIT ${cap}) s`,
      params.values,
    );
    const n = counted[0]!.n;
    if (n < cap) return n;
    const [row] = (await this.dataSource.query(`EXPLAIN (FORMAT JSON) SELECT 1 FROM users u WHERE ${where.join(' AND ')}`, params.values)) as {
      'QUERY PLAN': { Plan: { 'Plan Rows': number } }[];
    }[];
    return Math.max(cap, Math.round(row!['QUERY PLAN'][0]!.Plan['Plan Rows']));
  }

  async rolesOfUsers(organizationId: string, userIds: string[]): Promise<Map<string, RoleSummary[]>> {
    const rows: { user_id: string; roles: RoleSummary[] }[] = await this.dataSource.query(
      `SELECT u.id AS user_id, ${ROLES_OF_USER} AS roles FROM users u WHERE u.organization_id = $1 AND u.id = ANY($2::text[])`,
      [organizationId, userIds],
    );
    return new Map(rows.map((r) => [r.user_id, r.roles]));
  }
}
