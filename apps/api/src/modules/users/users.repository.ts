import { Injectable } from '@nestjs/common';
import { preparedQuery } from '@app/database';
import type { DomainEvent } from '@app/events';
import { createHash } from 'node:crypto';
import { DataSource, EntityManager } from 'typeorm';
import { RoleSummary } from '../roles/roles.repository';
import { SEARCH_EXPRESSION, SqlParams } from './user-query';

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
  /** While soft-deleted: the status a restore brings back. */
  status_before_delete?: string | null;
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

/** One POST /users for {@link UsersRepository.createOne} or {@link UsersRepository.createMany}. */
export interface UserCreate {
  organizationId: string;
  user: NewUser;
  /** The role's id or name. */
  roleRef: string;
  createdAt: Date;
  /** Its user.created event; `user.role` is filled in from the role found. */
  event: DomainEvent<'user.created'>;
}

/** `role` is undefined when no such role exists; `user` when the email is taken. */
export interface UserCreateResult {
  role: RoleSummary | undefined;
  user: UserRecord | undefined;
}

type Queryable = Pick<EntityManager, 'query'>;

const SELECT_USER = `
  SELECT u.*, pr.name AS role_name
    FROM users u LEFT JOIN roles pr ON pr.id = u.role_id`;

/**
 * The order in which a statement inserts its users (`t`: their rows, with the request order `n`):
 * by the unique index's key (email, then organization when the rows name theirs), so that two
 * statements inserting the same emails wait for each other in one order and never deadlock; of one
 * email twice, the first sent is made.
 */
const insertOrder = (organizationColumn?: string) => `lower(t.email), ${organizationColumn ? `${organizationColumn}, ` : ''}t.n`;

/** What insertWithEvents did: the users inserted, and the roles (ids) deleted before their users could be. */
export interface BulkInsertOutcome {
  inserted: Set<string>;
  rolesGone: Set<string>;
}

/**
 * The custom roles among `roleIds` (an SQL expression giving ids of roles already found in the
 * organization), held FOR KEY SHARE until the statement's transaction ends: a role deleted meanwhile
 * is waited for and then not returned (with `skipLocked`, a role held elsewhere is left out at once),
 * so a new user never gets a role whose deletion has already collected its holders. Built-in roles
 * cannot be deleted and are not locked: every create names the default one, and holding it would
 * make its row a hot spot (each lock rewrites the row's lockers).
 */
const HOLD_CUSTOM_ROLES = (roleIds: string, options: { skipLocked: boolean }) => `
  SELECT id FROM roles WHERE id IN ${roleIds} AND NOT system FOR KEY SHARE${options.skipLocked ? ' SKIP LOCKED' : ''}`;

/**
 * Every role of user `u` with its permissions, primary first: for a query that has joined the
 * primary role as `pr`. Only users with extra roles (rows in user_roles) need the function's
 * aggregate (migration UserRolesJsonFunction).
 */
const ROLES_OF_USER = `
  CASE WHEN EXISTS (SELECT 1 FROM user_roles ur WHERE ur.user_id = u.id) THEN users_roles_json(u.organization_id, u.id, u.role_id)
       WHEN pr.id IS NULL OR pr.organization_id <> u.organization_id THEN '[]'::json
       ELSE json_build_array(json_build_object('id', pr.id, 'name', pr.name, 'display_name', pr.display_name, 'permissions', pr.permissions))
  END`;

/** A user with the primary role's name and every role (with permissions): complete it with a WHERE. */
const SELECT_DETAILED = `SELECT u.*, pr.name AS role_name, ${ROLES_OF_USER} AS roles
         FROM users u LEFT JOIN roles pr ON pr.id = u.role_id`;

/** GET /users/{id}'s query. */
const FIND_USER_DETAILED_SQL = `${SELECT_DETAILED}
        WHERE u.organization_id = $1 AND u.id = $2`;

/**
 * Counts the users in `source` (a CTE of users rows) active in the UTC month of `at` (a timestamptz
 * parameter), for statements that record activity along with their change (CONTRACT §5).
 */
const MARK_ACTIVE_FROM = (source: string, at: string) => `
         INSERT INTO user_activity_months (organization_id, month, user_id)
         SELECT organization_id, to_char(${at}::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM'), id FROM ${source}
         ON CONFLICT DO NOTHING`;

/**
 * The sign-in sort keys of new users (`source`: a CTE of inserted users rows with id and
 * organization_id): never signed in (migration UserLoginSortKeys).
 */
const LOGIN_SORT_KEYS_FROM = (source: string) => `
         INSERT INTO user_login_sort_keys (user_id, organization_id, last_login, login_count)
         SELECT id, organization_id, '-infinity', 0 FROM ${source}`;

/** Statuses that may not sign in: a user changed to one loses every session at once. */
const SESSION_ENDING_STATUSES = ['suspended', 'inactive'];

/** Whether a user whose status becomes `status` loses every session (access and refresh tokens) at once. */
export function endsSessions(status: unknown): boolean {
  return SESSION_ENDING_STATUSES.includes(status as string);
}

/**
 * Revokes every live refresh token of the users in `source` (a CTE of updated users rows) whose
 * status changed to one that ends sessions (endsSessions), at `at`.
 */
const REVOKE_REFRESH_TOKENS_OF = (source: string, at: string) => `rev AS (
         UPDATE refresh_tokens t SET revoked_at = ${at}
           FROM ${source}
          WHERE 'status' = ANY(${source}.changed) AND ${source}.status IN (${SESSION_ENDING_STATUSES.map((st) => `'${st}'`).join(', ')})
            AND t.organization_id = ${source}.organization_id AND t.user_id = ${source}.id AND t.revoked_at IS NULL),`;

/** SET clauses for column changes (column names come from the service's whitelist, never from input). */
function setClauses(changes: Record<string, unknown>, params: SqlParams): string[] {
  return Object.entries(changes).map(([column, value]) => {
    if (column === 'metadata' || column === 'preferences') return `${column} = ${params.p(JSON.stringify(value))}::jsonb`;
    return `${column} = ${params.p(value)}`;
  });
}

/** Statements whose text depends on the request's shape are prepared under a name derived from the text. */
function statementName(text: string): string {
  return `u_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
}

/**
 * The `user` object of user.* events (UserEventSnapshot, users.mapper's userSnapshot) built in SQL
 * from a users row and its primary role, for statements that write their event themselves.
 * Timestamps as iso() writes them: UTC, whole seconds, "Z".
 */
const USER_EVENT_SNAPSHOT = (u: string, role: string) => `jsonb_build_object(
  'id', ${u}.id, 'email', ${u}.email, 'first_name', ${u}.first_name, 'last_name', ${u}.last_name, 'role', ${role}.name,
  'status', ${u}.status, 'email_verified', ${u}.email_verified,
  'created_at', to_char(${u}.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
  'updated_at', to_char(${u}.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))`;

/** The fields PUT/PATCH /users/{id} may change without a transaction; null: not sent. */
export interface UpdatableFields {
  first_name: string | null;
  last_name: string | null;
  status: string | null;
  metadata: Record<string, unknown> | null;
  preferences: Record<string, unknown> | null;
}

/** One user's update for {@link UsersRepository.updateFieldsBatch}. */
export interface FieldsUpdate {
  organizationId: string;
  id: string;
  fields: UpdatableFields;
  expectedVersion: number | undefined;
  updatedAt: Date;
  eventId: string;
}

/**
 * undefined: no such (undeleted) user; `written: false`: nothing written (no field differs, or
 * If-Match named another version), with the row's version read under the lock; otherwise the row
 * as written, with every role, and the names of the fields changed.
 */
export type FieldsUpdateResult = { written: true; user: UserRecord; changed: string[] } | { written: false; version: number } | undefined;

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
   *
   * With `lock` (in the caller's transaction), the user's row is locked first and read by a second
   * statement: under READ COMMITTED that read sees whatever a concurrent writer committed while this
   * one waited for the lock (its new role, its new extra roles). One locking read would recheck
   * only the user's row and keep the role rows it had joined before waiting.
   */
  async findDetailed(organizationId: string, id: string, manager?: Queryable, options: { lock?: boolean } = {}): Promise<UserRecord | undefined> {
    if (options.lock) {
      const locked = await preparedQuery(this.dataSource, manager, 'users_lock',
        `SELECT 1 FROM users WHERE organization_id = $1 AND id = $2 FOR UPDATE`, [organizationId, id]);
      if (locked.rows.length === 0) return undefined;
    }
    return (await preparedQuery<UserRecord>(this.dataSource, manager, 'users_find_detailed', FIND_USER_DETAILED_SQL, [organizationId, id])).rows[0];
  }

  async findManyDetailed(organizationId: string, ids: string[], manager?: Queryable): Promise<Map<string, UserRecord>> {
    if (ids.length === 0) return new Map();
    const rows: UserRecord[] = await this.db(manager).query(
      `${SELECT_DETAILED} WHERE u.organization_id = $1 AND u.id = ANY($2::text[])`,
      [organizationId, ids],
    );
    return new Map(rows.map((r) => [r.id, r]));
  }

  /** The user with this email (any case), with every role: what a sign-in needs, in one prepared query. */
  async findByEmail(organizationId: string, email: string): Promise<UserRecord | undefined> {
    const text = `${SELECT_DETAILED} WHERE u.organization_id = $1 AND u.email_lower = lower($2)`;
    return (await preparedQuery<UserRecord>(this.dataSource, undefined, 'users_find_by_email', text, [organizationId, email.trim()])).rows[0];
  }

  /**
   * A sign-in as one statement (one round trip, no BEGIN/COMMIT): counts the login, copies it to the
   * user's sign-in sort keys (making the row if it is missing: a user created by an instance of a
   * version before migration UserLoginSortKeys), marks the user active this month, stores the
   * session's first refresh token (hashed) and writes the user.login
   * event to the outbox; with `newPasswordHash`, replaces the stored hash (a rehash at new
   * parameters). Returns the updated row, or undefined when the user can no longer sign in.
   */
  async recordSignIn(
    organizationId: string,
    userId: string,
    at: Date,
    refreshToken: { id: string; hash: string; sessionId: string; expiresAt: Date },
    event: DomainEvent<'user.login'>,
    newPasswordHash?: string,
    manager?: Queryable,
  ): Promise<UserRecord | undefined> {
    const { rows } = await preparedQuery<UserRecord>(this.dataSource, manager, 'users_record_sign_in',
      `WITH upd AS (
         UPDATE users SET last_login = $3, login_count = login_count + 1, password_hash = COALESCE($10, password_hash)
          WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL AND status = 'active' RETURNING *),
       act AS (${MARK_ACTIVE_FROM('upd', '$3')}),
       keys AS (
         INSERT INTO user_login_sort_keys (user_id, organization_id, last_login, login_count)
         SELECT id, organization_id, last_login, login_count FROM upd
         ON CONFLICT (user_id) DO UPDATE SET last_login = EXCLUDED.last_login, login_count = EXCLUDED.login_count),
       rt AS (
         INSERT INTO refresh_tokens (id, token_hash, organization_id, user_id, session_id, expires_at)
         SELECT $4, $5, organization_id, id, $6, $7 FROM upd),
       evt AS (
         INSERT INTO outbox_events (id, organization_id, type, data, occurred_at)
         SELECT $8, organization_id, 'user.login', $9::jsonb, $3 FROM upd)
       SELECT upd.*, pr.name AS role_name FROM upd LEFT JOIN roles pr ON pr.id = upd.role_id`,
      [organizationId, userId, at, refreshToken.id, refreshToken.hash, refreshToken.sessionId, refreshToken.expiresAt, event.id, JSON.stringify(event.data), newPasswordHash ?? null],
    );
    return rows[0];
  }

  /**
   * Inserts users, their monthly-activity rows and their user.created events in one statement (one
   * round trip; atomic by itself, or part of the caller's transaction when `manager` is given).
   * Users whose email is taken are skipped, and so are their events; so are users whose custom
   * role was deleted after the caller looked it up (HOLD_CUSTOM_ROLES). `events[i]` belongs to
   * `users[i]`. Returns the ids inserted and the role ids that were gone.
   *
   * Bulk keeps this statement rather than writeCreates: its roles are already resolved and its
   * response is built without a read-back, and returning every new row (as writeCreates must) made
   * a bulk of 100 about a quarter costlier (A/B, session 9: 55–56 against 63–76 req/s).
   */
  async insertWithEvents(
    manager: Queryable | undefined,
    organizationId: string,
    users: NewUser[],
    createdAt: Date,
    events: DomainEvent<'user.created'>[],
  ): Promise<BulkInsertOutcome> {
    if (users.length === 0) return { inserted: new Set(), rolesGone: new Set() };
    // One JSON document instead of a bind array per column: JSON.stringify and PostgreSQL's JSON
    // parser are native code, pg's array escaping is not.
    const items = users.map((u, n) => ({
      n,
      id: u.id,
      email: u.email,
      first_name: u.firstName,
      last_name: u.lastName,
      role_id: u.roleId,
      password_hash: u.passwordHash,
      metadata: u.metadata,
      event_id: events[n]!.id,
      event: events[n]!.data,
    }));
    const { rows } = await preparedQuery<{ id: string; role_gone: boolean }>(this.dataSource, manager, 'users_insert_with_events',
      `WITH t AS MATERIALIZED (
         SELECT * FROM jsonb_to_recordset($2::jsonb) AS t(n int, id text, email text, first_name text, last_name text, role_id text,
                                                          password_hash text, metadata jsonb, event_id text, event jsonb)),
       held AS (${HOLD_CUSTOM_ROLES('(SELECT role_id FROM t)', { skipLocked: false })}),
       kept AS (
         SELECT id FROM held
         UNION ALL SELECT id FROM roles WHERE organization_id = $1 AND id IN (SELECT role_id FROM t) AND system),
       ins AS (
         INSERT INTO users (id, organization_id, email, email_lower, first_name, last_name, role_id, status, email_verified,
                            password_hash, metadata, created_at, updated_at)
         SELECT t.id, $1, t.email, lower(t.email), t.first_name, t.last_name, t.role_id, 'active', false, t.password_hash,
                COALESCE(t.metadata, '{}'), $3, $3
           FROM t WHERE t.role_id IN (SELECT id FROM kept) ORDER BY ${insertOrder()}
         ON CONFLICT (organization_id, email_lower) DO NOTHING
         RETURNING id, organization_id),
       act AS (${MARK_ACTIVE_FROM('ins', '$3')}),
       keys AS (${LOGIN_SORT_KEYS_FROM('ins')}),
       evt AS (
         INSERT INTO outbox_events (id, organization_id, type, data, occurred_at)
         SELECT t.event_id, $1, 'user.created', t.event, $3 FROM t WHERE t.id IN (SELECT id FROM ins) ORDER BY t.n)
       SELECT id, false AS role_gone FROM ins
       UNION ALL SELECT DISTINCT role_id, true FROM t WHERE role_id NOT IN (SELECT id FROM kept)`,
      [organizationId, JSON.stringify(items), createdAt],
    );
    return {
      inserted: new Set(rows.filter((r) => !r.role_gone).map((r) => r.id)),
      rolesGone: new Set(rows.filter((r) => r.role_gone).map((r) => r.id)),
    };
  }

  /**
   * POST /users as one statement, so one round trip and no BEGIN/COMMIT: resolves the role (by id,
   * else name, as RolesService.resolve), inserts the user unless the email is taken, counts them
   * active this month and writes the user.created event to the outbox (its `user.role` filled in
   * from the role found), all or nothing. A custom role that another transaction holds (its
   * deletion) is waited for. `role` is undefined when no such role exists (or it was deleted
   * meanwhile); `user` when the email is taken.
   */
  async createOne(create: UserCreate, manager?: Queryable): Promise<UserCreateResult> {
    const [result] = await this.writeCreates([create], { waitForRoles: true, manager });
    return result ?? { role: undefined, user: undefined };
  }

  /**
   * What {@link createOne} does, for several creates in one statement: one plan, one round trip and
   * one commit (UserCreateBatcher gathers them from concurrent requests, of any organizations). Each
   * create has its own role, timestamp and event; the results come back in the order of `creates`.
   * Two creates of one email: the first is made, the second finds the email taken.
   *
   * A custom role that another transaction holds (its deletion, or an update of the role) is not
   * waited for (SKIP LOCKED): that create's result is `null`; run it alone with {@link createOne}.
   * Like any insert, the statement does wait for another transaction that is inserting the same
   * email, to learn whether it is taken.
   */
  createMany(creates: readonly UserCreate[]): Promise<(UserCreateResult | null)[]> {
    return this.writeCreates(creates, { waitForRoles: false });
  }

  /**
   * The one statement behind createOne and createMany. A custom role held elsewhere is waited for
   * (`waitForRoles`; if it is then gone, the create finds no role) or skipped (its result is null).
   */
  private async writeCreates(creates: readonly UserCreate[], options: { waitForRoles: boolean; manager?: Queryable }): Promise<(UserCreateResult | null)[]> {
    const items = creates.map((c, n) => ({
      n,
      organization_id: c.organizationId,
      id: c.user.id,
      email: c.user.email,
      first_name: c.user.firstName,
      last_name: c.user.lastName,
      role_ref: c.roleRef,
      password_hash: c.user.passwordHash,
      metadata: c.user.metadata,
      created_at: c.createdAt.toISOString(),
      event_id: c.event.id,
      event: c.event.data,
    }));
    const { rows } = await preparedQuery<UserRecord & { n: number; role_found: boolean; r_id: string | null; r_name: string; r_display_name: string; r_permissions: string[] }>(
      this.dataSource, options.manager, options.waitForRoles ? 'users_create' : 'users_create_skip_locked',
      `WITH t AS MATERIALIZED (
         SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(n int, organization_id text, id text, email text, first_name text, last_name text,
                                                          role_ref text, password_hash text, metadata jsonb, created_at timestamptz, event_id text, event jsonb)),
       found AS MATERIALIZED (
         SELECT DISTINCT ON (t.n) t.n, ro.id, ro.name, ro.display_name, ro.permissions, ro.system
           FROM t JOIN roles ro ON ro.organization_id = t.organization_id AND (ro.name = t.role_ref OR ro.id = t.role_ref)
          ORDER BY t.n, (ro.id = t.role_ref) DESC),
       held AS (${HOLD_CUSTOM_ROLES('(SELECT id FROM found)', { skipLocked: !options.waitForRoles })}),
       r AS (SELECT * FROM found WHERE system OR id IN (SELECT id FROM held)),
       ins AS (
         INSERT INTO users (id, organization_id, email, email_lower, first_name, last_name, role_id, status, email_verified,
                            password_hash, metadata, created_at, updated_at)
         SELECT t.id, t.organization_id, t.email, lower(t.email), t.first_name, t.last_name, r.id, 'active', false, t.password_hash,
                COALESCE(t.metadata, '{}'), t.created_at, t.created_at
           FROM t JOIN r ON r.n = t.n ORDER BY ${insertOrder('t.organization_id')}
         ON CONFLICT (organization_id, email_lower) DO NOTHING
         RETURNING *),
       act AS (${MARK_ACTIVE_FROM('ins', 'created_at')}),
       keys AS (${LOGIN_SORT_KEYS_FROM('ins')}),
       evt AS (
         INSERT INTO outbox_events (id, organization_id, type, data, occurred_at)
         SELECT t.event_id, ins.organization_id, 'user.created', jsonb_set(t.event, '{user,role}', to_jsonb(r.name)), t.created_at
           FROM ins JOIN t ON t.id = ins.id JOIN r ON r.n = t.n ORDER BY t.n)
       SELECT t.n, f.n IS NOT NULL AS role_found, r.id AS r_id, r.name AS r_name, r.display_name AS r_display_name, r.permissions AS r_permissions, ins.*
         FROM t LEFT JOIN found f ON f.n = t.n LEFT JOIN r ON r.n = t.n LEFT JOIN ins ON ins.id = t.id
        ORDER BY t.n`,
      [JSON.stringify(items)],
    );
    return rows.map(({ n: _n, role_found, r_id, r_name, r_display_name, r_permissions, ...inserted }) => {
      // No such role; or, having waited for it, its deletion.
      if (!role_found || (r_id === null && options.waitForRoles)) return { role: undefined, user: undefined };
      // The role is held by another transaction: made alone, that create waits for it.
      if (r_id === null) return null;
      const role: RoleSummary = { id: r_id, name: r_name, display_name: r_display_name, permissions: r_permissions };
      return { role, user: inserted.id === null ? undefined : (inserted as UserRecord) };
    });
  }

  /** The emails lower-cased by PostgreSQL, as the unique index on email_lower compares them, in order. */
  async lowerEmails(emails: string[]): Promise<string[]> {
    if (emails.length === 0) return [];
    const rows: { l: string }[] = await this.dataSource.query(`SELECT lower(e) AS l FROM unnest($1::text[]) WITH ORDINALITY AS t(e, n) ORDER BY n`, [emails]);
    return rows.map((r) => r.l);
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
    const sets = setClauses(changes, params);
    sets.push('version = version + 1', 'updated_at = now()');
    const where = [`organization_id = ${params.p(organizationId)}`, `id = ${params.p(id)}`];
    if (expectedVersion !== undefined) where.push(`version = ${params.p(expectedVersion)}`);
    const text = `UPDATE users SET ${sets.join(', ')} WHERE ${where.join(' AND ')}`;
    const { rowCount } = await preparedQuery(this.dataSource, manager, statementName(text), text, params.values);
    return rowCount > 0;
  }

  /**
   * PUT/PATCH /users/{id} without a role change, as one statement (one round trip, no BEGIN/COMMIT):
   * locks the user's row, and only if some sent field differs (metadata key by key) and
   * `expectedVersion` (If-Match) is absent or current, writes them with the next version, counts the
   * user active this month and writes user.updated to the outbox; a change of status to suspended or
   * inactive also revokes every refresh token of the user, in the same statement, so that no failure
   * after the commit can leave an old session to come back on reactivation. A `null` field was not
   * sent. Concurrent updates queue on the row lock, so none is lost and each sees the row its
   * predecessor left. See FieldsUpdateResult for what comes back.
   */
  async updateFields(organizationId: string, id: string, fields: UpdatableFields, options: Pick<FieldsUpdate, 'expectedVersion' | 'updatedAt' | 'eventId'>): Promise<FieldsUpdateResult> {
    const [result] = await this.writeFieldsUpdates([{ organizationId, id, fields, ...options }], { waitForLocks: true });
    return result ?? undefined;
  }

  /**
   * What {@link updateFields} does, for several users in one statement: one plan, one round trip and
   * one commit (UserUpdateBatcher gathers them from concurrent requests). Each update has its own
   * If-Match, timestamp and event id; the results come back in the order of `updates`. The users
   * must be distinct.
   *
   * The statement never waits for a lock: a row that another transaction holds is skipped (SKIP
   * LOCKED), so that one busy user cannot hold up the others, nor the rows this statement has
   * locked be part of a deadlock. Its result is `null`, as is a user that does not exist (the
   * statement cannot tell them apart): run those alone with {@link updateFields}.
   */
  async updateFieldsBatch(updates: readonly FieldsUpdate[]): Promise<(FieldsUpdateResult | null)[]> {
    if (new Set(updates.map((u) => `${u.organizationId}/${u.id}`)).size !== updates.length) {
      throw new Error('updateFieldsBatch: one update per user');
    }
    return this.writeFieldsUpdates(updates, { waitForLocks: false });
  }

  /**
   * The statement behind updateFields and updateFieldsBatch. Its plan is kept small on purpose
   * (PostgreSQL starts its executor for the whole plan on every call): the locked rows carry only
   * the columns compared, the changed names are worked out in RETURNING (metadata's by a function
   * that runs only when metadata is sent), and an unchanged user returns only its version. The
   * refresh-token revocation is a variant of its own, used only when some update ends sessions:
   * planned once for all values, a revocation guarded by the status still read refresh_tokens on
   * every update (a third more PostgreSQL CPU per update, A/B at a million users). Roles are read as
   * of the statement's start.
   */
  private async writeFieldsUpdates(updates: readonly FieldsUpdate[], mode: { waitForLocks: boolean }): Promise<(FieldsUpdateResult | null)[]> {
    const revokes = updates.some((u) => endsSessions(u.fields.status));
    const name = `users_update_fields${mode.waitForLocks ? '' : '_skip_locked'}${revokes ? '_ending_sessions' : ''}`;
    const column = <T>(pick: (u: FieldsUpdate) => T) => updates.map(pick);
    const { rows } = await preparedQuery<UserRecord & { n: string; req_n?: string; changed: string[] | null; current_version: number; event_id?: string }>(this.dataSource, undefined, name,
      `WITH req AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::int[], $9::timestamptz[], $10::text[])
                  WITH ORDINALITY AS r(organization_id, id, first_name, last_name, status, metadata, preferences, expected_version, updated_at, event_id, n)),
       cur AS MATERIALIZED (
         SELECT r.n, u.id, u.organization_id, u.version, u.first_name, u.last_name, u.status, u.metadata
           FROM req r JOIN users u ON u.organization_id = r.organization_id AND u.id = r.id
          WHERE u.deleted_at IS NULL
            FOR NO KEY UPDATE OF u${mode.waitForLocks ? '' : ' SKIP LOCKED'}),
       upd AS (
         UPDATE users u
            SET first_name = COALESCE(r.first_name, c.first_name), last_name = COALESCE(r.last_name, c.last_name),
                status = COALESCE(r.status, c.status), metadata = COALESCE(r.metadata, c.metadata),
                preferences = COALESCE(r.preferences, u.preferences), version = c.version + 1, updated_at = r.updated_at
           FROM cur c JOIN req r ON r.n = c.n
          WHERE u.organization_id = c.organization_id AND u.id = c.id AND (r.expected_version IS NULL OR c.version = r.expected_version)
            AND ((r.first_name IS NOT NULL AND r.first_name IS DISTINCT FROM c.first_name)
              OR (r.last_name IS NOT NULL AND r.last_name IS DISTINCT FROM c.last_name)
              OR (r.status IS NOT NULL AND r.status IS DISTINCT FROM c.status)
              OR (r.metadata IS NOT NULL AND r.metadata IS DISTINCT FROM c.metadata)
              OR r.preferences IS NOT NULL)
         RETURNING u.*, r.event_id, r.n AS req_n,
                array_remove(ARRAY[
                  CASE WHEN r.first_name IS NOT NULL AND r.first_name IS DISTINCT FROM c.first_name THEN 'first_name' END,
                  CASE WHEN r.last_name IS NOT NULL AND r.last_name IS DISTINCT FROM c.last_name THEN 'last_name' END,
                  CASE WHEN r.status IS NOT NULL AND r.status IS DISTINCT FROM c.status THEN 'status' END], NULL)
                || CASE WHEN r.metadata IS NOT NULL AND r.metadata IS DISTINCT FROM c.metadata
                        THEN users_metadata_changed_keys(c.metadata, r.metadata) ELSE '{}'::text[] END
                || CASE WHEN r.preferences IS NOT NULL THEN ARRAY['preferences'] ELSE '{}'::text[] END AS changed),
       act AS (${MARK_ACTIVE_FROM('upd', 'upd.updated_at')}),
       ${revokes ? REVOKE_REFRESH_TOKENS_OF('upd', 'upd.updated_at') : ''}
       evt AS (
         INSERT INTO outbox_events (id, organization_id, type, data, occurred_at)
         SELECT upd.event_id, upd.organization_id, 'user.updated',
                jsonb_build_object('user', ${USER_EVENT_SNAPSHOT('upd', 'pr')}, 'changes', to_jsonb(upd.changed)), upd.updated_at
           FROM upd LEFT JOIN roles pr ON pr.id = upd.role_id ORDER BY upd.req_n)
       SELECT c.n, u.*, pr.name AS role_name, ${ROLES_OF_USER} AS roles, c.version AS current_version
         FROM cur c LEFT JOIN upd u ON u.req_n = c.n LEFT JOIN roles pr ON pr.id = u.role_id`,
      [
        column((u) => u.organizationId),
        column((u) => u.id),
        column((u) => u.fields.first_name),
        column((u) => u.fields.last_name),
        column((u) => u.fields.status),
        column((u) => (u.fields.metadata === null ? null : JSON.stringify(u.fields.metadata))),
        column((u) => (u.fields.preferences === null ? null : JSON.stringify(u.fields.preferences))),
        column((u) => u.expectedVersion ?? null),
        column((u) => u.updatedAt),
        column((u) => u.eventId),
      ],
    );
    const results: (FieldsUpdateResult | null)[] = updates.map(() => null);
    for (const row of rows) {
      // `n`: the update's place in `updates`, from 1 (WITH ORDINALITY).
      const { n, req_n: _n, changed, current_version: version, event_id: _event, ...user } = row;
      results[Number(n) - 1] = user.id === null ? { written: false, version } : { written: true, user: user as UserRecord, changed: changed ?? [] };
    }
    return results;
  }

  /** Deletes the user for good (with `expectedVersion`, only that version); false when no row matched. */
  async delete(manager: Queryable, organizationId: string, id: string, expectedVersion?: number): Promise<boolean> {
    const result: [unknown[], number] = await manager.query(
      `DELETE FROM users WHERE organization_id = $1 AND id = $2 AND ($3::int IS NULL OR version = $3)`,
      [organizationId, id, expectedVersion ?? null],
    );
    if (result[1] === 0) return false;
    await manager.query(`DELETE FROM user_login_sort_keys WHERE user_id = $1`, [id]);
    await manager.query(`DELETE FROM user_roles WHERE organization_id = $1 AND user_id = $2`, [organizationId, id]);
    await manager.query(`DELETE FROM refresh_tokens WHERE organization_id = $1 AND user_id = $2`, [organizationId, id]);
    // The monthly-activity rows stay (they hold only the id): a user created or active this month
    // still counts towards the plan's monthly active users after being deleted (CONTRACT §5).
    return true;
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

  /**
   * Takes the organization's monthly-active-users lock until `manager`'s transaction ends: the
   * count of active users and the writes that add to it are then one step for each request.
   */
  async lockActiveUsers(manager: Queryable, organizationId: string): Promise<void> {
    await manager.query(`SELECT pg_advisory_xact_lock(hashtext('um:active-users:' || $1))`, [organizationId]);
  }

  /** Whether this user counts as active this month already (one primary-key lookup). */
  async isActiveThisMonth(organizationId: string, userId: string): Promise<boolean> {
    const rows: unknown[] = await this.dataSource.query(
      `SELECT 1 FROM user_activity_months WHERE organization_id = $1 AND month = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM') AND user_id = $2`,
      [organizationId, userId],
    );
    return rows.length > 0;
  }

  /** Distinct users active this UTC month, and whether one of them is `userId`. */
  async activeThisMonth(organizationId: string, userId?: string, manager?: Queryable): Promise<{ count: number; includesUser: boolean }> {
    const rows: { n: number; mine: boolean }[] = await this.db(manager).query(
      `SELECT count(*)::int AS n, coalesce(bool_or(user_id = $2), false) AS mine FROM user_activity_months
        WHERE organization_id = $1 AND month = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')`,
      [organizationId, userId ?? null],
    );
    return { count: rows[0]!.n, includesUser: rows[0]!.mine };
  }

  /**
   * A page of users: `where` and `order` are built from whitelists with bind parameters. Without a
   * text search or filter the text depends only on the query's shape, so it runs as a prepared
   * statement named by its hash and repeated list shapes skip planning; with one
   * (`params.planPerCall`), PostgreSQL plans it for its values on every call (SqlParams.planPerCall).
   */
  async page(
    params: SqlParams,
    where: string[],
    order: string,
    extraColumns: string,
    limit: number,
    offset: number,
    join = '',
  ): Promise<(UserRecord & Record<string, string>)[]> {
    const extra = extraColumns ? `, ${extraColumns}` : '';
    const text = `${SELECT_USER.replace('SELECT u.*, pr.name AS role_name', `SELECT u.*, pr.name AS role_name${extra}`)} ${join}
        WHERE ${where.join(' AND ')} ORDER BY ${order} LIMIT ${params.p(limit)} OFFSET ${params.p(offset)}`;
    return (await this.shaped<UserRecord & Record<string, string>>(text, params)).rows;
  }

  /** How many users match `where` (`join`: the sort's join when `where` reads its columns, sortJoin). */
  async count(params: SqlParams, where: string[], join = ''): Promise<number> {
    const { rows } = await this.shaped<{ n: number }>(`SELECT count(*)::int AS n FROM users u ${join} WHERE ${where.join(' AND ')}`, params);
    return rows[0]!.n;
  }

  /** A statement built from a request's shape: named and prepared, or planned per call (SqlParams.planPerCall). */
  private shaped<T>(text: string, params: SqlParams): Promise<{ rows: T[] }> {
    return preparedQuery<T>(this.dataSource, undefined, params.planPerCall ? undefined : statementName(text), text, params.values);
  }

  /** Exact count when it is below `cap`; otherwise the planner's estimate (never less than `cap`). */
  async countOrEstimate(params: SqlParams, where: string[], cap: number, join = ''): Promise<number> {
    const { rows: counted } = await this.shaped<{ n: number }>(
      `SELECT count(*)::int AS n FROM (SELECT 1 FROM users u ${join} WHERE ${where.join(' AND ')} LIMIT ${cap}) s`,
      params,
    );
    const n = counted[0]!.n;
    if (n < cap) return n;
    const [row] = (await this.dataSource.query(`EXPLAIN (FORMAT JSON) SELECT 1 FROM users u ${join} WHERE ${where.join(' AND ')}`, params.values)) as {
      'QUERY PLAN': { Plan: { 'Plan Rows': number } }[];
    }[];
    return Math.max(cap, Math.round(row!['QUERY PLAN'][0]!.Plan['Plan Rows']));
  }

  /**
   * Trigram frequencies of the search text (SEARCH_EXPRESSION) over a sample of about `pages` of
   * the users table's pages, every organization's rows: the trigram index is one for all of them,
   * so its lists are as long as the table's counts (SearchTrigramStats).
   */
  async sampleSearchTrigrams(pages: number): Promise<{ rows: number; counts: Record<string, number> }> {
    const [size] = (await this.dataSource.query(
      `SELECT (pg_relation_size('users') / current_setting('block_size')::int)::int AS pages`,
    )) as { pages: number }[];
    const percent = Math.min(100, (100 * pages) / Math.max(size!.pages, 1));
    const [sample] = (await this.dataSource.query(
      `WITH s AS MATERIALIZED (SELECT ${SEARCH_EXPRESSION} AS d FROM users u TABLESAMPLE SYSTEM ($1))
       SELECT (SELECT count(*) FROM s)::int AS rows,
              coalesce((SELECT json_object_agg(t, n) FROM (SELECT t, count(*)::int AS n FROM s, unnest(show_trgm(s.d)) AS t GROUP BY t) x), '{}') AS counts`,
      [percent],
    )) as { rows: number; counts: Record<string, number> }[];
    return sample!;
  }

  /** The users table's live rows as PostgreSQL's cumulative statistics count them (every organization; a catalog read, no scan). */
  async liveRowsEstimate(): Promise<number> {
    const [row] = (await this.dataSource.query(
      `SELECT COALESCE((SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'users'::regclass), 0)::bigint AS n`,
    )) as { n: string }[];
    return Number(row!.n);
  }

  /**
   * Merges the trigram index's pending list into the index (gin_clean_pending_list); returns the
   * pending-list pages merged, or null when another process holds the cleanup's advisory lock.
   */
  async cleanSearchIndexPendingList(): Promise<number | null> {
    const [row] = (await this.dataSource.query(
      `SELECT CASE WHEN pg_try_advisory_xact_lock(hashtext('um:gin_clean_pending_list:IDX_users_search_trgm'))
                   THEN gin_clean_pending_list('"IDX_users_search_trgm"'::regclass) END AS pages`,
    )) as { pages: string | number | null }[];
    return row!.pages === null ? null : Number(row!.pages);
  }

  async rolesOfUsers(organizationId: string, userIds: string[]): Promise<Map<string, RoleSummary[]>> {
    const rows: { user_id: string; roles: RoleSummary[] }[] = await this.dataSource.query(
      `SELECT u.id AS user_id, ${ROLES_OF_USER} AS roles FROM users u LEFT JOIN roles pr ON pr.id = u.role_id
        WHERE u.organization_id = $1 AND u.id = ANY($2::text[])`,
      [organizationId, userIds],
    );
    return new Map(rows.map((r) => [r.user_id, r.roles]));
  }
}
